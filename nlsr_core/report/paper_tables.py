"""reports/paper-tables.md: the paper's Tables 1-4 and 6 and Figs. 3-6 beside ours, from the outputs of the
paper-tables profile runs (judge/, frontier/, analyze/ and adapters/realigned/ of each run directory).

Our rows and where they come from (cell = <task>-p<ratio>-<method>):
    Non-Aligned                 judge variant nonaligned: the bare base M fine-tuned on the same poisoned mix
    Aligned (M'+Wa, before)     judge variant aligned: the aligned model before the attack (context; not a paper row)
    Aligned                     judge variant finetuned: the aligned model after the poisoned fine-tune (the paper's
                                "Aligned" row)
    SafeLoRA (τ from params)    judge variant safelora (the profiles set safelora.tau to the paper's 0.6)
    SafeLoRA (best τ)           the frontier's SafeLoRA point with the lowest HS whose FA is within 5 points of the
                                fine-tuned FA, chosen on the test split it is reported on: a bound in SafeLoRA's favour
    NLSR (paper's setting)      the frontier's NLSR point at P_SR 0.8, P_L 0.5
    NLSR (pipeline's setting)   judge variant realigned
    Random masks                the frontier's random-masks point at the pipeline's P_SR and P_L (NLSR's kept count)
A claim "holds" when the 95% Wilson intervals of the two rates it compares are disjoint in the claimed direction,
"does not hold" when they are disjoint the other way, and "cannot tell" when they overlap (a paired comparison
would be sharper; these rows come from different stages' answer files).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nlsr_core.errors import NlsrError
from nlsr_core.eval.formatting import pct
from nlsr_core.io.lineage import LINEAGE_FILE
from nlsr_core.report import paper_numbers as paper

PAPER_TABLES_TITLE = "# The paper's tables at CPU scale"
PAPER_SETTING = (0.8, 0.5)        # the paper's P_SR and P_L
BEFORE = "Aligned (M'+Wa, before the attack)"
NLSR = "NLSR (pipeline's setting)"
SAFELORA = "SafeLoRA (τ = 0.6)"
BEST_TAU_FA_MARGIN = 5.0          # SafeLoRA's best τ: lowest HS with FA ≥ FA(fine-tuned) − this many points


@dataclass
class Runs:
    """Everything the report reads from the profile runs, by cell key."""

    judged: dict[str, dict] = field(default_factory=dict)
    frontier: dict[str, dict] = field(default_factory=dict)
    analyzed: dict[str, dict] = field(default_factory=dict)
    similarity: list[dict] = field(default_factory=list)
    stage_times: dict[str, list[tuple[str, float]]] = field(default_factory=dict)   # run -> [(stage, seconds)]


_STAMPED = re.compile(r"^(?P<t>\d+) (?P<line>.*)$")

# What load_runs reads from a run, relative to it: the stages' summaries and the log, not the answers or adapters.
# One table for both load_runs and snapshot_run, so that a snapshot always holds what the report reads.
STAGE_DOCS = (("judged", "judge", "variants", "judged.json"),          # (Runs field, stage folder, key, file)
              ("frontier", "frontier", "points", "frontier.json"),
              ("analyzed", "analyze", "broken_layers", "analyze.json"))
REALIGNED, REPRO_LOG = "adapters/realigned", "repro.log"
RUN_INPUTS = (*(f"{stage}/*/{name}" for _, stage, _, name in STAGE_DOCS), f"{REALIGNED}/*/{LINEAGE_FILE}", REPRO_LOG)


def stage_times(log: Path) -> list[tuple[str, float]]:
    """(stage, wall seconds) of every stage `dvc repro` ran to the end, from a log whose lines carry the epoch
    second they were printed ("1765080000 Running stage 'align@dpo':"): a stage lasts until DVC updates the lock
    file after it (not until the next line, which may come from a later `dvc repro` of the same run, nor through
    the lock update of a stage restored from the cache after it), and counts only if it got there (an interrupted
    stage, or one still running when the log was read, is left out)."""
    spans, running = [], None               # spans: [stage, start, time of its last lock update or None]
    for raw in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _STAMPED.match(raw)
        if not m:
            continue
        if m["line"].startswith("Running stage '"):
            spans.append([m["line"].split("'")[1], int(m["t"]), None])
            running = spans[-1]
        elif m["line"].startswith("Stage '"):        # "... is cached", "... didn't change": not run, not timed
            running = None
        elif m["line"].startswith("Updating lock file") and running:
            running[2] = int(m["t"])
    return [(stage, float(end - start)) for stage, start, end in spans if end is not None]


def load_runs(runs: list[Path]) -> Runs:
    """The judged, frontier and analyze documents, realigned similarities and stage times of every run; a cell
    present in several runs is taken from the first (the runs share the DVC cache, so it is the same work)."""
    from nlsr_core.report.results import expand_adapter_dirs, similarity_rows
    from nlsr_core.report.study_report import load_docs

    out = Runs()
    for run in runs:
        run = Path(run)
        if not run.is_dir():
            raise NlsrError(f"--run {run}: not a directory; expected a profile run (e.g. .runs/paper-tables/ratios)")
        for attr, stage, key, name in STAGE_DOCS:
            for cell, doc in load_docs(run / stage, stage, key=key, name=name).items():
                getattr(out, attr).setdefault(cell, doc)
        realigned = run / REALIGNED
        if realigned.is_dir():
            seen = {r["cell"] for r in out.similarity}
            out.similarity += [r for r in similarity_rows(expand_adapter_dirs([realigned])) if r["cell"] not in seen]
        log = run / REPRO_LOG
        if log.is_file():
            out.stage_times[run.name] = stage_times(log)
    if not out.judged:
        raise NlsrError(f"--run: no judge/<cell>/judged.json under {', '.join(map(str, runs))}; expected the "
                        "paper-tables profile runs")
    return out


SNAPSHOT_LIST = "paper-tables-inputs.json"   # what a snapshot copied: the files a later snapshot may replace


def snapshot_run(run: Path, dest: Path) -> list[str]:
    """Copy the RUN_INPUTS of one run into `dest` in the same layout, so that `load_runs([dest])` reads what
    `load_runs([run])` reads: the report can then be rebuilt from committed files on a machine that holds neither
    the run (.runs/) nor the DVC cache. Works on an interrupted run too (the stages that finished). Replaces only
    files an earlier snapshot into `dest` wrote (listed in SNAPSHOT_LIST) or identical ones (the repro.log that
    `make repro-profile` copied); returns the copied paths, relative to both."""
    import filecmp
    import json
    import shutil

    run, dest = Path(run), Path(dest)
    if not (run / "judge").is_dir():
        raise NlsrError(f"--run {run}: no judge/ folder; expected a profile run (e.g. .runs/paper-tables/ratios) "
                        "whose judge stage ran")
    listed = dest / SNAPSHOT_LIST
    ours = set(json.loads(listed.read_text(encoding="utf-8"))) if listed.is_file() else set()
    sources = [s for pattern in RUN_INPUTS for s in sorted(run.glob(pattern))]
    relative = [s.relative_to(run).as_posix() for s in sources]
    for source, rel in zip(sources, relative):
        if (dest / rel).exists() and rel not in ours and not filecmp.cmp(source, dest / rel, shallow=False):
            raise NlsrError(f"--snapshot {dest}: {rel} exists and no earlier snapshot wrote it; expected a new "
                            "folder or an earlier snapshot (e.g. reports/paper-tables/<part>)")
    for source, rel in zip(sources, relative):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest / rel)
    listed.write_text(json.dumps(sorted(ours | set(relative)), indent=1) + "\n", encoding="utf-8")
    return relative


# --------------------------------------------------------------------------------------------- our rows
def _point(frontier: dict | None, method: str, **knobs) -> dict | None:
    for row in (frontier or {}).get("points", []):
        point = row.get("point") or {}
        if point.get("method") == method and all(point.get(k) == v for k, v in knobs.items()):
            return row
    return None


def best_safelora(frontier: dict | None, finetuned_fa: float | None) -> dict | None:
    """The SafeLoRA frontier point with the lowest HS (then the highest FA) among those whose FA is within
    BEST_TAU_FA_MARGIN points of the fine-tuned adapter's; None without such a point."""
    rows = [r for r in (frontier or {}).get("points", []) if (r.get("point") or {}).get("method") == "safelora"
            and pct(r, "hs") is not None and pct(r, "fa") is not None]
    if finetuned_fa is not None:
        rows = [r for r in rows if pct(r, "fa") >= finetuned_fa - BEST_TAU_FA_MARGIN]
    return min(rows, key=lambda r: (pct(r, "hs"), -pct(r, "fa"))) if rows else None


