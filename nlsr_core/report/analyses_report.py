"""reports/analyses.md and its CSVs from `nlsr analyze` documents (analyze/<cell>/analyze.json): the paper's
Figs. 3-6 and Table 4 at this scale, one section per cell, with the aligners side by side where several cells
differ only in the alignment method (Fig. 3, right).

Every table is read from the measured rows; the chance level of each neuron overlap is printed beside it, and
the pre-amplification effect is a paired difference over the same prompts (nlsr_core.study.comparison).
"""
from __future__ import annotations

import statistics

from nlsr_core.eval.formatting import ci_text, pct
from nlsr_core.report import plots
from nlsr_core.study.comparison import rate_difference

ANALYSES_TITLE = "# Analyses"

BROKEN_COLUMNS = ["cell", "method", "sparsity", "tau", "broken", "modules"]
METHOD_BROKEN_COLUMNS = ["cell", "method", "tau", "broken", "modules"]
SIMILARITY_COLUMNS = ["cell", "layer_prune", "pair", "jaccard", "broken_first", "broken_second"]
OVERLAP_COLUMNS = ["cell", "module", "pair", "overlap", "chance"]
AMPLIFICATION_COLUMNS = ["cell", "beta", "hs", "hs_lo", "hs_hi", "fa", "fa_lo", "fa_hi", "over_refusal",
                         "over_refusal_lo", "over_refusal_hi"]
PREAMPLIFICATION_COLUMNS = ["cell", "layer_prune", "sparsity", "beta", "hs", "hs_lo", "hs_hi", "fa", "fa_lo",
                            "fa_hi", "patched_count", "module_count"]


def _method(cell: str) -> str:
    return cell.rsplit("-", 1)[-1]


def _rates(row: dict, metrics: tuple[str, ...]) -> dict:
    out = {}
    for metric in metrics:
        entry = row.get(metric) or {}
        lo, hi = entry.get("ci95") or (None, None)
        out.update({metric: entry.get("pct"), f"{metric}_lo": lo, f"{metric}_hi": hi})
    return out


def broken_rows(docs: dict[str, dict]) -> list[dict]:
    return [{"cell": cell, "method": _method(cell), **r} for cell, doc in sorted(docs.items())
            for r in doc["broken_layers"]]


def similarity_rows(docs: dict[str, dict]) -> list[dict]:
    return [{"cell": cell, "layer_prune": r["layer_prune"], "pair": f"{r['first']}~{r['second']}",
             "jaccard": r["jaccard"], "broken_first": r["broken_first"], "broken_second": r["broken_second"]}
            for cell, doc in sorted(docs.items()) for r in doc["broken_set_similarity"]]


def overlap_rows(docs: dict[str, dict]) -> list[dict]:
    return [{"cell": cell, "module": r["module"], "pair": f"{r['first']}~{r['second']}", "overlap": r["overlap"],
             "chance": r["chance"]} for cell, doc in sorted(docs.items()) for r in doc["neuron_overlap"]]


def amplification_rows(docs: dict[str, dict]) -> list[dict]:
    return [{"cell": cell, "beta": r["beta"], **_rates(r, ("hs", "fa", "over_refusal"))}
            for cell, doc in sorted(docs.items()) for r in doc["amplification"]]


def preamplification_rows(docs: dict[str, dict]) -> list[dict]:
    return [{"cell": cell, "layer_prune": r["point"]["layer_prune"], "sparsity": r["point"]["sparsity"],
             "beta": r["point"]["beta"], **_rates(r, ("hs", "fa")), "patched_count": r.get("patched_count"),
             "module_count": r.get("module_count")}
            for cell, doc in sorted(docs.items()) for r in doc["preamplification"] if r.get("point")]


def _fig3(cell: str, doc: dict) -> list[str]:
    rows = doc["broken_layers"]
    taus = sorted({r["tau"] for r in rows})
    modules = rows[0]["modules"] if rows else 0
    lines = [f"**Fig. 3 (left)**: modules with region similarity S_j < τ (threshold rule, eq. 8) of {modules}, per "
             f"P_SR; identification {doc['pipeline'].get('identifier', '–')}.", "",
             "| P_SR | " + " | ".join(f"τ {t:g}" for t in taus) + " |", "|---|" + "---|" * len(taus)]
    for sparsity in sorted({r["sparsity"] for r in rows}):
        counts = {r["tau"]: r["broken"] for r in rows if r["sparsity"] == sparsity}
        lines.append(f"| {sparsity:g} | " + " | ".join(str(counts.get(t, "–")) for t in taus) + " |")
    return lines + [""]


