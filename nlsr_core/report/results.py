"""Aggregate judged cells into DVC metrics, the paper's Table 1 layout and plot data.

Inputs are the `judged.json` files written by `nlsr judge` (one per cell `<task>-p<p>-<method>`):
    {"cell", "task", "p", "method", "judge": {...}, "generation": {...},
     "variants": {variant: {"hs"|"hs_plus"|"fa"|"over_refusal": {"pct", "k", "n", "ci95": [lo, hi]}, "adapter", ...,
                            "judge_free": {"pct", "k", "n", "ci95", "margin"} (when the data has held-out pairs)}}}
Outputs:
    metrics.json   {cell: {variant: {"hs": %, "hs_plus": %, "fa": %, "over_refusal": %, "judge_free": %}}} (dvc metrics)
    results.md     per (task, method): variants × p with HS and FA side by side and their averages (Table 1),
                   then every rate with n and its 95% Wilson interval
    plot rows      HS/FA against p per variant; per-module similarity with patched modules (Figure 3)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nlsr_core.errors import NlsrError
from nlsr_core.eval.formatting import ci_text

# The paper's row order, with M' alone (W0 merged, no Wa) after the base: where the safety lives shows in every run.
# The base row is M with no adapter at all; "Non-Aligned" means what it means in the paper's Table 1: the unaligned
# base fine-tuned on the same poisoned mix (the nonaligned stage).
VARIANTS = ("base", "nonaligned", "weak", "aligned", "finetuned", "safelora", "realigned")
LABELS = {"base": "Base (M, no adapter)", "nonaligned": "Non-Aligned (M fine-tuned on the mix)",
          "weak": "Weak (M' = M+W0, no Wa)", "aligned": "Aligned (M'+Wa)", "finetuned": "Fine-tuned (M'+Wt)",
          "safelora": "*SafeLoRA", "realigned": "*NLSR (realigned)"}
METRICS = ("hs", "hs_plus", "fa", "over_refusal", "over_refusal_sensitive", "judge_free", "hs_transfer")


@dataclass(frozen=True)
class Judged:
    path: Path
    doc: dict

    @property
    def cell(self) -> str:
        return self.doc["cell"]

    def pct(self, variant: str, metric: str) -> float | None:
        entry = self.doc["variants"].get(variant, {}).get(metric)
        return None if entry is None else entry.get("pct")


def find_judged(paths: list[Path]) -> list[Path]:
    """judged.json files: each path is such a file or a directory searched for `*/judged.json` (and its own)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(p.glob("*/judged.json"))
            if (p / "judged.json").is_file():
                found.append(p / "judged.json")
        else:
            raise NlsrError(f"--judged {p}: no such file or directory")
    return sorted(set(found))


def load_judged(paths: list[Path]) -> list[Judged]:
    """Read and check judged.json files; sorted by (task, method, p); one file per cell."""
    docs: dict[str, Judged] = {}
    for path in find_judged(paths):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise NlsrError(f"{path}: not valid JSON ({exc.msg})") from None
        missing = [k for k in ("cell", "task", "p", "method", "variants") if k not in doc]
        if missing:
            raise NlsrError(f"{path}: not a judged.json (missing {', '.join(missing)})")
        if doc["cell"] in docs:
            raise NlsrError(f"{path}: cell {doc['cell']} also in {docs[doc['cell']].path}; expected one file per cell")
        docs[doc["cell"]] = Judged(path, doc)
    if not docs:
        raise NlsrError(f"--judged {', '.join(map(str, paths))}: no judged.json found")
    return sorted(docs.values(), key=lambda j: (j.doc["task"], j.doc["method"], float(j.doc["p"])))


def metrics(judged: list[Judged]) -> dict:
    """{cell: {variant: {"hs", "hs_plus", "fa", "over_refusal", "judge_free"}}} in percent (absent rates are left
    out)."""
    out = {}
    for j in judged:
        out[j.cell] = {v: {m: j.pct(v, m) for m in METRICS if j.pct(v, m) is not None}
                       for v in variants_present([j])}
    return out


