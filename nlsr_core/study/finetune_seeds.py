"""Fine-tuning seeds: does a repair's effect survive another poisoned fine-tune? (docs/DESIGN.md §8)

A fine-tuning seed s draws its own poisoned mix (`mix_poison(..., seed=s)`: which task rows, which poison rows,
their order) and trains Wt_s from Wa with data-order seed s; every other setting is the pipeline's. The pipeline's
own fine-tune (mix drawn with data.seed, order finetune.seed) is the first replicate, so only the other seeds are
trained. On every replicate every registered repair is scored on the test split, each at the pipeline's setting:

    nlsr           P_SR = identify.sparsity and realign.* (eqs. 9-11), the pipeline's realign for that Wt
    random-masks   the same selection and eq. 11 with uniform masks of the same kept count per tensor
    interpolate    Wt + λ·(We − Wt),  λ = realign.interpolate_lambda
    safety-vector  ΔWt + γ·ΔWa,       γ = realign.safety_vector_gamma
    safelora       SafeLoRA projection, τ = safelora.tau

`finetune_seeds_markdown` turns the stage's documents into reports/finetune-seeds.md: HS and FA of each method
per replicate with mean ± sd over replicates, and NLSR − random masks per replicate with a paired bootstrap
interval over prompts.
"""
from __future__ import annotations

import dataclasses

from nlsr_core.config import check_value
from nlsr_core.errors import NlsrError
from nlsr_core.eval.formatting import mean_sd, pct
from nlsr_core.study.comparison import hs_difference, method_of
from nlsr_core.repair.registry import REPAIRS
from nlsr_core.study.points import Point

def replicate_points(pipeline: Point, knobs: dict) -> list[tuple[str, Point]]:
    """(method, point) of every registered repair (nlsr_core.repair.registry.REPAIRS), each at the pipeline's
    setting: a method with the pipeline's settings type (nlsr, random-masks) keeps the pipeline's knobs, the others
    take theirs from `knobs` ({params key: value}, e.g. {"safelora.tau": 0.6}; a missing key its default)."""
    points = []
    for name, repair in REPAIRS.items():
        if isinstance(pipeline.settings, repair.settings):
            points.append((name, pipeline.replace(method=name)))
        else:
            points.append((name, Point(name, repair.settings_from_params(knobs), pipeline.identification)))
    return points


def check_seeds(seeds, pipeline_seed: int, pipeline_mix_ids: list[str], mix_ids_of) -> list[int]:
    """The seeds to train, as ints: at least one, no repeats, none that would re-train the pipeline's fine-tune
    (same data-order seed and the same mix rows in the same order). `mix_ids_of(seed)` gives a seed's mix ids."""
    seeds = [int(s) for s in check_value("finetune_seeds.seeds", list(seeds))]
    if len(set(seeds)) != len(seeds):
        raise NlsrError(f"finetune_seeds.seeds {seeds}: a seed is listed twice; expected distinct seeds")
    for s in seeds:
        if s == pipeline_seed and mix_ids_of(s) == pipeline_mix_ids:
            raise NlsrError(f"finetune_seeds.seeds: seed {s} repeats the pipeline's own fine-tune (same mix, "
                            f"finetune.seed {pipeline_seed}); expected only other seeds")
    return seeds


# --------------------------------------------------------------------------------------------- report
def _by_method(replicate: dict) -> dict[str, dict]:
    """method (or 'finetuned' / 'aligned') -> its scored row in one replicate."""
    return {method_of(row) or row["name"]: row for row in replicate["rows"]}


def replicate_contrast(replicate: dict, n_boot: int = 10000, seed: int = 0) -> dict | None:
    """NLSR − random masks HS in one replicate (paired bootstrap over the same prompts), or None."""
    rows = _by_method(replicate)
    ours, rand = rows.get("nlsr"), rows.get("random-masks")
    if not (ours and rand and ours.get("flags") and rand.get("flags")):
        return None
    return hs_difference(ours, rand, n_boot, seed)


