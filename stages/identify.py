"""`nlsr identify`: safety-critical neurons of the reference adapter We (paper eqs. 3-6, Table 5).

Runs M' + We over the safety identification set X̂ (response tokens only), scores every LoRA entry with the
chosen identifier and writes, into --out (default identify/<reference dir name>/):
    stats.safetensors   the identifier's fp32 statistics (lowrank: the Gram K per module); they do not depend on
                        P_SR, so masks for any P_SR come from them (`nlsr realign --stats`, `masks_from_stats`)
                        without another pass over the model
    masks.safetensors   bool masks keyed by adapter tensor name, only with --sparsity (`nlsr realign --masks`)
    summary.json        per-module kept fraction, r*, spectrum energy retained; sample and token counts
    lineage.json
The base model and W0 come from the reference adapter's lineage (`model`, `weak`); --model / --weak override.
"""
from __future__ import annotations

from pathlib import Path

import click

from stages.options import PATH, compute_options, config_option, config_options, template_option



@click.command(name="identify")
@click.option("--reference", required=True, type=PATH, help="Reference adapter We (adapters/reference/<method>).")
@click.option("--model", default=None, help="Base model name; default: the reference adapter's lineage.")
@click.option("--weak", type=PATH, default=None, help="W0 adapter merged into M'; default: the reference's lineage.")
@click.option("--data", type=PATH, default=Path("data/prepared/identify/safety.jsonl"), show_default=True,
              help="Safety identification set X̂ (prompt + safe response rows).")
@click.option("--preference", type=PATH, default=Path("data/prepared/align/preference.jsonl"), show_default=True,
              help="Preference pairs for --identifier preference-snip.")
@config_option("identify.identifier")
@click.option("--sparsity", type=float, default=None,
              help="P_SR in [0, 1): also write masks.safetensors; without it only the statistics are written and "
                   "`nlsr realign --stats FILE --sparsity P` makes the masks (the DVC pipeline does that).")
@config_option("nlsr.preset", "--preset")
@config_options("identify", "batch_size", "max_length", "seed")
@template_option
@compute_options
@click.option("--out", type=PATH, default=None, help="Output dir; default identify/<reference dir name>.")
def command(reference, model, weak, data, preference, identifier, sparsity, preset, batch_size, max_length,
            template, seed, compute, out):
    """Find the safety-critical neurons of the reference adapter and write masks + stats + summary."""
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.config import check_value
    from nlsr_core.method.identification import base_of, identification_files, identify_model
    from nlsr_core.method.neurons import get_identifier
    from nlsr_core.method.presets import check_sparsity, get_preset
    from nlsr_core.io.outputs import claim

    chosen = get_identifier(identifier)
    if sparsity is not None:
        check_sparsity(sparsity)
    get_preset(preset)
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        check_value(f"identify.{name}", value)
    out = out or Path("identify") / Path(reference).name
    ref = load_adapter(reference)
    base = base_of(reference, model, weak, compute)
    needed = identification_files(chosen, data, preference)
    output = claim(out, "identify", inputs=[("--reference", reference), ("--data", data),
                                                    ("--preference", preference), ("--weak", base["weak"])])
    params = {"identifier": identifier, "sparsity": sparsity, "preset": preset, "batch_size": batch_size,
              "max_length": max_length, "template": template, "seed": seed}
    result = identify_model(ref, base, chosen.data, needed, params)
    _write(output, ref, reference, base, needed, params, result)


def _write(output, ref, reference: Path, base: dict, files: list[Path], params: dict, result) -> None:
    from nlsr_core.io.fileio import write_json
    from nlsr_core.io.lineage import input_record, recorded_path
    from nlsr_core.method.neurons import save_masks, save_stats
    from stages.artifact import write_artifact

    out = output.path
    inputs = [input_record(reference, "reference"), *(input_record(f, "data") for f in files)]
    if base["weak"]:
        inputs.append(input_record(Path(base["weak"]), "weak"))
    # the files' metadata keeps the key "method" (the identifier), which load_stats / load_masks read
    meta = {"method": params["identifier"], "preset": params["preset"], "sparsity": repr(params["sparsity"])}
    kept = result.summary.get("kept_fraction")

    def fill(tmp):
        if result.masks:
            save_masks(result.masks, tmp / "masks.safetensors", meta)
        save_stats(result.stats, tmp / "stats.safetensors", {"method": params["identifier"]})
        write_json(tmp / "summary.json", result.summary)
        weak = recorded_path(base["weak"]) if base["weak"] else None
        placed = {"compute": base["spec"].compute().record()} if base["spec"] is not None else {}
        return {"seed": params["seed"], **base["lineage"], "model": base["identity"], "weak": weak, **placed}

    # keyed like the DVC stage (the align method)
    write_artifact(output, "identify", out.name, inputs, params, fill, metrics={"kept_fraction": kept})
    what = f"{len(result.masks)} masks, kept {kept:.3f}" if kept is not None else "statistics only (no --sparsity)"
    click.echo(f"identify: {out}: {what}")
