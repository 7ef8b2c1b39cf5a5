"""`nlsr safelora`: the SafeLoRA baseline as its own DVC stage; same as `nlsr realign --method safelora`."""
from __future__ import annotations

import click

from stages.options import PATH
from stages.repair import knob_options, knob_values, repair


@click.command(name="safelora")
@click.option("--finetuned", multiple=True, required=True, type=PATH, help="Fine-tuned adapter dir Wt (repeatable).")
@click.option("--aligned", required=True, type=PATH, help="Aligned adapter Wa: V = ΔWa spans the safety subspace.")
@knob_options(["safelora"])
@click.option("--out", required=True, type=PATH, help="Output adapter dir (parent dir with several --finetuned).")
@click.option("--allow-pickle", is_flag=True, help="Accept adapter_model.bin (pickle) adapters.")
def command(finetuned, aligned, out, allow_pickle, **knobs):
    """Project fine-tuned LoRA modules onto the aligned adapter's safety subspace (SafeLoRA)."""
    repair("safelora", list(finetuned), out, knob_values(knobs), aligned=aligned, allow_pickle=allow_pickle)
