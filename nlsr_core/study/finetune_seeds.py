"""Fine-tuning seeds: does a repair's effect survive another poisoned fine-tune? (docs/DESIGN.md §8)

A fine-tuning seed s draws its own poisoned mix (`mix_poison(..., seed=s)`: which task rows, which poison rows,
their order) and trains Wt_s from Wa with data-order seed s; every other setting is the pipeline's. The pipeline's
own fine-tune (mix drawn with data.seed, order finetune.seed) is the first replicate, so only the other seeds are
trained. On every replicate every registered repair is scored on the test split, each at the pipeline's setting:

    nlsr           P_SR = identify.sparsity and realign.* (eqs. 9-11), the pipeline's realign for that Wt
    random-masks   the same selection and eq. 11 with uniform masks of the same kept count per tensor
    every other    its knobs from params (realign.interpolate_lambda/_target, realign.safety_vector_gamma,
    method         safelora.tau, realign.safemerge_tau/_weight, realign.antidote_dense_ratio,
                   realign.dg_hard_scale), the same on every replicate

`finetune_seeds_markdown` turns the stage's documents into reports/finetune-seeds.md: HS and FA of each method
per replicate with mean ± sd over replicates, and NLSR − random masks per replicate with a paired bootstrap
interval over prompts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from nlsr_core.config import check_value
from nlsr_core.errors import NlsrError
from nlsr_core.eval.formatting import mean_sd, pct
from nlsr_core.study.comparison import method_of, rate_difference
from nlsr_core.repair.registry import REPAIRS
from nlsr_core.study.cell import CellInputs
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
    return rate_difference(ours, rand, "hs", n_boot, seed)


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


# --------------------------------------------------------------------------------------------- the study
def replicate_sources(inputs: CellInputs) -> tuple[Path, Path]:
    """(the cell task's prepared training rows, the poison pool): what each seed draws its mix from."""
    from nlsr_core.eval.evaluate import parse_cell

    data = Path(inputs.data_dir)
    return data / "tasks" / parse_cell(inputs.cell).task / "train.jsonl", data / "poison" / "pool.jsonl"


def run_replicates(inputs: CellInputs, seeds, n: int, settings, knobs: dict, work_dir: Path,
                   echo: Callable[[str], None] = print) -> tuple[dict, dict[str, Path]]:
    """Fine-tune the cell again with each seed in `seeds` (n rows per mix, the pipeline's TrainSettings
    `settings`) into `work_dir`, then score every registered repair (`replicate_points` with `knobs`) on the
    pipeline's replicate and each new one, on the test split. Every input is checked before any training.
    Returns (the finetune-seeds.json document, {"finetuned-s<seed>": trained adapter dir})."""
    from nlsr_core.eval.evaluate import load_splits, parse_cell
    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.io.lineage import inherited_fields, input_record, lineage_or_empty, read_lineage, write_lineage
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.study.scoring import builder, describe, score_points, settings_record

    cell = parse_cell(inputs.cell)
    task_file, pool_file = replicate_sources(inputs)
    task_rows, pool = read_jsonl(task_file), read_jsonl(pool_file)
    pipeline_ft = lineage_or_empty(Path(inputs.finetuned))
    try:
        mix_path, pipeline_seed = Path(pipeline_ft["mix"]["path"]), int(pipeline_ft["params"]["finetune"]["seed"])
    except (KeyError, TypeError, ValueError):
        raise NlsrError(f"{inputs.finetuned}/lineage.json: no mix path or finetune.seed; expected the output of "
                        "`nlsr finetune`") from None
    mixes = seed_mixes(task_rows, pool, n, cell.p, seeds)
    seeds = check_seeds(seeds, pipeline_seed, [r["id"] for r in read_jsonl(mix_path)],
                        lambda s: [r["id"] for r in mixes[s][0]])
    build = builder(inputs)          # every input checked before any training
    named = replicate_points(build.pipeline, knobs)
    splits = load_splits(inputs.data_dir, cell.task, names=("harmful", "task"))
    parent = read_lineage(Path(inputs.aligned))
    train_params = {"n": n, "lr": settings.lr, "epochs": settings.epochs, "batch_size": settings.batch_size,
                    "max_length": settings.max_length}

    finetuned, trained = {"pipeline": Path(inputs.finetuned)}, {}
    for s in seeds:
        echo(f"finetune-seeds {cell.key}: fine-tuning seed {s}")
        rows, info = mixes[s]
        result = train_replicate(inputs.aligned, rows, s, settings, inputs.compute)
        path = Path(work_dir) / f"finetuned-s{s}"
        save_adapter(result.adapter(), path)
        write_lineage(path, "finetune-seeds", [input_record(Path(inputs.aligned), "aligned"),
                                               input_record(task_file, "task rows"),
                                               input_record(pool_file, "poison pool")],
                      {"finetune": {**train_params, "seed": s}}, **inherited_fields(parent),
                      mix={"seed": s, **{k: v for k, v in info.items() if k != "poison_rows"},
                           "poison_ids": [r["id"] for r in rows if r["flag"] == "poison"]},
                      train=result.loss_summary(), compute=inputs.compute.record() if inputs.compute else None)
        finetuned[f"seed {s}"], trained[path.name] = path, result.loss_summary()
    replicates = []
    for name, path in finetuned.items():
        pipeline = name == "pipeline"   # the pipeline's fine-tune is already loaded and checked
        replicate = inputs if pipeline else inputs.with_finetuned(path)
        rows = score_points(replicate, named, build if pipeline else builder(replicate), splits,
                            ("aligned", "finetuned") if pipeline else ("finetuned",), echo=echo)
        for row in rows:
            echo(f"finetune-seeds {cell.key} {name}: {describe(row)}")
        replicates.append({"name": name, "finetuned": str(inputs.finetuned) if pipeline else path.name,
                           "train": trained.get(path.name), "rows": rows})
    document = {"cell": cell.key, "split": "test", "pipeline": build.pipeline.record(),
                "judge": {"name": inputs.judge_name, "model": inputs.judge_model},
                "generation": settings_record(inputs), "seeds": seeds, "replicates": replicates}
    return document, {f"finetuned-s{s}": finetuned[f"seed {s}"] for s in seeds}


# --------------------------------------------------------------------------------------------- training
def seed_mixes(task_rows: list[dict], poison_pool: list[dict], n: int, p: float, seeds) -> dict[int, tuple]:
    """seed -> (rows, info) of its poisoned mix (nlsr_core.data.mixing.mix_poison with that seed: n rows,
    round(n·p) poison, which rows and their order drawn by the seed)."""
    from nlsr_core.data.mixing import mix_poison

    return {int(s): mix_poison(task_rows, poison_pool, n, p, int(s)) for s in seeds}


def train_replicate(aligned_dir, rows: list[dict], seed: int, settings, compute=None):
    """Wt_s: SFT continuing Wa (nlsr_core.train.finetune.continue_adapter) on seed `seed`'s mix `rows` with data-order
    seed `seed` and the pipeline's other `settings` (TrainSettings), on `compute`. Returns the TrainResult."""
    from nlsr_core.train.finetune import continue_adapter, stack_from_lineage
    from nlsr_core.io.lineage import read_lineage

    spec, weak = stack_from_lineage(read_lineage(Path(aligned_dir)), aligned_dir, compute)
    return continue_adapter(spec, weak, aligned_dir, rows, dataclasses.replace(settings, seed=int(seed)))
