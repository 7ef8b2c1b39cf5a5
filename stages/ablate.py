"""`nlsr ablate`: what each NLSR ingredient contributes, for one cell, on the test split (the paper's Table 5
analogue, training-free).

    nlsr ablate --cell sst2-p0.1-dpo --finetuned ... --aligned ... --reference ... --stats ... \\
        --seeds 0 --seeds 1 --seeds 2 --out ablations/sst2-p0.1-dpo

Rows (`nlsr_core.sweep.ablation_points`), each the pipeline's setting with one change: the other preset
(amplification, r*, mask scope and similarity direction together), the other identification methods, no
amplification (β = 0: the aligned adapter itself is the reference), the other selection rule, and one row per
Bernoulli seed (the report gives their mean ± sd). Rows that change the reference or the identification method
run a new statistics pass over the identification data (the model is loaded for it); the others need none.
Writes <out>/ablate.json and lineage.json; `nlsr report --ablations` renders reports/ablations.md.
"""
from __future__ import annotations

from pathlib import Path

import click

from stages.points import PATH, cell_options


@click.command("ablate")
@cell_options
@click.option("--seeds", "--seed", "seeds", multiple=True, type=int, default=(0, 1, 2), show_default=True,
              help="Bernoulli seeds of the seed rows (ablate.seeds)")
@click.option("--identify-data", type=PATH, default=Path("data/prepared/identify/safety.jsonl"), show_default=True)
@click.option("--preference", type=PATH, default=Path("data/prepared/align/preference.jsonl"), show_default=True)
@click.option("--identify-batch-size", type=int, default=8, show_default=True, help="identify.batch_size")
@click.option("--identify-max-length", type=int, default=160, show_default=True, help="identify.max_length")
@click.option("--identify-seed", type=int, default=0, show_default=True, help="identify.seed (random method)")
@click.option("--out", type=PATH, default=None, help="default ablations/<cell>")
def command(inputs, seeds, identify_data, preference, identify_batch_size, identify_max_length, identify_seed,
            out):
    """Score the pipeline's setting against one-change variants of it."""
    from nlsr_core.judge.evaluate import load_splits, parse_cell
    from nlsr_core.sweep import ablation_points
    from stages.points import builder, claim_result, describe, score_points, settings_record, write_result

    cell = parse_cell(inputs["cell"])
    output = claim_result(Path(out or f"ablations/{cell.key}"), "ablate", inputs,
                          (("--identify-data", identify_data), ("--preference", preference)))
    ident = {"data": identify_data, "preference": preference, "batch_size": identify_batch_size,
             "max_length": identify_max_length, "seed": identify_seed, "template": inputs["template"]}
    build = builder(inputs, collect=statistics_pass(inputs["reference"], ident))
    rows_spec = ablation_points(build.pipeline, seeds)
    splits = load_splits(inputs["data_dir"], cell.task, names=("harmful", "task"))
    named = [(name, point) for _, name, point in rows_spec]
    rows = score_points(inputs, named, build, splits, references=("aligned", "finetuned"))
    groups = {name: group for group, name, _ in rows_spec}
    for row in rows:
        row["group"] = groups.get(row["name"], "reference")
        click.echo(f"ablate {cell.key} {row['name']:>28} | {describe(row)}")
    document = {"cell": cell.key, "split": "test", "pipeline": build.pipeline.record(),
                "judge": {"name": inputs["judge_name"], "model": inputs["judge_model"]},
                "generation": settings_record(inputs), "points": rows}
    params = {"seeds": list(seeds), "pipeline": build.pipeline.record(),
              "identify": {k: str(v) for k, v in ident.items()}}
    write_result(output, "ablate", inputs, params, document)


def statistics_pass(reference_dir: Path, ident: dict):
    """collect(reference, method) -> stats: identify-neurons' statistics pass (M' from the pipeline reference's
    lineage) over an in-memory reference, e.g. one re-amplified with another β or preset."""
    def collect(reference, method: str) -> dict:
        import tempfile

        from nlsr_core.adapters import load_adapter, save_adapter
        from nlsr_core.neurons import get_identifier
        from stages.identify_neurons import base_of, identification_files, identify_model

        identifier = get_identifier(method)
        needed = identification_files(identifier, ident["data"], ident["preference"])
        params = {"method": method, "sparsity": None, "preset": "paper", **{k: ident[k] for k in
                  ("batch_size", "max_length", "template", "seed")}}
        with tempfile.TemporaryDirectory(prefix="nlsr-reference-") as tmp:
            save_adapter(reference, tmp)
            click.echo(f"ablate: statistics pass for identify {method}")
            result = identify_model(load_adapter(tmp), base_of(reference_dir, None, None), identifier.data,
                                    needed, params)
        return result.stats
    return collect