def taus_of(docs: dict[str, dict]) -> tuple[float, ...]:
    """The τ values the analysed cells' Fig. 3 used (analyze.taus), else analyze.taus' default."""
    from nlsr_core.config import AnalyzeConfig

    taus = sorted({r["tau"] for doc in docs.values() for r in doc["broken_layers"]})
    return tuple(taus) or AnalyzeConfig.taus


def method_broken_rows(similarity: list[dict], taus) -> list[dict]:
    """Fig. 3 (right), for every realigned cell: {cell, method, tau, broken, modules}, broken = the modules whose
    S_j (eq. 8, at the pipeline's P_SR, from the realigned adapter's lineage) is below τ
    (`similarity` = nlsr_core.report.results.similarity_rows)."""
    cells: dict[str, list[float]] = {}
    for row in similarity:
        if row["similarity"] is not None:
            cells.setdefault(row["cell"], []).append(row["similarity"])
    return [{"cell": cell, "method": _method(cell), "tau": float(tau), "broken": sum(s < tau for s in sims),
             "modules": len(sims)} for cell, sims in sorted(cells.items()) for tau in taus]


def _fig3_methods(rows: list[dict]) -> list[str]:
    """Fig. 3 (right): the broken-module counts of cells that differ only in the alignment method, side by side."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        groups.setdefault(row["cell"].rsplit("-", 1)[0], {}).setdefault(row["method"], []).append(row)
    lines = []
    for stem, by_method in sorted(groups.items()):
        if len(by_method) < 2:
            continue
        taus = sorted({r["tau"] for sel in by_method.values() for r in sel})
        lines += [f"## Fig. 3 (right): broken modules per alignment method · {stem}", "",
                  "Modules with S_j < τ at the pipeline's P_SR, read from each realigned adapter's lineage.", "",
                  "| Method | Modules | " + " | ".join(f"τ {t:g}" for t in taus) + " |",
                  "|---|---|" + "---|" * len(taus)]
        for method, sel in sorted(by_method.items()):
            counts = {r["tau"]: r["broken"] for r in sel}
            lines.append(f"| {method} | {sel[0]['modules']} | " + " | ".join(str(counts.get(t, "–")) for t in taus)
                         + " |")
        lines.append("")
    return lines


def overlap_summary(doc: dict) -> list[dict]:
    """Fig. 4(b) per pair of identifiers: {pair, modules, mean, min, max, chance} over the modules the pipeline's
    identification patches (chance = the mean overlap two independent random masks of the same sizes give)."""
    overlaps = doc["neuron_overlap"]
    out = []
    for pair in dict.fromkeys(f"{r['first']}~{r['second']}" for r in overlaps):
        values = [r["overlap"] for r in overlaps if f"{r['first']}~{r['second']}" == pair]
        chance = [r["chance"] for r in overlaps if f"{r['first']}~{r['second']}" == pair]
        out.append({"pair": pair, "modules": len(values), "mean": statistics.fmean(values), "min": min(values),
                    "max": max(values), "chance": statistics.fmean(chance)})
    return out


def _fig4(doc: dict) -> list[str]:
    sims = doc["broken_set_similarity"]
    prunes = sorted({r["layer_prune"] for r in sims})
    pairs = list(dict.fromkeys(f"{r['first']}~{r['second']}" for r in sims))
    lines = ["**Fig. 4(a)**: Jaccard similarity of the modules the adaptive rule (eqs. 9-10, the same draws) patches "
             "with each pair of identification methods' masks, per P_L (patched counts in brackets).", "",
             "| Pair | " + " | ".join(f"P_L {p:g}" for p in prunes) + " |", "|---|" + "---|" * len(prunes)]
    for pair in pairs:
        cells = {r["layer_prune"]: r for r in sims if f"{r['first']}~{r['second']}" == pair}
        lines.append(f"| {pair} | " + " | ".join(
            f"{cells[p]['jaccard']:.2f} ({cells[p]['broken_first']}/{cells[p]['broken_second']})" if p in cells
            else "–" for p in prunes) + " |")
    lines += ["", "**Fig. 4(b)**: overlap coefficient |M₁ ∩ M₂| / min(|M₁|, |M₂|) of two methods' neuron masks in "
              "each module the pipeline's identification patches, with the value two independent random masks of "
              "the same sizes give (chance); the paper's claim is overlap > 0.6.", "",
              "| Pair | Modules | Overlap mean [min, max] | Chance mean | Overlap − chance |", "|---|---|---|---|---|"]
    summary = overlap_summary(doc)
    # round before the sign, so that a difference of -0.0001 reads +0.000 and not -0.000
    lines += [f"| {s['pair']} | {s['modules']} | {s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}] | {s['chance']:.3f} "
              f"| {round(s['mean'] - s['chance'], 3) + 0.0:+.3f} |" for s in summary]
    if not summary:
        lines.append("| – | 0 | no module patched at this setting | – | – |")
    return lines + [""]


def _fig5(doc: dict) -> list[str]:
    lines = ["**Fig. 5**: the amplified reference M' + We(β) itself (eq. 2; β = 0 is Wa), on the test split.", "",
             "| β | HS % [95% CI] (k/n) | FA % [95% CI] (k/n) | Over-refusal % [95% CI] (k/n) |", "|---|---|---|---|"]
    for r in doc["amplification"]:
        lines.append(f"| {r['beta']:g} | {ci_text(r.get('hs'))} | {ci_text(r.get('fa'))} | "
                     f"{ci_text(r.get('over_refusal'))} |")
    return lines + [""]


def preamplification_pairs(doc: dict) -> list[tuple[float, float, dict, dict]]:
    """Table 4 / Fig. 6: (P_L, P_SR, row with the pipeline's β, row with β = 0) for every setting analysed both
    ways, in the document's order."""
    beta = doc["pipeline"].get("beta")
    keyed = {(r["point"]["layer_prune"], r["point"]["sparsity"], r["point"]["beta"]): r
             for r in doc["preamplification"] if r.get("point")}
    pairs = []
    for layer_prune, sparsity in dict.fromkeys((k[0], k[1]) for k in keyed):
        with_beta, without = keyed.get((layer_prune, sparsity, beta)), keyed.get((layer_prune, sparsity, 0.0))
        if with_beta and without:
            pairs.append((layer_prune, sparsity, with_beta, without))
    return pairs


def preamplification_effect(with_beta: dict, without: dict) -> dict | None:
    """HS(with β) − HS(without) over the same prompts with its paired bootstrap 95% interval ({diff, lo, hi});
    None when either row lacks its per-prompt flags."""
    if "flags" not in with_beta or "flags" not in without:
        return None
    return rate_difference(with_beta, without, "hs")


def _table4(doc: dict) -> list[str]:
    beta = doc["pipeline"].get("beta")
    lines = [f"**Table 4 / Fig. 6**: NLSR with pre-amplification (β = {beta:g}) and without (β = 0), per P_SR and P_L; "
             "the difference is HS(with) − HS(without) over the same prompts with a paired bootstrap 95% interval "
             "(negative: pre-amplification lowers HS).", "",
             "| P_L | P_SR | HS with β | HS without | HS difference [95% CI] | FA with β | FA without |",
             "|---|---|---|---|---|---|---|"]
    for layer_prune, sparsity, with_beta, without in preamplification_pairs(doc):
        diff = preamplification_effect(with_beta, without)
        shown = f"{diff['diff']:+.1f} [{diff['lo']:+.1f}, {diff['hi']:+.1f}]" if diff else "–"
        lines.append(f"| {layer_prune:g} | {sparsity:g} | {pct(with_beta, 'hs'):.1f} | {pct(without, 'hs'):.1f} | "
                     f"{shown} | {pct(with_beta, 'fa'):.1f} | {pct(without, 'fa'):.1f} |")
    return lines + [""]


def analyses_markdown(docs: dict[str, dict], by_method: list[dict] = ()) -> str:
    """The whole report: Fig. 3 (right) from `by_method` (method_broken_rows of every realigned cell), then one
    section per analysed cell."""
    lines = [ANALYSES_TITLE, "",
             "The paper's analyses at this scale, per cell (`nlsr analyze`): Fig. 3 and 4 read adapters and masks "
             "only; Fig. 5 and Table 4 / Fig. 6 are answered and judged like `nlsr judge` on the test split. "
             "Rates: % [95% Wilson interval] (k/n).", ""]
    if not docs:
        lines.append("No cell was analysed.")
    lines += _fig3_methods(list(by_method))
    for cell, doc in sorted(docs.items()):
        lines += [f"## {cell}", "", *_fig3(cell, doc), *_fig4(doc), *_fig5(doc), *_table4(doc)]
    return "\n".join(lines).rstrip() + "\n"


# The analyses' plots: (file stem in reports/plots, CSV columns, rows of the documents, plot function).
FIGURES = (("broken_layers", BROKEN_COLUMNS, broken_rows, plots.plot_broken_layers),
           ("set_similarity", SIMILARITY_COLUMNS, similarity_rows, plots.plot_set_similarity),
           ("neuron_overlap", OVERLAP_COLUMNS, overlap_rows, plots.plot_neuron_overlap),
           ("amplification", AMPLIFICATION_COLUMNS, amplification_rows, plots.plot_amplification),
           ("preamplification", PREAMPLIFICATION_COLUMNS, preamplification_rows, plots.plot_preamplification))
