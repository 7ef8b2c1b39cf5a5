"""`nlsr realign`: repair fine-tuned LoRA adapters with NLSR (eqs. 7-11) or the SafeLoRA baseline.

Reads adapter tensors and masks only (no base model, no tokenizer), so it also serves operators outside DVC:

    nlsr realign --finetuned A --reference REF --masks masks/lowrank/masks.safetensors --out OUT
    nlsr realign --finetuned A --reference REF --stats masks/dpo/stats.safetensors --sparsity 0.5 --out OUT
    nlsr realign --finetuned A B C --reference REF --masks M --out PARENT     # -> PARENT/A, PARENT/B, PARENT/C
    nlsr realign --method safelora --finetuned A --aligned ALIGNED --out OUT

Every input is loaded and checked before anything is written; each output directory (PEFT adapter +
lineage.json) is claimed before any work and written atomically (nlsr_core.outputs: it may replace only an
earlier realign/safelora output or an empty directory, never an input or a directory holding one).
"""
from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(path_type=Path)


@click.command(name="realign")
@click.option("--finetuned", multiple=True, required=True, type=PATH,
              help="Fine-tuned adapter dir Wt; repeat it or list several dirs after it (then --out is a parent dir).")
@click.argument("more_finetuned", nargs=-1, type=PATH, metavar="[FINETUNED]...")
@click.option("--reference", type=PATH, help="Reference adapter We (nlsr).")
@click.option("--masks", type=PATH, help="masks.safetensors from identify-neurons (nlsr).")
@click.option("--stats", type=PATH, help="stats.safetensors from identify-neurons: masks for --sparsity are made "
                                          "from it (nlsr; instead of --masks).")
@click.option("--sparsity", type=float, default=None, help="P_SR for --stats (identify.sparsity).")
@click.option("--aligned", type=PATH, help="Aligned adapter Wa (safelora).")
@click.option("--method", default="nlsr", show_default=True, help="nlsr | safelora")
@click.option("--preset", default="paper", show_default=True, help="paper | official-code (nlsr.preset)")
@click.option("--selection", default="adaptive", show_default=True, help="adaptive (eqs. 9-10) | threshold")
@click.option("--layer-prune", type=float, default=0.5, show_default=True, help="P_L, base pruning probability.")
@click.option("--delta", type=float, default=0.2, show_default=True, help="δ, probability increment (eq. 9).")
@click.option("--tau", type=float, default=0.5, show_default=True, help="τ for --selection threshold.")
@click.option("--safelora-tau", type=float, default=0.6, show_default=True, help="SafeLoRA cosine threshold.")
@click.option("--safelora-projection", default="orthogonal", show_default=True,
              help="orthogonal (C = UUᵀ, a projection) | frobenius (C = VVᵀ/‖V‖_F as written by SafeLoRA).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Bernoulli draws.")
@click.option("--out", required=True, type=PATH, help="Output adapter dir (parent dir with several --finetuned).")
@click.option("--allow-pickle", is_flag=True, help="Accept adapter_model.bin (pickle) adapters.")
def command(finetuned, more_finetuned, reference, masks, stats, sparsity, aligned, method, preset, selection,
            layer_prune, delta, tau, safelora_tau, safelora_projection, seed, out, allow_pickle):
    """Transplant safety neurons into fine-tuned adapters (NLSR) or project them (SafeLoRA)."""
    from nlsr_core.errors import NlsrError

    if method not in METHODS:
        raise NlsrError(f"realign --method '{method}': expected one of {', '.join(METHODS)}")
    # `--finetuned A B C`: click gives A to the option and B, C as extra arguments; both forms are accepted.
    finetuned = [*finetuned, *more_finetuned]
    inputs = [*(("--finetuned", f) for f in finetuned), ("--reference", reference), ("--masks", masks),
              ("--stats", stats), ("--aligned", aligned)]
    outs = output_dirs(finetuned, out, "safelora" if method == "safelora" else "realign", inputs)
    run = METHODS[method]
    run(finetuned=finetuned, outs=outs, reference=reference, masks=masks, stats=stats, sparsity=sparsity,
        aligned=aligned,
        preset=preset, selection=selection, layer_prune=layer_prune, delta=delta, tau=tau,
        safelora_tau=safelora_tau, safelora_projection=safelora_projection, seed=seed, allow_pickle=allow_pickle)


def output_dirs(finetuned: list[Path], out: Path, stage: str, inputs: list) -> list:
    """One claimed output (nlsr_core.outputs) per input: `out` itself for one adapter, `out/<basename>` for
    several; `out` is then only their container. Either may replace an earlier realign or safelora output."""
    from nlsr_core.errors import NlsrError
    from nlsr_core.outputs import claim, claim_container, written_by

    if len(finetuned) == 1:
        paths = [out]
    else:
        paths = [claim_container(out, inputs=inputs) / Path(f).resolve().name for f in finetuned]
        names = [p.name for p in paths]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise NlsrError(f"--finetuned: two adapters share the basename '{dup}'; outputs would collide in {out}")
    return [claim(p, stage, inputs=inputs, recognise=written_by("realign", "safelora")) for p in paths]


