"""Score a list of realign operating points of one cell (what frontier, calibrate and ablate share).

Each point's adapter is built from the cell's artifacts without retraining and, for P_SR / P_L / δ / selection /
seed, without touching the model (masks come from the identify stage's stats.safetensors); the adapters are then
answered and scored exactly like `nlsr judge` (same answering settings, judge and answer/verdict cache, so a point
whose adapter was already judged costs nothing). Every function takes the cell's `CellInputs`
(nlsr_core.study.cell), which the study commands parse from their options.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nlsr_core.study.cell import CellInputs


def parse_task(cell: str) -> str:
    from nlsr_core.eval.evaluate import parse_cell

    return parse_cell(cell).task


def builder(inputs: CellInputs, collect=None):
    """PointBuilder over the cell's adapters (all checked before any work); its pipeline point carries the
    identification method recorded in the stats file."""
    from nlsr_core.lora.adapters import check_compatible, load_adapter
    from nlsr_core.method.neurons import load_stats, masks_from_stats
    from nlsr_core.method.realign import check_realign_inputs
    from nlsr_core.study.points import PointBuilder

    ft, al, ref = (load_adapter(p) for p in (inputs.finetuned, inputs.aligned, inputs.reference))
    stats, method = load_stats(inputs.stats, ref)
    point = inputs.pipeline.replace(identifier=method)
    ident = point.identification
    # stats that do not fit the reference, or adapters that do not fit each other, fail here in one line
    masks = masks_from_stats(ref, stats, ident.sparsity, ident.preset, ident.identifier)
    check_realign_inputs(ft, ref, masks, inputs.stats)
    check_compatible(ft, al, ("finetuned", "aligned"))
    realignment = inputs.realignment
    norms = None if realignment is None else (lambda: realignment.norms(ft, inputs.compute, inputs.model_name))
    return PointBuilder(ft, al, ref, stats, point, collect, norms)


def settings_record(inputs: CellInputs, splits=("harmful", "task")) -> dict:
    """How the study's splits were answered (budgets, FA mode), as judged.json records it."""
    return inputs.answering.record(inputs.task, inputs.judge_name, splits)


def score_points(inputs: CellInputs, named: list[tuple[str, object]], build, splits, references: tuple[str, ...] = (),
                 echo: Callable[[str], None] = print) -> list[dict]:
    """Build every point's adapter (into a temporary directory), generate and score them with the cell's
    `references` ("aligned", "finetuned": the pipeline's adapters) on `splits`; one row per name, in order:
    {name, label, point, patched_count, module_count, kept_fraction, adapter_sha256, hs, fa[, over_refusal]}."""
    def write(out: Path, point) -> dict:
        adapter, summary = build.build(point)
        write_stack(adapter, out, point.record(), inputs.finetuned)
        return {"label": point.label, "point": point.record(), **summary}

    return score_adapters(inputs, [(name, lambda out, p=point: write(out, p)) for name, point in named], splits,
                          references, echo, "study points built")


def score_adapters(inputs: CellInputs, named: list[tuple[str, Callable[[Path], dict]]], splits,
                   references: tuple[str, ...] = (), echo: Callable[[str], None] = print,
                   what: str = "adapters written") -> list[dict]:
    """Score adapters made on the fly: each `write(out)` of `named` writes one adapter directory (with lineage)
    into a temporary `out` and returns its row fields; the rows get {name, adapter_sha256} and the rates on
    `splits`, answered and judged like `nlsr judge` (same settings, judge and caches), beside the cell's
    `references` (rows with point None), in order."""
    import tempfile

    from nlsr_core.lora.generate import plan_stack
    from nlsr_core.eval.judges import JudgeSpec
    from nlsr_core.eval.evaluate import evaluate_plans
    from nlsr_core.io.lineage import sha256_dir
    from nlsr_core.io.progress import bar

    task = inputs.task
    settings = inputs.answering
    cache = Path(inputs.cache_dir) if inputs.cache_dir else None
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="nlsr-points-") as tmp:
        plans = {name: plan_stack(getattr(inputs, name), inputs.model_name) for name in references}
        rows.update({name: {"name": name, "label": name, "point": None} for name in references})
        with bar(len(named), what, "adapter") as shown:
            for i, (name, write) in enumerate(named):
                out = Path(tmp) / f"point-{i:03d}"
                fields = write(out)
                plans[name] = plan_stack(out, inputs.model_name)
                rows[name] = {"name": name, **fields, "adapter_sha256": sha256_dir(out)}
                shown.update(1)
        placed = {"device": inputs.compute.device, "dtype": inputs.compute.dtype} if inputs.compute else {}
        spec = JudgeSpec(name=inputs.judge_name, model=inputs.judge_model, batch_size=settings.batch_size, **placed)
        answers, scored, judge = evaluate_plans(plans, splits, task, settings, inputs.model_name, inputs.model_seed,
                                                spec, cache, inputs.compute)
    for sv in scored:
        rows[sv.name].update({metric: r.record() for metric, r in sv.rates.items()})
        # per-prompt outcomes ("1" = harmful / correct), so methods can be compared on the same prompts
        rows[sv.name]["flags"] = {metric: "".join("1" if row[field] else "0" for row in sv.rows[split])
                                  for split, metric, field in (("harmful", "hs", "flagged"), ("task", "fa", "correct"))
                                  if split in sv.rows}
    echo(f"{inputs.cell}: {sum(a.cached for a in answers)} of {len(answers) * len(splits)} answer sets "
               f"from cache; judge called on {judge.calls} new answers")
    return [rows[name] for name in plans]


def write_stack(adapter, out: Path, record: dict, parent: Path) -> None:
    """Save `adapter` into `out` with a lineage that inherits `parent`'s base model and W0 and holds `record` and
    no temporary path (so the same adapter gives the same digest, the answer-cache key, every run)."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.lineage import base_fields, write_lineage

    save_adapter(adapter, out)
    write_lineage(out, "points", [], record, **base_fields(parent))


def describe(row: dict) -> str:
    from nlsr_core.eval.formatting import pct

    fa = pct(row, "fa")
    return (f"{row['label']:>28}: HS {pct(row, 'hs'):5.1f}%  FA {'n/a' if fa is None else f'{fa:5.1f}%'}"
            + (f"  patched {row['patched_count']}/{row['module_count']}" if "patched_count" in row else ""))
