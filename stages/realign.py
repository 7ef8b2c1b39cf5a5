"""`nlsr realign`: repair fine-tuned LoRA adapters with NLSR (eqs. 7-11), SafeLoRA or a training-free control.

Reads adapter tensors and masks only (no base model, no tokenizer), so it also serves operators outside DVC; the
one exception is Antidote's Wanda score, which runs M (+ W0) + Wt over --realign-data (the model from Wt's lineage):

    nlsr realign --finetuned A --reference REF --masks identify/lowrank/masks.safetensors --out OUT
    nlsr realign --finetuned A --reference REF --stats identify/dpo/stats.safetensors --sparsity 0.5 --out OUT
    nlsr realign --finetuned A B C --reference REF --masks M --out PARENT     # -> PARENT/A, PARENT/B, PARENT/C
    nlsr realign --method safelora --finetuned A --aligned ALIGNED --out OUT
    nlsr realign --method random-masks --finetuned A --reference REF --stats S --out OUT   # NLSR, random neurons
    nlsr realign --method interpolate --interpolate-lambda 0.5 --finetuned A --reference REF --out OUT
    nlsr realign --method safety-vector --safety-vector-gamma 1 --finetuned A --aligned ALIGNED --out OUT
    nlsr realign --method interpolate --interpolate-target aligned --finetuned A --aligned ALIGNED --out OUT
    nlsr realign --method safemerge --safemerge-tau 0.35 --safemerge-weight 0.8 --finetuned A --aligned AL --out OUT
    nlsr realign --method antidote --antidote-dense-ratio 0.1 --finetuned A --realign-data HARMFUL.jsonl --out OUT
    nlsr realign --method antidote --antidote-scoring magnitude --finetuned A --out OUT    # data-free: Wt only
    nlsr realign --method dg-hard --finetuned A --out OUT                                  # reads Wt only

Every input is loaded and checked before anything is written; each output directory (PEFT adapter +
lineage.json) is claimed before any work and written atomically (nlsr_core.io.outputs: it may replace only an
earlier realign/safelora output or an empty directory, never an input or a directory holding one).
"""
from __future__ import annotations

import click

from nlsr_core.config import default
from nlsr_core.repair.registry import REPAIRS
from stages.options import PATH, config_option, config_options
from stages.repair import knob_options, knob_values, repair


@click.command(name="realign")
@click.option("--finetuned", multiple=True, required=True, type=PATH,
              help="Fine-tuned adapter dir Wt; repeat it or list several dirs after it (then --out is a parent dir).")
@click.argument("more_finetuned", nargs=-1, type=PATH, metavar="[FINETUNED]...")
@click.option("--reference", type=PATH, help="Reference adapter We (methods that read it: nlsr, random-masks, "
                                             "interpolate toward reference).")
@click.option("--masks", type=PATH, help="masks.safetensors from identify (nlsr, random-masks).")
@click.option("--stats", type=PATH, help="stats.safetensors from identify: masks for --sparsity are made "
                                          "from it (instead of --masks).")
@click.option("--sparsity", type=float, default=None,
              help=f"P_SR for --stats [default: identify.sparsity = {default('identify', 'sparsity')}]")
@click.option("--aligned", type=PATH, help="Aligned adapter Wa (safelora, safety-vector, safemerge, interpolate "
                                           "toward aligned).")
@click.option("--method", default="nlsr", show_default=True,
              help="The repair method: " + "; ".join(f"{r.name}: {r.about}" for r in REPAIRS.values()))
@knob_options()
@click.option("--realign-data", type=PATH, help="antidote (scoring wanda): harmful prompts with harmful answers "
                                                "(JSONL prompt, response) the model runs over for the Wanda score.")
@config_options("identify", "batch_size", "max_length", prefix="identify_")
@config_option("data.template", "--template", dest="template")
@click.option("--out", required=True, type=PATH, help="Output adapter dir (parent dir with several --finetuned).")
@click.option("--allow-pickle", is_flag=True, help="Accept adapter_model.bin (pickle) adapters.")
def command(finetuned, more_finetuned, reference, masks, stats, sparsity, aligned, method, realign_data,
            identify_batch_size, identify_max_length, template, out, allow_pickle, **knobs):
    """Repair fine-tuned adapters with any registered method: NLSR's neuron transplant, SafeLoRA, or a control."""
    from nlsr_core.repair.antidote import RealignmentSet

    # `--finetuned A B C`: click gives A to the option and B, C as extra arguments; both forms are accepted.
    repair(method, [*finetuned, *more_finetuned], out, knob_values(knobs), reference=reference, masks=masks,
           stats=stats, sparsity=sparsity, aligned=aligned, allow_pickle=allow_pickle,
           realign=RealignmentSet(realign_data, identify_batch_size, identify_max_length, template)
           if realign_data is not None else None)