def cell_rows(runs: Runs, cell: str) -> dict[str, dict | None]:
    """Our rows of one cell (module docstring), each a rate row ({hs, fa, ...} records) or None when not run."""
    judged = runs.judged.get(cell)
    variants = (judged or {}).get("variants", {})
    frontier = runs.frontier.get(cell)
    pipeline = (frontier or {}).get("pipeline") or {}
    finetuned = variants.get("finetuned")
    safelora = best_safelora(frontier, pct(finetuned, "fa") if finetuned else None)
    sparsity, layer_prune = PAPER_SETTING
    return {
        "Non-Aligned": variants.get("nonaligned"),
        BEFORE: variants.get("aligned"),
        "Aligned": finetuned,
        SAFELORA: variants.get("safelora"),
        "SafeLoRA (best τ)": safelora,
        "NLSR (paper's P_SR 0.8, P_L 0.5)": _point(frontier, "nlsr", sparsity=sparsity, layer_prune=layer_prune),
        NLSR: variants.get("realigned"),
        "Random masks (NLSR's kept count)": _point(frontier, "random-masks", sparsity=pipeline.get("sparsity"),
                                                   layer_prune=pipeline.get("layer_prune")),
    }


# The paper's row each of ours is set beside.
PAPER_ROW = {"Non-Aligned": "Non-Aligned", "Aligned": "Aligned", SAFELORA: "SafeLoRA (τ = 0.6)",
             "NLSR (paper's P_SR 0.8, P_L 0.5)": "NLSR", NLSR: "NLSR"}


