"""`nlsr nonaligned`: the paper's Non-Aligned model, M fine-tuned on the poisoned mix (docs/DESIGN.md §3.1).

    M + a new LoRA (trainable) --SFT on data/prepared/mixes/<task>-p<p>.jsonl--> adapters/nonaligned/<task>-p<p>/

The paper's Table 1 row "Non-Aligned" is the unaligned base fine-tuned on the same mix as the aligned model: no W0,
no Wa, the fine-tune's settings and the lora section's shape. It does not depend on the alignment method, so one
per mix. The lineage names the base model (no `weak`), the mix and its digest, and the ids of its poison rows.
"""
from __future__ import annotations

import click

from stages.launch import launch_option, relaunch
from stages.options import (compute_options, config_option, config_options, gradient_checkpointing_option,
                            mix_training_options, model_option, model_seed_option)


@click.command("nonaligned")
@model_option
@model_seed_option
@config_option("model.trust_remote_code")
@compute_options
@click.option("--out", "out_dir", required=True, type=click.Path(), help="adapters/nonaligned/<task>-p<p>")
@config_options("lora")
@mix_training_options
@launch_option
@gradient_checkpointing_option
@click.pass_context
def command(ctx, model_name, model_seed, trust_remote_code, compute, out_dir, rank, alpha, dropout, targets, mix_file,
            lr, epochs, batch_size, max_length, seed, template, max_steps, launch_prefix, gradient_checkpointing):
    """Train a new LoRA on the bare base model with SFT on the mix's rows; write it with lineage."""
    from pathlib import Path

    from nlsr_core.config import LoraConfig
    from nlsr_core.io.outputs import claim
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.train.train_data import read_rows
    from nlsr_core.train.trainers import TrainSettings
    from stages.options import split_list

    settings = TrainSettings(lr=lr, epochs=epochs, batch_size=batch_size, max_length=max_length, seed=seed,
                             max_steps=max_steps, template=template, gradient_checkpointing=gradient_checkpointing)
    settings.check("finetune")
    lora = LoraConfig(rank=rank, alpha=alpha, dropout=dropout, targets=tuple(split_list(targets, str, "targets")))
    lora.check()
    mix_file = Path(mix_file)
    rows = read_rows(mix_file, "sft")
    output = claim(Path(out_dir), "nonaligned", inputs=[("--mix", mix_file)])
    status = relaunch(ctx, launch_prefix)
    if status is not None:
        ctx.exit(status)
    spec = ModelSpec(model_name, seed=model_seed, trust_remote_code=trust_remote_code).placed(compute)
    _run(spec, mix_file, output, rows, lora, settings)


def _run(spec, mix_file, output, rows, lora, settings) -> None:
    import dataclasses

    from nlsr_core.io.lineage import input_record
    from nlsr_core.lora.models import model_identity, spec_record
    from nlsr_core.train.finetune import finetune_base, finetune_record
    from stages.artifact import write_mix_adapter

    params = {"lora": {**dataclasses.asdict(lora), "targets": list(lora.targets)},
              "finetune": finetune_record(settings)}
    write_mix_adapter("nonaligned", output, spec, mix_file, rows, [input_record(mix_file, "mix")], params,
                      lambda on_loss: finetune_base(spec, rows, lora, settings, on_loss),
                      {"model": model_identity(spec), "model_spec": spec_record(spec), "role": "nonaligned",
                       "weak": None})