def _require(value, option: str, method: str):
    from nlsr_core.errors import NlsrError

    if value is None:
        raise NlsrError(f"realign --method {method} needs {option}")
    return value


def _masks(masks: Path | None, stats: Path | None, sparsity: float | None, ref, preset: str):
    """(mask tensors, the file they came from, lineage fields): from --masks, or made from --stats at --sparsity."""
    from nlsr_core.errors import NlsrError
    from nlsr_core.neurons import load_stats, masks_and_summary
    from nlsr_core.realign import load_masks

    if (masks is None) == (stats is None):
        raise NlsrError("realign --method nlsr needs exactly one of --masks FILE or --stats FILE --sparsity P_SR")
    if masks is not None:
        if sparsity is not None:
            raise NlsrError("realign --sparsity applies to --stats only; --masks already fixes P_SR")
        return load_masks(masks), masks, {}
    if sparsity is None:
        raise NlsrError("realign --stats needs --sparsity P_SR (identify.sparsity)")
    tensors, method = load_stats(stats, ref)  # finite, and the shapes of the reference (one-line errors)
    made, summary = masks_and_summary(ref, tensors, sparsity, preset, method)
    info = {k: summary[k] for k in ("method", "sparsity", "retained_rank", "kept_fraction")}
    return made, stats, {"masks_from_stats": info}


def _run_nlsr(*, finetuned, outs, reference, masks, stats, sparsity, preset, selection, layer_prune, delta, tau,
              seed, allow_pickle, **_):
    from nlsr_core.adapters import load_adapter
    from nlsr_core.lineage import input_record
    from nlsr_core.realign import RealignParams, check_realign_inputs, realign

    params = RealignParams(preset=preset, selection=selection, layer_prune=layer_prune, delta=delta, tau=tau,
                           seed=seed)
    ref = load_adapter(_require(reference, "--reference DIR", "nlsr"), allow_pickle=allow_pickle)
    mask_tensors, mask_path, mask_info = _masks(masks, stats, sparsity, ref, preset)
    results = []
    for path in finetuned:  # everything is checked and computed before the first output is written
        ft = load_adapter(path, allow_pickle=allow_pickle)
        check_realign_inputs(ft, ref, mask_tensors, mask_path)
        results.append(realign(ft, ref, mask_tensors, params))
    inputs = [input_record(reference, "reference"), input_record(mask_path, "masks")]
    record_params = {"method": "nlsr", **params.__dict__, **({"sparsity": sparsity} if stats else {})}
    for path, out, res in zip(finetuned, outs, results):
        _write(out, path, res, inputs, record_params, fallback=reference, extra=mask_info)


def _run_safelora(*, finetuned, outs, aligned, safelora_tau, safelora_projection, allow_pickle, **_):
    from nlsr_core.adapters import load_adapter
    from nlsr_core.lineage import input_record
    from nlsr_core.safelora import SafeLoraParams, safelora

    params = SafeLoraParams(tau=safelora_tau, projection=safelora_projection)
    al = load_adapter(_require(aligned, "--aligned DIR", "safelora"), allow_pickle=allow_pickle)
    results = [safelora(load_adapter(p, allow_pickle=allow_pickle), al, params) for p in finetuned]
    record_params = {"method": "safelora", "safelora_tau": params.tau, "safelora_projection": params.projection}
    for path, out, res in zip(finetuned, outs, results):
        _write(out, path, res, [input_record(aligned, "aligned")], record_params, fallback=aligned)


METHODS = {"nlsr": _run_nlsr, "safelora": _run_safelora}


def _write(output, finetuned: Path, result, inputs: list[dict], params: dict, fallback: Path,
           extra: dict | None = None) -> None:
    from nlsr_core.adapters import save_adapter
    from nlsr_core.lineage import input_record, write_lineage
    from nlsr_core.outputs import replace
    from stages.options import tracked

    out = output.path
    summary = result.summary()
    base = base_fields(finetuned) or base_fields(fallback)
    stage = "safelora" if params.get("method") == "safelora" else "realign"  # the DVC stage that runs it
    with tracked(stage, out.name, params) as tr:
        all_inputs = [input_record(finetuned, "finetuned"), *inputs]
        for rec in all_inputs:
            tr.log_input(rec)
        with replace(output) as tmp:
            save_adapter(result.adapter, tmp)
            write_lineage(tmp, stage, all_inputs, params, seed=params.get("seed"),
                          modules=[r.as_dict() for r in result.records], **summary, **base, **(extra or {}))
        for key in ("patched_count", "patched_fraction"):
            tr.log_metric(key, summary[key])
        tr.log_artifact(out)
    click.echo(f"realign: {out}: patched {summary['patched_count']}/{summary['module_count']} modules")


def base_fields(adapter_dir: Path) -> dict:
    """The inherited lineage fields of an adapter (empty when it has none), so the output can be stacked on M'
    from its own lineage, like every other adapter."""
    from nlsr_core.lineage import inherited_fields, lineage_or_empty

    return inherited_fields(lineage_or_empty(adapter_dir))
