"""`nlsr finetune`: continue the aligned adapter Wa on a poisoned task mix (docs/DESIGN.md §3.1).

    M' + Wa (trainable) --SFT on data/prepared/mixes/<task>-p<p>.jsonl--> adapters/finetuned/<task>-p<p>-<method>/

Wa's lineage names the base model and W0, so M' is rebuilt exactly; Wt keeps Wa's rank, targets and basis
(checked). The lineage records the aligned adapter, the mix file and its digest, and the ids of its poison rows.
"""
from __future__ import annotations

import click

from stages.launch import launch_option, relaunch
from stages.options import compute_options, gradient_checkpointing_option, mix_training_options


@click.command("finetune")
@click.option("--aligned", "aligned_dir", required=True, type=click.Path(), help="aligned adapter Wa (PEFT dir)")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="adapters/finetuned/<cell>")
@mix_training_options
@launch_option
@gradient_checkpointing_option
@compute_options
@click.pass_context
def command(ctx, aligned_dir, out_dir, mix_file, lr, epochs, batch_size, max_length, seed, template, max_steps,
            launch_prefix, gradient_checkpointing, compute):
    """Continue Wa with SFT on the mix's rows; write Wt with lineage."""
    from pathlib import Path

    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.io.lineage import read_lineage
    from nlsr_core.io.outputs import claim
    from nlsr_core.train.finetune import stack_from_lineage
    from nlsr_core.train.trainers import TrainSettings
    from nlsr_core.train.train_data import read_rows

    settings = TrainSettings(lr=lr, epochs=epochs, batch_size=batch_size, max_length=max_length, seed=seed,
                             max_steps=max_steps, template=template, gradient_checkpointing=gradient_checkpointing)
    settings.check("finetune")
    aligned_dir, mix_file = Path(aligned_dir), Path(mix_file)
    load_adapter(aligned_dir)                     # a clear error for a missing or broken adapter, before launching
    parent = read_lineage(aligned_dir)
    spec, weak = stack_from_lineage(parent, aligned_dir, compute)
    rows = read_rows(mix_file, "sft")
    output = claim(Path(out_dir), "finetune",
                   inputs=[("--aligned", aligned_dir), ("--mix", mix_file), ("weak adapter", weak)])
    status = relaunch(ctx, launch_prefix)
    if status is not None:
        ctx.exit(status)
    _run(spec, weak, aligned_dir, mix_file, output, rows, settings, parent)


def _run(spec, weak, aligned_dir, mix_file, output, rows, settings, parent) -> None:
    from nlsr_core.io.lineage import inherited_fields, input_record
    from nlsr_core.train.finetune import continue_adapter, finetune_record
    from stages.artifact import write_mix_adapter

    inputs = [input_record(aligned_dir, "aligned"), input_record(mix_file, "mix")]
    write_mix_adapter("finetune", output, spec, mix_file, rows, inputs, {"finetune": finetune_record(settings)},
                      lambda on_loss: continue_adapter(spec, weak, aligned_dir, rows, settings, on_loss),
                      inherited_fields(parent))
