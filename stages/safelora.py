"""`nlsr safelora`: the SafeLoRA baseline as its own DVC stage; same as `nlsr realign --method safelora`."""
from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(path_type=Path)


@click.command(name="safelora")
@click.option("--finetuned", multiple=True, required=True, type=PATH, help="Fine-tuned adapter dir Wt (repeatable).")
@click.option("--aligned", required=True, type=PATH, help="Aligned adapter Wa: V = ΔWa spans the safety subspace.")
@click.option("--safelora-tau", "--tau", "safelora_tau", type=float, default=0.6, show_default=True,
              help="project modules whose cos(C·ΔWt, ΔWt) is below τ (safelora.tau)")
@click.option("--safelora-projection", default="orthogonal", show_default=True,
              help="orthogonal (C = UUᵀ) | frobenius (C = VVᵀ/‖V‖_F)")
@click.option("--out", required=True, type=PATH, help="Output adapter dir (parent dir with several --finetuned).")
@click.option("--allow-pickle", is_flag=True, help="Accept adapter_model.bin (pickle) adapters.")
@click.pass_context
def command(ctx, finetuned, aligned, safelora_tau, safelora_projection, out, allow_pickle):
    """Project fine-tuned LoRA modules onto the aligned adapter's safety subspace (SafeLoRA)."""
    from stages.realign import command as realign

    ctx.invoke(realign, finetuned=finetuned, more_finetuned=(), aligned=aligned, method="safelora",
               safelora_tau=safelora_tau, safelora_projection=safelora_projection, out=out,
               allow_pickle=allow_pickle)
