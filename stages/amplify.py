"""`nlsr amplify`: the safety reference We from the aligned adapter Wa (eq. 2, or eq. 1 with --strong).

    adapters/reference/<method>/   PEFT dir + lineage (model, model_spec and weak copied from Wa's lineage, when
                                   Wa has one: an adapter trained elsewhere may have none)

Tensor work only (nlsr_core.method.amplify): no model is loaded, so it takes well under a second.
"""
from __future__ import annotations

import click


@click.command("amplify")
@click.option("--method", default="dpo", show_default=True, help="alignment method (names the default paths)")
@click.option("--aligned", "aligned_dir", default=None, type=click.Path(),
              help="aligned adapter Wa [default: adapters/aligned/<method>/aligned]")
@click.option("--out", "out_dir", default=None, type=click.Path(), help="[default: adapters/reference/<method>]")
@click.option("--beta", type=float, default=0.9, show_default=True,
              help="amplify.beta: eq. 2 extrapolation beta; eq. 1 interpolation weight of the strong adapter")
@click.option("--preset", default="paper", show_default=True,
              help="nlsr.preset: paper (A, B x sqrt(1+beta)) | official-code (A, B x 2*beta)")
@click.option("--mode", default="extrapolate", show_default=True, help="extrapolate (eq. 2) | interpolate (eq. 1)")
@click.option("--strong", "strong_dir", default=None, type=click.Path(),
              help="stronger safety adapter on M' (interpolate mode only)")
def command(method, aligned_dir, out_dir, beta, preset, mode, strong_dir):
    """Write We = (1+beta)·ΔWa (paper) / (2·beta)²·ΔWa (official-code), or eq. 1 toward --strong."""
    from pathlib import Path

    from nlsr_core.errors import NlsrError
    from nlsr_core.io.outputs import claim

    aligned_dir = Path(aligned_dir or f"adapters/aligned/{method}/aligned")
    out = Path(out_dir or f"adapters/reference/{method}")
    strong_dir = Path(strong_dir) if strong_dir else None
    from nlsr_core.method.amplify import MODES

    if mode not in MODES:
        raise NlsrError(f"amplify.mode: '{mode}' is unknown (expected one of {', '.join(MODES)})")
    if (mode == "interpolate") != (strong_dir is not None):
        raise NlsrError("amplify.strong: --strong DIR is required with --mode interpolate and only used there")
    output = claim(out, "amplify", inputs=[("--aligned", aligned_dir), ("--strong", strong_dir)])
    _run(aligned_dir, output, beta, preset, mode, strong_dir)


def _run(aligned_dir, output, beta, preset, mode, strong_dir) -> None:
    import os

    from nlsr_core.method import amplify
    from nlsr_core.lora.adapters import load_adapter, save_adapter
    from nlsr_core.io.lineage import inherited_fields, input_record, lineage_or_empty
    from stages.artifact import write_artifact

    out = output.path
    params = {"beta": beta, "preset": preset, "mode": mode}
    amplify.product_factor(beta, preset)            # checks beta and preset before anything is read
    aligned = load_adapter(aligned_dir)
    # An aligned adapter trained elsewhere has no lineage: the reference then names no base model or W0, and
    # `nlsr identify --model` supplies them.
    parent = lineage_or_empty(aligned_dir)
    inputs = [input_record(aligned_dir, "aligned")]
    extra: dict = {}
    if mode == "extrapolate":
        reference = amplify.extrapolate(aligned, beta, preset)
        extra["product_factor"] = amplify.product_factor(beta, preset)
    else:
        strong = load_adapter(strong_dir)
        inputs.append(input_record(strong_dir, "strong"))
        reference, residuals = amplify.interpolate(aligned, strong, beta)
        worst = max(residuals, key=residuals.get)
        extra["residual"] = {"max": residuals[worst], "max_module": worst,
                             "mean": sum(residuals.values()) / len(residuals)}
    def fill(tmp):
        save_adapter(reference, tmp)
        return {**inherited_fields(parent), **extra}

    key = str(parent.get("method", os.path.basename(str(aligned_dir))))
    write_artifact(output, "amplify", key, inputs, params, fill)
    how = f"x{extra['product_factor']:.4g}" if mode == "extrapolate" else f"eq. 1, alpha {beta}"
    click.echo(f"amplify: wrote {out} ({mode}, {preset}, {how}, {len(reference.modules)} modules)")
