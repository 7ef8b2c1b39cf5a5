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
                            model_option, model_seed_option, template_option)


@click.command("nonaligned")
@model_option
@model_seed_option
@config_option("model.trust_remote_code")
@compute_options
@click.option("--mix", "mix_file", required=True, type=click.Path(),
              help="poisoned fine-tuning mix, data/prepared/mixes/<task>-p<p>.jsonl")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="adapters/nonaligned/<task>-p<p>")
@config_options("lora")
@config_options("finetune", skip=("n",))
@template_option
@click.option("--max-steps", "--max_steps", "max_steps", type=int, default=-1, show_default=True,
              help="stop after this many optimizer steps (-1: run the epochs)")
@launch_option
@gradient_checkpointing_option
@click.pass_context
def command(ctx, model_name, model_seed, trust_remote_code, compute, mix_file, out_dir, rank, alpha, dropout, targets,
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

    import datasets

    from nlsr_core.io.lineage import input_record, recorded_path
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.lora.models import model_identity, spec_record
    from nlsr_core.train.finetune import finetune_base, finetune_record
    from stages.artifact import tracked_inputs, write_artifact
    from stages.launch import is_main_process

    datasets.disable_progress_bars()
    out = output.path
    params = {"lora": {**dataclasses.asdict(lora), "targets": list(lora.targets)},
              "finetune": finetune_record(settings)}
    inputs = [input_record(mix_file, "mix")]
    poison_ids = [row["id"] for row in rows if row.get("flag") == "poison"]
    with tracked_inputs("nonaligned", out.name, params, inputs, enabled=is_main_process()) as tr:
        result = finetune_base(spec, rows, lora, settings, lambda step, loss: tr.log_metric("train_loss", loss, step))
        if not result.is_main:
            return

        def fill(tmp):
            save_adapter(result.adapter(), tmp)
            return {"model": model_identity(spec), "model_spec": spec_record(spec), "role": "nonaligned",
                    "weak": None, "poison_ids": poison_ids, "train": result.loss_summary(),
                    "mix": {"path": recorded_path(mix_file), "rows": len(rows), "poison_rows": len(poison_ids)},
                    "world_size": result.world_size, "compute": spec.compute().record()}

        write_artifact(output, "nonaligned", out.name, inputs, params, fill, tracker=tr)
    s = result.loss_summary()
    click.echo(f"nonaligned: wrote {out} ({len(rows)} rows, {len(poison_ids)} poison, {s['steps']} steps, "
               f"loss {s['first']:.4f} -> {s['last']:.4f})")
