"""`nlsr frontier`: the HS-FA trade-off of realign settings for one cell, on the test split.

    nlsr frontier --cell sst2-p0.1-dpo --finetuned adapters/finetuned/sst2-p0.1-dpo \\
        --aligned adapters/aligned/dpo/aligned --reference adapters/reference/dpo --stats identify/dpo/stats.safetensors \\
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

from nlsr_core.study.points import CONTROL_GRIDS
from stages.cell_options import cell_options, grid_options
from stages.options import PATH, config_option, config_options

# The names frontier's lineage gave the first three control grids (kept so earlier records read the same).
CONTROL_PARAMS = {"grid_random_masks": "random_masks", "grid_lambda": "lambda", "grid_gamma": "gamma"}


@click.command("frontier")
@cell_options
@grid_options("frontier")
@config_option("frontier.safelora_tau", "--safelora_tau", "--safelora-tau", dest="safelora_tau")
@config_options("frontier", *CONTROL_GRIDS)
@click.option("--out", type=PATH, default=None, help="default frontier/<cell>")
def command(inputs, safelora_tau, out, **grid):
    """Score a grid of realign settings (and SafeLoRA thresholds) on the test split."""
    from nlsr_core.eval.evaluate import load_splits, parse_cell
    from nlsr_core.study.points import control_points, grid_points, grid_record
    from nlsr_core.study.scoring import builder, describe, score_points, settings_record
    from stages.cell_options import claim_result, grid_axes, write_result

    cell = parse_cell(inputs.cell)
    output = claim_result(Path(out or f"frontier/{cell.key}"), "frontier", inputs)
    build = builder(inputs)
    controls = {key: list(grid.pop(key)) for key in CONTROL_GRIDS}
    points = grid_points(build.pipeline, grid_axes(grid), safelora_tau)
    points += control_points(build.pipeline, controls)
    splits = load_splits(inputs.data_dir, cell.task, names=("harmful", "task"))
    rows = score_points(inputs, [(p.label, p) for p in points], build, splits, references=("aligned", "finetuned"),
                        echo=click.echo)
    for row in rows:
        click.echo(f"frontier {cell.key} {describe(row)}")
    document = {"cell": cell.key, "split": "test", "pipeline": build.pipeline.record(),
                "judge": {"name": inputs.judge_name, "model": inputs.judge_model},
                "generation": settings_record(inputs), "points": rows}
    params = {"grid": grid_record(points), "safelora_tau": list(safelora_tau),
              **{CONTROL_PARAMS.get(key, key): values for key, values in controls.items()},
              "pipeline": build.pipeline.record(), "realign_pass": inputs.realignment.record()}
    write_result(output, "frontier", inputs, params, document)