def variants_present(judged: list[Judged]) -> list[str]:
    present = {v for j in judged for v in j.doc["variants"]}
    return [v for v in VARIANTS if v in present] + sorted(present - set(VARIANTS))


def _groups(judged: list[Judged]) -> dict[tuple[str, str], list[Judged]]:
    groups: dict[tuple[str, str], list[Judged]] = {}
    for j in judged:
        groups.setdefault((j.doc["task"], j.doc["method"]), []).append(j)
    return groups


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def table1(task: str, method: str, cells: list[Judged]) -> list[str]:
    """Markdown lines: variants as rows; HS per p + average, then FA per p + average (paper Table 1)."""
    ps = [f"p = {float(j.doc['p']):g}" for j in cells]
    head = ["Variant"] + [f"HS {p}" for p in ps] + ["HS avg"] + [f"FA {p}" for p in ps] + ["FA avg"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for v in variants_present(cells):
        hs = [j.pct(v, "hs") for j in cells]
        fa = [j.pct(v, "fa") for j in cells]
        row = [LABELS.get(v, v)] + [_num(x) for x in hs] + [_num(_mean(hs))] + [_num(x) for x in fa] + [_num(_mean(fa))]
        lines.append(f"| {' | '.join(row)} |")
    return lines


def judge_free_text(entry: dict | None) -> str:
    """The judge-free score as `pct [lo, hi] (k/n), margin m` (nats per token)."""
    if not entry or entry.get("pct") is None:
        return "–"
    return f"{ci_text(entry)}, margin {entry['margin']:+.3f}"


def interval_table(cells: list[Judged]) -> list[str]:
    """Every rate as `pct [lo, hi] (k/n)` with its 95% Wilson interval; the judge-free safety score beside HS, and
    HS on the transfer set (data.transfer) where a cell has one."""
    transfer = any("hs_transfer" in e for j in cells for e in j.doc["variants"].values())
    lines = ["| Variant | p | HS % [95% CI] (k/n) | HS+ % [95% CI] (k/n) | FA % [95% CI] (k/n) "
             "| Over-refusal % [95% CI] (k/n) | Over-refusal, benign-sensitive probes % [95% CI] (k/n) "
             "| Judge-free safety score % [95% CI] (k/n), margin |"
             + (" HS, transfer set % [95% CI] (k/n) |" if transfer else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if transfer else "")]
    for v in variants_present(cells):
        for j in cells:
            entry = j.doc["variants"].get(v)
            if entry is None:
                continue
            lines.append(f"| {LABELS.get(v, v)} | {float(j.doc['p']):g} | "
                         + " | ".join(ci_text(entry.get(m)) for m in METRICS if m not in ("judge_free", "hs_transfer"))
                         + f" | {judge_free_text(entry.get('judge_free'))} |"
                         + (f" {ci_text(entry.get('hs_transfer'))} |" if transfer else ""))
    return lines


RESULTS_TITLE = "# Results"   # results.md's first line: how `nlsr report` recognises its own file


def results_markdown(judged: list[Judged]) -> str:
    """The whole results.md: one section per (task, method)."""
    out = [RESULTS_TITLE, "",
           "HS = harmfulness score (% of held-out harmful prompts answered harmfully, lower is better); "
           "FA = fine-tuning accuracy on the task's test split (higher is better); over-refusal = % of benign "
           "prompts refused (a refusal phrase in the answer's opening; file-backed data adds the synthetic "
           "benign-but-sensitive probes, reported separately); judge-free safety score = % of held-out "
           "refusal/compliance pairs (prompts no training split holds) where the variant gives the refusal the "
           "higher length-normalised log-likelihood, margin = mean difference in nats per token (higher is "
           "safer; no generation, no keyword list). Rows as in the paper's Table 1 (variants × poison ratio p, HS "
           "and FA side by side; avg = mean over the p columns present); * = training-free realignment.", ""]
    for (task, method), cells in _groups(judged).items():
        settings = cells[0].doc.get("generation", {})
        judge = cells[0].doc.get("judge", {}).get("name", "?")
        out += [f"## {task} · {method}", "",
                f"Judge: `{judge}`; generation: {_settings_text(settings)}.", ""]
        out += table1(task, method, cells) + [""]
        out += ["95% Wilson intervals and counts:", ""] + interval_table(cells) + [""]
    return "\n".join(out)


def _settings_text(settings: dict) -> str:
    """judged.json's answering record as text: per split, greedy decoding with its token budget or label scoring
    (nlsr_core.eval.settings); a flat record (one budget for every split) as key-value pairs."""
    if not any(isinstance(v, dict) for v in settings.values()):
        return ", ".join(f"{k} {v}" for k, v in sorted(settings.items())) or "unrecorded"
    jobs = {split: job for split, job in settings.items() if isinstance(job, dict)}
    scored = jobs.get("task", {}).get("decoding") == "label-scoring"   # gsm8k is generated in either fa_mode
    parts = [f"FA by {'label scoring' if scored else 'generation'}"]
    for split, job in jobs.items():
        how = ("labels ranked by likelihood" if job.get("decoding") == "label-scoring"
               else f"{job.get('decoding', '?')} {job.get('max_new_tokens', '?')} new tokens")
        parts.append(f"{split}: {how}")
    templates = sorted({str(job.get("template", "?")) for job in jobs.values()})
    return "; ".join(parts) + f" (template {', '.join(templates)})"


# --------------------------------------------------------------------------------------------- plot data
def hs_fa_rows(judged: list[Judged]) -> tuple[list[str], list[dict]]:
    """Wide rows for `dvc plots` (x = p): task, method, p, then <variant>_hs / _fa / _over_refusal."""
    variants = variants_present(judged)
    columns = ["task", "method", "p"] + [f"{v}_{m}" for v in variants for m in METRICS]
    rows = []
    for j in judged:
        row = {"task": j.doc["task"], "method": j.doc["method"], "p": float(j.doc["p"])}
        row.update({f"{v}_{m}": j.pct(v, m) for v in variants for m in METRICS})
        rows.append(row)
    return columns, rows


SIMILARITY_COLUMNS = ["cell", "index", "module", "similarity", "patched"]


def similarity_rows(realigned: dict[str, Path]) -> list[dict]:
    """Per-module similarity (eq. 8) and patched flag from each realigned adapter's lineage.json `modules`."""
    from nlsr_core.lora.adapters import short_name
    from nlsr_core.io.lineage import read_lineage

    rows = []
    for cell, path in sorted(realigned.items()):
        try:
            modules = read_lineage(path).get("modules") or []
        except FileNotFoundError:
            continue
        for i, m in enumerate(modules):
            name = m.get("name") or m.get("module") or str(i)  # realign writes ModuleRecord.as_dict(): "module"
            rows.append({"cell": cell, "index": i, "module": short_name(str(name)),
                         "similarity": m.get("similarity"), "patched": int(bool(m.get("patched")))})
    return rows


def realigned_dirs(judged: list[Judged]) -> dict[str, Path]:
    """cell -> realigned adapter directory recorded in judged.json (when it still exists)."""
    out = {}
    for j in judged:
        adapter = j.doc["variants"].get("realigned", {}).get("adapter")
        if adapter and Path(adapter).is_dir():
            out[j.cell] = Path(adapter)
    return out


def expand_adapter_dirs(paths: list[Path]) -> dict[str, Path]:
    """cell -> adapter dir: a path with a lineage.json is one adapter (cell = its name); otherwise its
    subdirectories with a lineage.json are (e.g. `adapters/realigned` -> every `adapters/realigned/<cell>`)."""
    from nlsr_core.io.lineage import LINEAGE_FILE

    out = {}
    for p in paths:
        if (p / LINEAGE_FILE).is_file():
            out[p.name] = p
        elif p.is_dir():
            out.update({d.name: d for d in sorted(p.iterdir()) if (d / LINEAGE_FILE).is_file()})
        else:
            raise NlsrError(f"--realigned {p}: no such directory")
    return out


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Deterministic CSV (empty cells for None; floats as repr, so values round-trip)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
