"""`nlsr ablate`: what each NLSR ingredient contributes, for one cell, on the test split (the paper's Table 5
analogue, training-free).

    nlsr ablate --cell sst2-p0.1-dpo --finetuned ... --aligned ... --reference ... --stats ... \\
        --seeds 0 --seeds 1 --seeds 2 --out ablate/sst2-p0.1-dpo

Rows (`nlsr_core.study.points.ablation_points`), each the pipeline's setting with one change: the other preset
(amplification, r*, mask scope and similarity direction together), the other identification methods, no
amplification (β = 0: the aligned adapter itself is the reference), the other selection rule, and one row per
Bernoulli seed (the report gives their mean ± sd). Rows that change the reference or the identification method
run a new statistics pass over the identification data (the model is loaded for it); the others need none.
Writes <out>/ablate.json and lineage.json; `nlsr report --ablations` renders reports/ablations.md.
"""
from __future__ import annotations

from pathlib import Path

import click

from stages.cell_options import cell_options, identification_options
from stages.options import PATH, config_option


@click.command("ablate")
@cell_options
@config_option("ablate.seeds", "--seeds", "--seed", dest="seeds")
@identification_options
@click.option("--out", type=PATH, default=None, help="default ablate/<cell>")
def command(inputs, seeds, identify_data, preference, identify_seed, out):
    """Score the pipeline's setting against one-change variants of it."""
    from nlsr_core.eval.evaluate import load_splits, parse_cell
    from nlsr_core.study.points import ablation_points
    from nlsr_core.study.scoring import builder, describe, score_points, settings_record
    from stages.cell_options import claim_result, identification_pass, write_result

    from nlsr_core.config import check_value

    check_value("ablate.seeds", list(seeds))   # before the claim: an empty list would ablate nothing
    cell = parse_cell(inputs.cell)
    output = claim_result(Path(out or f"ablate/{cell.key}"), "ablate", inputs,
                          (("--identify-data", identify_data), ("--preference", preference)))
    collect, ident = identification_pass(inputs, identify_data, preference, identify_seed, click.echo)
    build = builder(inputs, collect=collect)
    rows_spec = ablation_points(build.pipeline, seeds)
    splits = load_splits(inputs.data_dir, cell.task, names=("harmful", "task"))
    named = [(name, point) for _, name, point in rows_spec]
    rows = score_points(inputs, named, build, splits, references=("aligned", "finetuned"), echo=click.echo)
    groups = {name: group for group, name, _ in rows_spec}
    for row in rows:
        row["group"] = groups.get(row["name"], "reference")
        click.echo(f"ablate {cell.key} {row['name']:>28} | {describe(row)}")
    document = {"cell": cell.key, "split": "test", "pipeline": build.pipeline.record(),
                "judge": {"name": inputs.judge_name, "model": inputs.judge_model},
                "generation": settings_record(inputs), "points": rows}
    params = {"seeds": list(seeds), "pipeline": build.pipeline.record(),
              "identify": ident}
    write_result(output, "ablate", inputs, params, document)