def _ci(row: dict | None, metric: str) -> str:
    """formatting.ci_text without the counts, to keep five-column tables readable."""
    entry = (row or {}).get(metric)
    if not isinstance(entry, dict) or entry.get("pct") is None:
        return "–"
    lo, hi = entry["ci95"]
    return f"{entry['pct']:.1f} [{lo:.1f}, {hi:.1f}]"


def _paper(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def compare(first: dict | None, second: dict | None, metric: str = "hs") -> str:
    """'lower' / 'higher' when first's 95% interval lies wholly below / above second's, else 'overlap'
    ('not run' when either is missing)."""
    a, b = (first or {}).get(metric), (second or {}).get(metric)
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("pct") is None or b.get("pct") is None:
        return "not run"
    if a["ci95"][1] < b["ci95"][0]:
        return "lower"
    if a["ci95"][0] > b["ci95"][1]:
        return "higher"
    return "overlap"


FA_LOST = "FA lost"


def fa_kept(outcome: str, repaired: dict | None, finetuned: dict | None) -> str:
    """The outcome of one comparison under a claim that keeps FA (Tables 1 and 3: "... with FA kept"): `outcome`,
    marked FA_LOST where the repaired model's FA interval lies wholly below the fine-tuned model's, which counts
    against the claim whatever HS did."""
    return f"{outcome}, {FA_LOST}" if compare(repaired, finetuned, "fa") == "lower" else outcome


def verdict(outcomes: list[str], want: str) -> str:
    """holds (every comparison `want`), does not hold (one the other way, or one that lost FA under a claim that
    keeps it), cannot tell (else, or nothing run)."""
    ran = [o for o in outcomes if o != "not run"]
    if not ran:
        return "cannot tell (not run)"
    other = "higher" if want == "lower" else "lower"
    if any(o == other or o.endswith(FA_LOST) for o in ran):
        return "does not hold"
    if len(ran) == len(outcomes) and all(o == want for o in ran):
        return "holds"
    return "cannot tell"


# --------------------------------------------------------------------------------------------- tables
def _side_by_side(title: str, columns: list[tuple[str, str]], rows_of, paper_rows: dict, note: str) -> list[str]:
    """One HS table and one FA table: our value [95% CI] · the paper's, per column (key, header)."""
    lines = [title, "", note, ""]
    for metric, index, name in (("hs", 0, "HS % (ours [95% CI] · paper)"), ("fa", 1, "FA % (ours [95% CI] · paper)")):
        lines += [f"{name}:", "", "| Row | " + " | ".join(h for _, h in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for label in rows_of(columns[0][0]):
            cells = []
            for key, _ in columns:
                ours = rows_of(key)[label]
                theirs = paper_rows.get(PAPER_ROW.get(label, ""), {}).get(key)
                cells.append(f"{_ci(ours, metric)} · {_paper(theirs[index] if theirs else None)}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Over-refusal and the judge-free safety score (ours; judged variants only):", "",
              "| Row | " + " | ".join(f"{h}: over-refusal · judge-free" for _, h in columns) + " |",
              "|---|" + "---|" * len(columns)]
    for label in rows_of(columns[0][0]):
        lines.append(f"| {label} | " + " | ".join(
            f"{_ci(rows_of(k)[label], 'over_refusal')} · {_ci(rows_of(k)[label], 'judge_free')}" for k, _ in columns)
            + " |")
    return lines + [""]


def table1(runs: Runs, task: str = "sst2", method: str = "dpo") -> tuple[list[str], str]:
    columns = [(p, f"p = {p:g}") for p in paper.RATIOS]
    rows = {p: cell_rows(runs, f"{task}-p{p:g}-{method}") for p in paper.RATIOS}
    outcomes = [fa_kept(compare(rows[p][NLSR], rows[p][SAFELORA]), rows[p][NLSR], rows[p]["Aligned"])
                for p in paper.RATIOS]
    claim = verdict(outcomes, "lower")
    lines = _side_by_side("## Table 1: poison ratios (SST-2, DPO)", columns, rows.__getitem__, paper.TABLE1,
                          "The paper's claim: NLSR has lower HS than SafeLoRA at every p, FA kept.")
    lines += [f"**Claim (NLSR's HS below SafeLoRA τ = 0.6's at every p, its FA interval not wholly below the "
              f"fine-tuned model's): {claim}** — per p: "
              + ", ".join(f"p {p:g}: {o}" for p, o in zip(paper.RATIOS, outcomes)) + ".", ""]
    return lines, claim


def table2(runs: Runs, task: str = "sst2", p: float = 0.05) -> tuple[list[str], str]:
    columns = [(m, m.upper() if m != "simpo" else "SimPO") for m in paper.ALIGNERS]
    rows = {m: cell_rows(runs, f"{task}-p{p:g}-{m}") for m in paper.ALIGNERS}
    drops = {m: compare(rows[m][NLSR], rows[m]["Aligned"]) for m in paper.ALIGNERS}
    preference = [drops[m] for m in paper.ALIGNERS if m != "sft"]
    claim = verdict(preference, "lower")
    lines = _side_by_side(f"## Table 2: alignment methods ({task.upper()}, p = {p:g})", columns, rows.__getitem__,
                          paper.TABLE2,
                          "The paper's claim: NLSR lowers HS under every preference aligner; under SFT it helps "
                          "least. Only DPO's recipe uses align.chosen_nll and align.precompute_ref (RPO's NLL term and "
                          "the precomputed reference); ORPO, KTO and SimPO train with align.beta, the same epochs, "
                          "learning rate and data; SFT trains Wa on the chosen answers.")
    lines += [f"**Claim (NLSR's HS below the fine-tuned model's under every preference aligner): {claim}** — "
              + ", ".join(f"{m}: {drops[m]}" for m in paper.ALIGNERS) + " (SFT listed for comparison).", ""]
    aligned = ["| Aligner | M'+Wa HS | M'+Wa over-refusal | M'+Wa FA |", "|---|---|---|---|"]
    aligned += [f"| {m} | {_ci(rows[m][BEFORE], 'hs')} | {_ci(rows[m][BEFORE], 'over_refusal')} | "
                f"{_ci(rows[m][BEFORE], 'fa')} |" for m in paper.ALIGNERS]
    return lines + ["Every aligner's aligned model before the attack:", "", *aligned, ""], claim


def table3(runs: Runs, p: float = 0.05, method: str = "dpo") -> tuple[list[str], str]:
    tasks = ("agnews", "gsm8k")
    columns = [(t, {"agnews": "AG News", "gsm8k": "GSM8K"}[t]) for t in tasks]
    rows = {t: cell_rows(runs, f"{t}-p{p:g}-{method}") for t in tasks}
    pairs = [(t, ref) for t in tasks for ref in ("Aligned", SAFELORA)]
    outcomes = [fa_kept(compare(rows[t][NLSR], rows[t][ref]), rows[t][NLSR], rows[t]["Aligned"]) for t, ref in pairs]
    claim = verdict(outcomes, "lower")
    lines = _side_by_side(f"## Table 3: other tasks (p = {p:g}, DPO)", columns, rows.__getitem__, paper.TABLE3,
                          "The paper's claim: NLSR has the lowest HS on AG News and GSM8K with FA kept.")
    lines += [f"**Claim (NLSR's HS below the fine-tuned model's and SafeLoRA's on both tasks, its FA interval not "
              f"wholly below the fine-tuned model's): {claim}** — "
              + ", ".join(f"{t} vs {ref}: {o}" for (t, ref), o in zip(pairs, outcomes)) + ".", ""]
    return lines, claim


def table4(runs: Runs) -> tuple[list[str], str]:
    """Pre-amplification, from every analysed cell: with and without β at the paper's setting and the pipeline's."""
    from nlsr_core.report.analyses_report import preamplification_pairs
    from nlsr_core.study.comparison import rate_difference

    lines = ["## Table 4 / Fig. 6: pre-amplification", "",
             "HS with pre-amplification (the pipeline's β) and without (β = 0), same prompts; difference = with − "
             "without, paired bootstrap 95% interval. Paper (P_SR 0.8, P_L 0.5): AG News 29.9 vs 44.4, GSM8K 25.1 vs "
             "41.5 (HS with vs without). Fig. 6's curves over P_SR are in reports/paper-tables/*/analyses.md.", "",
             "| Cell | P_SR | P_L | HS with β | HS without | Difference [95% CI] | FA with β | FA without |",
             "|---|---|---|---|---|---|---|---|"]
    outcomes = []
    for cell, doc in sorted(runs.analyzed.items()):
        pipeline = doc["pipeline"]
        settings = {PAPER_SETTING, (pipeline.get("sparsity"), pipeline.get("layer_prune"))}
        for layer_prune, sparsity, with_beta, without in preamplification_pairs(doc):
            if (sparsity, layer_prune) not in settings:
                continue
            d = rate_difference(with_beta, without, "hs")
            outcomes.append("lower" if d["hi"] < 0 else "higher" if d["lo"] > 0 else "overlap")
            lines.append(f"| {cell} | {sparsity:g} | {layer_prune:g} | {_ci(with_beta, 'hs')} | {_ci(without, 'hs')} "
                         f"| {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] | {_ci(with_beta, 'fa')} | "
                         f"{_ci(without, 'fa')} |")
    claim = verdict(outcomes, "lower") if outcomes else "cannot tell (not run)"
    return lines + ["", f"**Claim (pre-amplification lowers HS): {claim}** (paired intervals per row).", ""], claim


def table6(runs: Runs, task: str = "sst2", method: str = "dpo") -> tuple[list[str], str]:
    ratios = (0.01, 0.1)
    rows = {p: cell_rows(runs, f"{task}-p{p:g}-{method}") for p in ratios}
    ours = {"Aligned": "Aligned", "SafeLoRA": SAFELORA, "NLSR": NLSR}
    lines = ["## Table 6: transfer (HS on a harmful set no split was drawn from)", "",
             "Ours: the paper data's BeaverTails prompts (data.transfer paper) for the synthetic suite; the paper: "
             "HarmBench. HS % (ours [95% CI] · paper).", "",
             "| Row | " + " | ".join(f"p = {p:g}" for p in ratios) + " |", "|---|" + "---|" * len(ratios)]
    for name, label in ours.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{_ci(rows[p][label], 'hs_transfer')} · {_paper(paper.TABLE6[name].get(p))}" for p in ratios) + " |")
    outcomes = [compare(rows[p][NLSR], rows[p][ref], "hs_transfer") for p in ratios for ref in ("Aligned", SAFELORA)]
    claim = verdict(outcomes, "lower")
    return lines + ["", f"**Claim (NLSR's transfer HS below the fine-tuned model's and SafeLoRA's): {claim}**.", ""], claim


def figures(runs: Runs) -> tuple[list[str], dict[str, str]]:
    """Figs. 3-5 from the analysed cells, with the paper's stated claims and ours read from the rows."""
    from nlsr_core.report.analyses_report import method_broken_rows, overlap_summary, taus_of

    claims: dict[str, str] = {}
    lines = ["## Figures 3-5", ""]
    fig3, fig4, fig5 = [], [], []
    for cell, doc in sorted(runs.analyzed.items()):
        counts = {(r["sparsity"], r["tau"]): r["broken"] for r in doc["broken_layers"]}
        sparsities = sorted({s for s, _ in counts})
        taus = sorted({t for _, t in counts})
        monotone = all(counts[(a, t)] <= counts[(b, t)] for t in taus for a, b in zip(sparsities, sparsities[1:]))
        fig3.append(monotone)
        lines.append(f"- Fig. 3 (left), {cell}: broken modules at τ 0.5 per P_SR "
                     + ", ".join(f"{s:g}: {counts.get((s, 0.5), '–')}" for s in sparsities)
                     + f"; more broken modules at every τ as P_SR rises: {'yes' if monotone else 'no'}.")
        for s in overlap_summary(doc):
            if "random" not in s["pair"]:
                fig4.append(s["mean"] > 0.6 and s["mean"] > s["chance"])
            lines.append(f"- Fig. 4(b), {cell}, {s['pair']}: neuron overlap {s['mean']:.3f} over {s['modules']} "
                         f"modules (chance {s['chance']:.3f}).")
        amp = {r["beta"]: r for r in doc["amplification"]}
        if 0.0 in amp and 0.9 in amp:
            fig5.append(compare(amp[0.9], amp[0.0]))
            lines.append(f"- Fig. 5, {cell}: HS of We(β) β 0 → 0.9: {_ci(amp[0.0], 'hs')} → {_ci(amp[0.9], 'hs')}; "
                         f"FA {_ci(amp[0.0], 'fa')} → {_ci(amp[0.9], 'fa')}; over-refusal "
                         f"{_ci(amp[0.0], 'over_refusal')} → {_ci(amp[0.9], 'over_refusal')}.")
    by_method = method_broken_rows(runs.similarity, taus_of(runs.analyzed))
    at = {(r["method"], r["tau"]): r["broken"] for r in by_method if r["cell"].startswith("sst2-p0.05-")}
    if ("orpo", 0.2) in at and ("kto", 0.2) in at:
        lines.append(f"- Fig. 3 (right), sst2-p0.05: broken modules at τ 0.2: "
                     + ", ".join(f"{m} {at[(m, 0.2)]}" for m in paper.ALIGNERS if (m, 0.2) in at)
                     + f" (paper: ORPO's below 20% of KTO's; here {at[('orpo', 0.2)]} vs {at[('kto', 0.2)]}).")
    claims["fig3"] = ("holds" if fig3 and all(fig3) else "does not hold" if fig3 else "cannot tell (not run)")
    claims["fig4"] = ("holds" if fig4 and all(fig4) else "does not hold" if fig4 else "cannot tell (not run)")
    claims["fig5"] = ("holds" if fig5 and all(o == "lower" for o in fig5) else
                      "does not hold" if any(o == "higher" for o in fig5) else
                      "cannot tell" if fig5 else "cannot tell (not run)")
    lines += ["", "| Figure | The paper's claim | At this scale |", "|---|---|---|"]
    lines += [f"| {k.replace('fig', 'Fig. ')} | {paper.FIGURE_CLAIMS[k]} | {claims[k]} |" for k in ("fig3", "fig4", "fig5")]
    return lines + [""], claims


def stage_time_lines(runs: Runs) -> list[str]:
    if not runs.stage_times:
        return ["## Stage times", "", "No repro.log in the runs (stage times are logged by `make repro-paper-tables`).",
                ""]
    lines = ["## Stage times", "", "| Run | Stage | Minutes |", "|---|---|---|"]
    for run, times in runs.stage_times.items():
        lines += [f"| {run} | {stage} | {seconds / 60:.1f} |" for stage, seconds in times]
        lines.append(f"| {run} | **total** | **{sum(s for _, s in times) / 60:.1f}** |")
    return lines + [""]


def paper_tables_markdown(runs: Runs, tables=("table1", "table2", "table3", "table4", "table6", "figures")) -> str:
    """The whole report (or the named `tables`): a claims summary, then each table and the figures, then stage
    times."""
    sections, claims = [], {}
    builders = {"table1": table1, "table2": table2, "table3": table3, "table4": table4, "table6": table6}
    for name, build in builders.items():
        if name in tables:
            lines, claims[name.replace("table", "Table ")] = build(runs)
            sections += lines
    fig_lines, fig_claims = figures(runs) if "figures" in tables else ([], {})
    head = [PAPER_TABLES_TITLE, "",
            "The paper's numbers (Llama-3-8B, n = 1000, beaver-dam judge) beside ours (SmolLM2-135M, the synthetic "
            "suite, the profiles' judge), cell by cell; '–' = not run. Our rates carry 95% Wilson intervals; the "
            "verdicts compare intervals (nlsr_core.report.paper_tables).", "",
            "| Claim | At this scale |", "|---|---|",
            *(f"| {k} | {v} |" for k, v in claims.items()),
            *(f"| {k.replace('fig', 'Fig. ')} | {v} |" for k, v in fig_claims.items()), ""]
    return "\n".join(head + sections + fig_lines + stage_time_lines(runs)).rstrip() + "\n"