FINETUNE_SEEDS_TITLE = "# Fine-tuning seeds"   # the first line: how `nlsr report` recognises its own file


def finetune_seeds_markdown(docs: dict[str, dict]) -> str:
    """reports/finetune-seeds.md from {cell: finetune-seeds.json document}."""
    out = [FINETUNE_SEEDS_TITLE, "",
           "Each replicate fine-tunes Wa on its own poisoned mix (seed s draws the task rows, the poison rows and "
           "their order) and repairs it with every method at the pipeline's setting; the first replicate is the "
           "pipeline's own fine-tune. Test split; HS and FA in %.", ""]
    if not docs:
        return "\n".join(out + ["No finetune-seeds output (run the `finetune-seeds` stage).", ""])
    for cell, doc in sorted(docs.items()):
        reps = doc["replicates"]
        names = [r["name"] for r in reps]
        tables = [_by_method(r) for r in reps]
        n_hs = next((t["finetuned"]["hs"]["n"] for t in tables if "finetuned" in t), None)
        out += [f"## {cell}", "", f"Replicates: {', '.join(names)}; n = {n_hs} harmful prompts per replicate.", "",
                "| Method | " + " | ".join(f"HS {n}" for n in names) + " | HS mean ± sd | "
                + " | ".join(f"FA {n}" for n in names) + " | FA mean ± sd |",
                "|---|" + "---|" * (2 * len(names) + 2)]
        for method in ("finetuned", *REPAIRS):
            rows = [t.get(method) for t in tables]
            if not any(rows):
                continue
            hs, fa = [pct(r, "hs") for r in rows], [pct(r, "fa") for r in rows]
            label = next((r["label"] for r in rows if r), method)
            cells = [("–" if v is None else f"{v:.1f}") for v in hs]
            cells += [mean_sd([v for v in hs if v is not None])]
            cells += [("–" if v is None else f"{v:.1f}") for v in fa]
            cells += [mean_sd([v for v in fa if v is not None])]
            name = "fine-tuned (no repair)" if method == "finetuned" else label
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        diffs = [(r["name"], replicate_contrast(r)) for r in reps]
        out += ["", "NLSR − random masks at the pipeline's P_SR (same kept count, selection and prompts; paired "
                "bootstrap over prompts, 10000 resamples; negative = NLSR leaves fewer harmful answers):", ""]
        out += [f"- {name}: {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] points" for name, d in diffs if d]
        values = [d["diff"] for _, d in diffs if d]
        if values:
            out.append(f"- over replicates: {mean_sd(values)} points (mean ± sd)")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- training
def seed_mixes(task_rows: list[dict], poison_pool: list[dict], n: int, p: float, seeds) -> dict[int, tuple]:
    """seed -> (rows, info) of its poisoned mix (nlsr_core.data.mixing.mix_poison with that seed: n rows,
    round(n·p) poison, which rows and their order drawn by the seed)."""
    from nlsr_core.data.mixing import mix_poison

    return {int(s): mix_poison(task_rows, poison_pool, n, p, int(s)) for s in seeds}


def train_replicate(aligned_dir, rows: list[dict], seed: int, settings, compute=None):
    """Wt_s: SFT continuing Wa (nlsr_core.train.finetune.continue_adapter) on seed `seed`'s mix `rows` with data-order
    seed `seed` and the pipeline's other `settings` (TrainSettings), on `compute`. Returns the TrainResult."""
    from pathlib import Path

    from nlsr_core.train.finetune import continue_adapter, stack_from_lineage
    from nlsr_core.io.lineage import read_lineage

    spec, weak = stack_from_lineage(read_lineage(Path(aligned_dir)), aligned_dir, compute)
    return continue_adapter(spec, weak, aligned_dir, rows, dataclasses.replace(settings, seed=int(seed)))
