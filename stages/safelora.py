"""`nlsr safelora`: the SafeLoRA baseline as its own DVC stage; same as `nlsr realign --method safelora`."""
from __future__ import annotations

import click

from stages.options import PATH, config_option
from stages.repair import projection_option, repair


@click.command(name="safelora")
@click.option("--finetuned", multiple=True, required=True, type=PATH, help="Fine-tuned adapter dir Wt (repeatable).")
@click.option("--aligned", required=True, type=PATH, help="Aligned adapter Wa: V = ΔWa spans the safety subspace.")
@config_option("safelora.tau", "--safelora-tau", "--safelora_tau", "--tau", dest="safelora_tau")
@projection_option
@click.option("--out", required=True, type=PATH, help="Output adapter dir (parent dir with several --finetuned).")
@click.option("--allow-pickle", is_flag=True, help="Accept adapter_model.bin (pickle) adapters.")
def command(finetuned, aligned, safelora_tau, safelora_projection, out, allow_pickle):
    """Project fine-tuned LoRA modules onto the aligned adapter's safety subspace (SafeLoRA)."""
    repair("safelora", list(finetuned), out, aligned=aligned, safelora_tau=safelora_tau,
           safelora_projection=safelora_projection, allow_pickle=allow_pickle)
