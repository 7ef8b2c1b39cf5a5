"""`nlsr finetune-seeds`: the study cell fine-tuned again with other seeds, every repair scored on each replicate.

    nlsr finetune-seeds --cell sst2-p0.1-dpo --finetuned adapters/finetuned/sst2-p0.1-dpo \\
        --aligned adapters/aligned/dpo/aligned --reference adapters/reference/dpo \\
        --stats identify/dpo/stats.safetensors --seeds 1 --seeds 2 --out finetune-seeds/sst2-p0.1-dpo

Seed s draws its own poisoned mix from the prepared task rows and poison pool and trains Wt_s from Wa with the
pipeline's fine-tuning settings (nlsr_core.study.finetune_seeds). The pipeline's fine-tuned adapter is the first
replicate. On each replicate every registered repair (nlsr_core.repair.registry: NLSR, random masks, interpolation,
safety-vector addition, SafeLoRA) is scored
at the pipeline's settings on the test split, like `nlsr frontier` (same judge, answer cache and per-prompt
flags). Writes <out>/finetune-seeds.json, the trained adapters (<out>/finetuned-s<seed>/) and lineage.json;
`nlsr report --finetune-seeds` renders reports/finetune-seeds.md.
"""
from __future__ import annotations

from pathlib import Path

import click

from stages.cell_options import CELL_PARAMS, cell_options
from stages.options import PATH, config_option, config_options, gradient_checkpointing_option
from stages.repair import knob_options, knob_values


@click.command("finetune-seeds")
@cell_options
@config_option("finetune_seeds.seeds", "--seeds", "--seed", dest="seeds")
@config_options("finetune", "n", "lr", "epochs", "batch_size", "max_length", prefix="finetune_")
@knob_options(skip=CELL_PARAMS)
@gradient_checkpointing_option
@click.option("--out", type=PATH, default=None, help="default finetune-seeds/<cell>")
def command(inputs, seeds, finetune_n, finetune_lr, finetune_epochs, finetune_batch_size, finetune_max_length,
            gradient_checkpointing, out, **knobs):
    """Fine-tune the cell with other seeds; score every repair on each replicate."""
    import tempfile

    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.study.finetune_seeds import check_seeds, replicate_points, seed_mixes, train_replicate
    from nlsr_core.eval.evaluate import load_splits, parse_cell
    from nlsr_core.errors import NlsrError
    from nlsr_core.io.lineage import inherited_fields, input_record, lineage_or_empty, read_lineage, write_lineage
    from nlsr_core.study.scoring import builder, describe, score_points, settings_record
    from nlsr_core.train.trainers import TrainSettings
    from stages.cell_options import claim_result, write_result

    cell = parse_cell(inputs["cell"])
    data = Path(inputs["data_dir"])
    task_file, pool_file = data / "tasks" / cell.task / "train.jsonl", data / "poison" / "pool.jsonl"
    output = claim_result(Path(out or f"finetune-seeds/{cell.key}"), "finetune-seeds", inputs,
                          (("task rows", task_file), ("poison pool", pool_file)))
    settings = TrainSettings(lr=finetune_lr, epochs=finetune_epochs, batch_size=finetune_batch_size,
                             max_length=finetune_max_length, template=inputs["template"],
                             gradient_checkpointing=gradient_checkpointing)
    settings.check("finetune")
    task_rows, pool = read_jsonl(task_file), read_jsonl(pool_file)
    pipeline_ft = lineage_or_empty(Path(inputs["finetuned"]))
    try:
        mix_path, pipeline_seed = Path(pipeline_ft["mix"]["path"]), int(pipeline_ft["params"]["finetune"]["seed"])
    except (KeyError, TypeError, ValueError):
        raise NlsrError(f"{inputs['finetuned']}/lineage.json: no mix path or finetune.seed; expected the output of "
                        "`nlsr finetune`") from None
    mixes = seed_mixes(task_rows, pool, finetune_n, cell.p, seeds)
    seeds = check_seeds(seeds, pipeline_seed, [r["id"] for r in read_jsonl(mix_path)],
                        lambda s: [r["id"] for r in mixes[s][0]])
    build = builder(inputs)          # every input checked before any training
    knobs = knob_values(knobs)   # {params key: value} of the repairs whose knobs the pipeline's point lacks
    named = replicate_points(build.pipeline, knobs)
    splits = load_splits(inputs["data_dir"], cell.task, names=("harmful", "task"))
    parent = read_lineage(Path(inputs["aligned"]))
    train_params = {"n": finetune_n, "lr": finetune_lr, "epochs": finetune_epochs, "batch_size": finetune_batch_size,
                    "max_length": finetune_max_length}

    replicates, trained = [], {}
    with tempfile.TemporaryDirectory(prefix="nlsr-finetune-seeds-") as tmp:
        finetuned = {"pipeline": Path(inputs["finetuned"])}
        builds = {"pipeline": build}   # the pipeline's fine-tune is already loaded and checked
        for s in seeds:
            click.echo(f"finetune-seeds {cell.key}: fine-tuning seed {s}")
            rows, info = mixes[s]
            result = train_replicate(inputs["aligned"], rows, s, settings, inputs["compute"])
            path = Path(tmp) / f"finetuned-s{s}"
            save_adapter(result.adapter(), path)
            write_lineage(path, "finetune-seeds", [input_record(Path(inputs["aligned"]), "aligned"),
                                                   input_record(task_file, "task rows"),
                                                   input_record(pool_file, "poison pool")],
                          {"finetune": {**train_params, "seed": s}}, **inherited_fields(parent),
                          mix={"seed": s, **{k: v for k, v in info.items() if k != "poison_rows"},
                               "poison_ids": [r["id"] for r in rows if r["flag"] == "poison"]},
                          train=result.loss_summary(), compute=inputs["compute"].record())
            finetuned[f"seed {s}"], trained[path.name] = path, result.loss_summary()
        for name, path in finetuned.items():
            replicate_inputs = {**inputs, "finetuned": path}
            references = ("aligned", "finetuned") if name == "pipeline" else ("finetuned",)
            build_of = builds.get(name) or builder(replicate_inputs)
            rows = score_points(replicate_inputs, named, build_of, splits, references, echo=click.echo)
            for row in rows:
                click.echo(f"finetune-seeds {cell.key} {name}: {describe(row)}")
            replicates.append({"name": name, "finetuned": path.name if name != "pipeline" else str(inputs["finetuned"]),
                               "train": trained.get(path.name), "rows": rows})
        document = {"cell": cell.key, "split": "test", "pipeline": build.pipeline.record(),
                    "judge": {"name": inputs["judge_name"], "model": inputs["judge_model"]},
                    "generation": settings_record(inputs), "seeds": seeds, "replicates": replicates}
        params = {"seeds": seeds, "finetune": train_params, "knobs": knobs, "pipeline": build.pipeline.record()}
        write_result(output, "finetune-seeds", inputs, params, document,
                     dirs={f"finetuned-s{s}": finetuned[f"seed {s}"] for s in seeds})
