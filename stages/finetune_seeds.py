"""`nlsr finetune-seeds`: the study cell fine-tuned again with other seeds, every repair scored on each replicate.

    nlsr finetune-seeds --cell sst2-p0.1-dpo --finetuned adapters/finetuned/sst2-p0.1-dpo \\
        --aligned adapters/aligned/dpo/aligned --reference adapters/reference/dpo \\
        --stats identify/dpo/stats.safetensors --seeds 1 --seeds 2 --out finetune-seeds/sst2-p0.1-dpo

Seed s draws its own poisoned mix from the prepared task rows and poison pool and trains Wt_s from Wa with the
pipeline's fine-tuning settings (nlsr_core.study.finetune_seeds). The pipeline's fine-tuned adapter is the first
replicate. On each replicate every registered repair (nlsr_core.repair.registry: NLSR, random masks, interpolation,
safety-vector addition, SafeLoRA, SafeMERGE, Antidote (its Wanda score from that replicate's own pass over
--realign-data), DG-Hard) is scored at the pipeline's settings on the test split, like `nlsr frontier` (same judge,
answer cache and per-prompt flags). Writes <out>/finetune-seeds.json, the trained adapters
(<out>/finetuned-s<seed>/) and lineage.json;
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

    from nlsr_core.eval.evaluate import parse_cell
    from nlsr_core.study.finetune_seeds import replicate_sources, run_replicates
    from nlsr_core.train.trainers import TrainSettings
    from stages.cell_options import claim_result, write_result

    task_file, pool_file = replicate_sources(inputs)
    output = claim_result(Path(out or f"finetune-seeds/{parse_cell(inputs.cell).key}"), "finetune-seeds", inputs,
                          (("task rows", task_file), ("poison pool", pool_file)))
    settings = TrainSettings(lr=finetune_lr, epochs=finetune_epochs, batch_size=finetune_batch_size,
                             max_length=finetune_max_length, template=inputs.template,
                             gradient_checkpointing=gradient_checkpointing)
    settings.check("finetune")
    knobs = knob_values(knobs)   # {params key: value} of the repairs whose knobs the pipeline's point lacks
    with tempfile.TemporaryDirectory(prefix="nlsr-finetune-seeds-") as tmp:
        document, trained = run_replicates(inputs, seeds, finetune_n, settings, knobs, Path(tmp), echo=click.echo)
        params = {"seeds": document["seeds"], "knobs": knobs, "pipeline": document["pipeline"],
                  "realign_pass": inputs.realignment.record(),
                  "finetune": {"n": finetune_n, "lr": finetune_lr, "epochs": finetune_epochs,
                               "batch_size": finetune_batch_size, "max_length": finetune_max_length}}
        write_result(output, "finetune-seeds", inputs, params, document, dirs=trained)
