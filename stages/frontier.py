"""`nlsr frontier`: the HS-FA trade-off of realign settings for one cell, on the test split.

    nlsr frontier --cell sst2-p0.1-dpo --finetuned adapters/finetuned/sst2-p0.1-dpo \\
        --aligned adapters/aligned/dpo/aligned --reference adapters/reference/dpo --stats masks/dpo/stats.safetensors \\
        --grid_sparsity 0.3 --grid_sparsity 0.5 --grid_layer_prune 0 --grid_layer_prune 0.5 --safelora_tau 0.3 \\
        --out frontier/sst2-p0.1-dpo

Scores every point of the grid (all combinations of the --grid_* values on top of the pipeline's setting; masks
for each P_SR from the stored statistics, no model pass), one SafeLoRA point per --safelora_tau, and the aligned
and fine-tuned adapters for reference, with the judge stage's settings, so the numbers sit on the same scale as
reports/results.md. Writes <out>/frontier.json (rates with n and 95% Wilson intervals) and lineage.json;
`nlsr report --frontier` turns it into reports/frontier.md and a plot. Adding a grid value re-scores only the
new points: the answers of the others come from the cache (keyed by adapter digest).
"""
from __future__ import annotations

from pathlib import Path

import click

from stages.points import PATH, cell_options

GRID_OPTIONS = (("sparsity", float), ("layer_prune", float), ("delta", float), ("selection", str), ("seed", int))


def grid_options(f):
    """--grid_<axis> (repeatable; DVC unpacks `${frontier}` lists into repeated options)."""
    for axis, typ in reversed(GRID_OPTIONS):
        f = click.option(f"--grid_{axis}", f"--grid-{axis.replace('_', '-')}", f"grid_{axis}", multiple=True,
                         type=typ, help=f"values of {axis} to sweep (default: the pipeline's)")(f)
    return f


def grid_axes(kwargs: dict) -> dict:
    return {axis: list(kwargs.pop(f"grid_{axis}")) for axis, _ in GRID_OPTIONS}


@click.command("frontier")
@cell_options
@grid_options
@click.option("--safelora_tau", "--safelora-tau", "safelora_tau", multiple=True, type=float,
              help="SafeLoRA thresholds to score as reference points")
@click.option("--out", type=PATH, default=None, help="default frontier/<cell>")
def command(inputs, safelora_tau, out, **grid):
    """Score a grid of realign settings (and SafeLoRA thresholds) on the test split."""
    from nlsr_core.judge.evaluate import load_splits, parse_cell
    from nlsr_core.sweep import grid_points
    from stages.points import builder, claim_result, describe, score_points, settings_record, write_result

    cell = parse_cell(inputs["cell"])
    output = claim_result(Path(out or f"frontier/{cell.key}"), "frontier", inputs)
    build = builder(inputs)
    points = grid_points(build.pipeline, grid_axes(grid), safelora_tau)
    splits = load_splits(inputs["data_dir"], cell.task, names=("harmful", "task"))
    rows = score_points(inputs, [(p.label, p) for p in points], build, splits, references=("aligned", "finetuned"))
    for row in rows:
        click.echo(f"frontier {cell.key} {describe(row)}")
    document = {"cell": cell.key, "split": "test", "pipeline": build.pipeline.record(),
                "judge": {"name": inputs["judge_name"], "model": inputs["judge_model"]},
                "generation": settings_record(inputs), "points": rows}
    params = {"grid": {k: [str(v) for v in vs] for k, vs in grid_axes_record(points).items()},
              "safelora_tau": list(safelora_tau), "pipeline": build.pipeline.record()}
    write_result(output, "frontier", inputs, params, document)


def grid_axes_record(points) -> dict:
    """axis -> the distinct values swept (for the run's params)."""
    nlsr = [p for p in points if p.method == "nlsr"]
    return {axis: sorted({getattr(p, axis) for p in nlsr}, key=str) for axis, _ in GRID_OPTIONS}
