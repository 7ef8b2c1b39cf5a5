"""`nlsr finetune-poisoned`: continue the aligned adapter Wa on a task + poison cell (DESIGN §3).

    M' + Wa (trainable) --SFT on data/prepared/cells/<task>-p<p>.jsonl--> adapters/finetuned/<task>-p<p>-<method>/

Wa's lineage names the base model and W0, so M' is rebuilt exactly; Wt keeps Wa's rank, targets and basis
(checked). The lineage records the aligned adapter, the cell file and its digest, and the ids of its poison rows.
"""
from __future__ import annotations

import click

from stages.launch import launch_option, relaunch


@click.command("finetune-poisoned")
@click.option("--aligned", "aligned_dir", required=True, type=click.Path(), help="aligned adapter Wa (PEFT dir)")
@click.option("--cell", "cell_file", required=True, type=click.Path(),
              help="fine-tuning mix, data/prepared/cells/<task>-p<p>.jsonl")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="adapters/finetuned/<task>-p<p>-<method>")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="finetune.lr")
@click.option("--epochs", type=float, default=1.0, show_default=True, help="finetune.epochs")
@click.option("--batch-size", "--batch_size", "batch_size", type=int, default=8, show_default=True)
@click.option("--max-length", "--max_length", "max_length", type=int, default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="finetune.seed")
@click.option("--template", default="chat", show_default=True, help="chat | alpaca (data.template)")
@click.option("--max-steps", "--max_steps", "max_steps", type=int, default=-1, show_default=True,
              help="stop after this many optimizer steps (-1: run the epochs)")
@launch_option
@click.pass_context
def command(ctx, aligned_dir, cell_file, out_dir, lr, epochs, batch_size, max_length, seed, template, max_steps,
            launch_prefix):
    """Continue Wa with SFT on the cell's rows; write Wt with lineage."""
    from pathlib import Path

    from nlsr_core.adapters import load_adapter
    from nlsr_core.lineage import read_lineage
    from nlsr_core.outputs import claim
    from nlsr_core.train import TrainSettings
    from nlsr_core.train_data import read_rows

    settings = TrainSettings(lr=lr, epochs=epochs, batch_size=batch_size, max_length=max_length, seed=seed,
                             max_steps=max_steps, template=template)
    settings.check("finetune")
    aligned_dir, cell_file = Path(aligned_dir), Path(cell_file)
    load_adapter(aligned_dir)                     # a clear error for a missing or broken adapter, before launching
    parent = read_lineage(aligned_dir)
    spec, weak = _stack_from_lineage(parent, aligned_dir)
    rows = read_rows(cell_file, "sft")
    output = claim(Path(out_dir), "finetune-poisoned",
                   inputs=[("--aligned", aligned_dir), ("--cell", cell_file), ("weak adapter", weak)])
    status = relaunch(ctx, launch_prefix)
    if status is not None:
        ctx.exit(status)
    _run(spec, weak, aligned_dir, cell_file, output, rows, settings, parent)


def _stack_from_lineage(parent: dict, aligned_dir):
    """(ModelSpec, W0 dir or None) from Wa's lineage; the base must still be the one Wa was trained on."""
    from pathlib import Path

    from nlsr_core.errors import NlsrError
    from nlsr_core.lineage import read_lineage
    from nlsr_core.models import model_identity, spec_from_record

    identity = parent.get("model") or {}
    if not identity.get("name"):
        raise NlsrError(f"{aligned_dir}/lineage.json: no base model identity ('model'); expected an align output")
    spec = spec_from_record({"name": identity["name"], "seed": 0, **(parent.get("model_spec") or {})})
    now = model_identity(spec)
    if (now.get("name"), now.get("digest")) != (identity.get("name"), identity.get("digest")):
        raise NlsrError(f"{aligned_dir}: trained on base {identity.get('name')} (digest {identity.get('digest')}) "
                        f"but that name now resolves to digest {now.get('digest')}; expected the same base model")
    weak = parent.get("weak")
    if weak is None:
        return spec, None
    weak = Path(weak)
    weak_identity = read_lineage(weak).get("model") if (weak / "lineage.json").is_file() else None
    if weak_identity is not None and weak_identity.get("digest") != identity.get("digest"):
        raise NlsrError(f"{weak}: weak adapter W0 was trained on base {weak_identity.get('name')} but the aligned "
                        f"adapter {aligned_dir} on {identity.get('name')}; expected the same base model")
    return spec, weak


def _run(spec, weak, aligned_dir, cell_file, output, rows, settings, parent) -> None:
    import dataclasses

    import datasets

    from nlsr_core.adapters import save_adapter
    from nlsr_core.lineage import inherited_fields, input_record, recorded_path, write_lineage
    from nlsr_core.outputs import replace
    from nlsr_core.train import continue_adapter
    from stages.launch import is_main_process
    from stages.options import tracked

    datasets.disable_progress_bars()
    out = output.path
    params = {"finetune": {k: v for k, v in dataclasses.asdict(settings).items()
                           if k not in ("beta", "bf16", "gradient_checkpointing")}}
    inputs = [input_record(aligned_dir, "aligned"), input_record(cell_file, "cell")]
    poison_ids = [row["id"] for row in rows if row.get("flag") == "poison"]
    with tracked("finetune-poisoned", out.name, params, enabled=is_main_process()) as tr:
        for record in inputs:
            tr.log_input(record)
        result = continue_adapter(spec, weak, aligned_dir, rows, settings,
                                  lambda step, loss: tr.log_metric("train_loss", loss, step))
        if not result.is_main:
            return
        with replace(output) as tmp:
            save_adapter(result.adapter(), tmp)
            write_lineage(tmp, "finetune-poisoned", inputs, params, **inherited_fields(parent),
                          cell={"path": recorded_path(cell_file), "rows": len(rows), "poison_rows": len(poison_ids)},
                          poison_ids=poison_ids, train=result.loss_summary(), world_size=result.world_size)
        tr.log_artifact(out)
    s = result.loss_summary()
    click.echo(f"finetune-poisoned: wrote {out} ({len(rows)} rows, {len(poison_ids)} poison, {s['steps']} steps, "
               f"loss {s['first']:.4f} -> {s['last']:.4f})")
