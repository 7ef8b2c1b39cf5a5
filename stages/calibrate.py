"""`nlsr calibrate`: pick the realign setting for one cell on a calibration split, never on the test split.

    nlsr calibrate --cell sst2-p0.1-dpo --finetuned ... --aligned ... --reference ... --stats ... \\
        --grid_sparsity 0.3 --grid_sparsity 0.5 --grid_layer_prune 0 --grid_layer_prune 0.5 \\
        --target aligned+5 --out calibrate/sst2-p0.1-dpo

Scores the aligned and fine-tuned adapters and every grid point on data/prepared/calib/harmful.jsonl and
tasks/<task>/calib.jsonl (prepare-data writes them with data.sizes.calib_harmful / task_calib, from rows no
other split holds; a calibration prompt found in the test split is refused before any work). The target is an
HS ceiling measured on the same split: `aligned+5`, `finetuned*0.5` or a number. The chosen setting is the best
task accuracy among those meeting it (`nlsr_core.study.points.choose_point`). Writes:
    params.yaml        the chosen identify.sparsity / realign.* values in params.yaml's schema
                       (apply with `dvc exp run -S identify.sparsity=... -S realign.layer_prune=...`)
    calibrate.json     every scored setting, the target, its ceiling, the choice and whether the target was met
    lineage.json       inputs with digests, the search parameters and the choice (also an MLflow run)
"""
from __future__ import annotations

from pathlib import Path

import click

from stages.cell_options import cell_options, grid_options
from stages.options import PATH, config_option


@click.command("calibrate")
@cell_options
@grid_options("calibrate")
@config_option("calibrate.target", "--target")
@click.option("--out", type=PATH, default=None, help="default calibrate/<cell>")
def command(inputs, target, out, **grid):
    """Search the (P_SR, P_L, ...) grid on the calibration split; write the best setting that meets the target."""
    from nlsr_core.eval.evaluate import load_splits, parse_cell
    from nlsr_core.study.points import check_disjoint, choose_point, grid_points, grid_record, params_yaml, parse_target
    from nlsr_core.study.scoring import builder, describe, score_points, settings_record
    from nlsr_core.eval.formatting import pct
    from stages.cell_options import claim_result, grid_axes, write_result

    goal = parse_target(target)
    cell = parse_cell(inputs.cell)
    output = claim_result(Path(out or f"calibrate/{cell.key}"), "calibrate", inputs)
    calib = load_splits(inputs.data_dir, cell.task, names=("harmful", "task"), calibration=True)
    test = load_splits(inputs.data_dir, cell.task)
    # the test split is read for this check only; nothing below scores it
    check_disjoint({s.name: s.prompts for s in calib}, {s.name: s.prompts for s in test})
    build = builder(inputs)
    points = [p for p in grid_points(build.pipeline, grid_axes(grid)) if p.method == "nlsr"]
    rows = score_points(inputs, [(p.label, p) for p in points], build, calib, references=("aligned", "finetuned"),
                        echo=click.echo)
    by_name = {r["name"]: r for r in rows}
    ceiling = goal.ceiling({ref: pct(by_name[ref], "hs") for ref in ("aligned", "finetuned")})
    flat = [{**r, "hs": pct(r, "hs"), "fa": pct(r, "fa")} for r in rows if r["point"] is not None]
    chosen_flat, met = choose_point(flat, ceiling)
    chosen = by_name[chosen_flat["name"]]
    for row in rows:
        mark = "  <- chosen" if row is chosen else ""
        click.echo(f"calibrate {cell.key} {describe(row)}{mark}")
    p = chosen["point"]
    chosen_params = {"identify": {"sparsity": p["sparsity"]},
                     "realign": {k: p[k] for k in ("selection", "layer_prune", "delta", "tau", "seed")}}
    document = {"cell": cell.key, "split": "calibration", "target": goal.text, "ceiling_hs": ceiling,
                "target_met": met, "chosen": chosen, "params": chosen_params, "pipeline": build.pipeline.record(),
                "judge": {"name": inputs.judge_name, "model": inputs.judge_model},
                "generation": settings_record(inputs), "points": rows,
                "splits": {s.name: {"path": str(s.path), "n": len(s.rows)} for s in calib}}
    search = {"target": goal.text, "grid": grid_record(points)}
    write_result(output, "calibrate", inputs, search, document,
                 files={"params.yaml": params_yaml(chosen_params, goal.text, ceiling, met)})
    verdict = "meets" if met else "MISSES (no setting reaches it; lowest HS chosen)"
    click.echo(f"calibrate {cell.key}: P_SR {p['sparsity']:g}, P_L {p['layer_prune']:g} {verdict} target "
               f"HS <= {ceiling:.1f} ({goal.text}): HS {pct(chosen, 'hs'):.1f}%, FA {pct(chosen, 'fa'):.1f}%")
