"""`nlsr finetune`: continue the aligned adapter Wa on a poisoned task mix (docs/DESIGN.md §3.1).

    M' + Wa (trainable) --SFT on data/prepared/mixes/<task>-p<p>.jsonl--> adapters/finetuned/<task>-p<p>-<method>/

Wa's lineage names the base model and W0, so M' is rebuilt exactly; Wt keeps Wa's rank, targets and basis
(checked). The lineage records the aligned adapter, the mix file and its digest, and the ids of its poison rows.
"""
from __future__ import annotations

import click

from stages.launch import launch_option, relaunch
from stages.options import compute_options, config_options, gradient_checkpointing_option, template_option


@click.command("finetune")
@click.option("--aligned", "aligned_dir", required=True, type=click.Path(), help="aligned adapter Wa (PEFT dir)")
@click.option("--mix", "mix_file", required=True, type=click.Path(),
              help="poisoned fine-tuning mix, data/prepared/mixes/<task>-p<p>.jsonl")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="adapters/finetuned/<cell>")
@config_options("finetune", skip=("n",))
@template_option
@click.option("--max-steps", "--max_steps", "max_steps", type=int, default=-1, show_default=True,
              help="stop after this many optimizer steps (-1: run the epochs)")
@launch_option
@gradient_checkpointing_option
@compute_options
@click.pass_context
def command(ctx, aligned_dir, mix_file, out_dir, lr, epochs, batch_size, max_length, seed, template, max_steps,
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
    import datasets

    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.train.finetune import continue_adapter, finetune_record
    from nlsr_core.io.lineage import inherited_fields, input_record, recorded_path
    from stages.artifact import tracked_inputs, write_artifact
    from stages.launch import is_main_process

    datasets.disable_progress_bars()
    out = output.path
    params = {"finetune": finetune_record(settings)}
    inputs = [input_record(aligned_dir, "aligned"), input_record(mix_file, "mix")]
    poison_ids = [row["id"] for row in rows if row.get("flag") == "poison"]
    with tracked_inputs("finetune", out.name, params, inputs, enabled=is_main_process()) as tr:
        result = continue_adapter(spec, weak, aligned_dir, rows, settings,
                                  lambda step, loss: tr.log_metric("train_loss", loss, step))
        if not result.is_main:
            return

        def fill(tmp):
            save_adapter(result.adapter(), tmp)
            return {**inherited_fields(parent), "poison_ids": poison_ids, "train": result.loss_summary(),
                    "mix": {"path": recorded_path(mix_file), "rows": len(rows), "poison_rows": len(poison_ids)},
                    "world_size": result.world_size, "compute": spec.compute().record()}

        write_artifact(output, "finetune", out.name, inputs, params, fill, tracker=tr)
    s = result.loss_summary()
    click.echo(f"finetune: wrote {out} ({len(rows)} rows, {len(poison_ids)} poison, {s['steps']} steps, "
               f"loss {s['first']:.4f} -> {s['last']:.4f})")
