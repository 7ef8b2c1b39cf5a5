"""The repair flow `nlsr realign` and `nlsr safelora` share (not a command itself): one claimed output per
fine-tuned adapter, every input checked and every result computed before the first output is written, and a
dispatch table of repair methods (`METHODS`)."""
from __future__ import annotations

from pathlib import Path

import click



def projection_option(f):
    return click.option("--safelora-projection", "--safelora_projection", "safelora_projection",
                        default="orthogonal", show_default=True,
                        help="orthogonal (C = UUᵀ, a projection) | frobenius (C = VVᵀ/‖V‖_F as written by "
                             "SafeLoRA).")(f)


def repair(method: str, finetuned: list, out, **options) -> None:
    """Claim one output per fine-tuned adapter (before any work), then run the repair `method` on all of them."""
    from nlsr_core.errors import NlsrError

    if method not in METHODS:
        raise NlsrError(f"realign --method '{method}': expected one of {', '.join(METHODS)}")
    check_lineages([*finetuned, *(options.get(k) for k in ("reference", "aligned"))])
    inputs = [*(("--finetuned", f) for f in finetuned),
              *((f"--{k}", options.get(k)) for k in ("reference", "masks", "stats", "aligned"))]
    stage = "safelora" if method == "safelora" else "realign"
    outs = output_dirs(finetuned, out, stage, inputs)
    if len(outs) == 1:
        METHODS[method](finetuned=finetuned, outs=outs, method=method, record=None, **options)
        return
    from nlsr_core.io.batch_record import batch_record

    # several outputs in one container: which are complete is recorded while they are written
    with batch_record(out, stage, [o.path.name for o in outs], commands=("realign", "safelora")) as record:
        METHODS[method](finetuned=finetuned, outs=outs, method=method, record=record, **options)


def check_lineages(adapters: list) -> None:
    """Every input adapter's lineage.json, when it has one, must be readable (nlsr_core.io.lineage.read_lineage's
    one-line error), before anything is claimed: outputs inherit the base and W0 from it."""
    from nlsr_core.io.lineage import lineage_or_empty

    for adapter in adapters:
        if adapter is not None and Path(adapter).is_dir():
            lineage_or_empty(Path(adapter))


def output_dirs(finetuned: list[Path], out: Path, stage: str, inputs: list) -> list:
    """One claimed output (nlsr_core.io.outputs) per input: `out` itself for one adapter, `out/<basename>` for
    several; `out` is then only their container. Either may replace an earlier realign or safelora output."""
    from nlsr_core.errors import NlsrError
    from nlsr_core.io.outputs import claim, claim_container, written_by

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
    """(mask tensors, the file they came from, lineage fields): from --masks, or made from --stats at --sparsity
    (default identify.sparsity)."""
    from nlsr_core.config import default
    from nlsr_core.errors import NlsrError
    from nlsr_core.method.neurons import load_stats, masks_and_summary
    from nlsr_core.method.realign import load_masks

    if (masks is None) == (stats is None):
        raise NlsrError("realign --method nlsr needs exactly one of --masks FILE or --stats FILE [--sparsity P_SR]")
    if masks is not None:
        if sparsity is not None:
            raise NlsrError("realign --sparsity applies to --stats only; --masks already fixes P_SR")
        return load_masks(masks), masks, {}
    sparsity = default("identify", "sparsity") if sparsity is None else sparsity
    tensors, method = load_stats(stats, ref)  # finite, and the shapes of the reference (one-line errors)
    made, summary = masks_and_summary(ref, tensors, sparsity, preset, method)
    info = {k: summary[k] for k in ("method", "sparsity", "retained_rank", "kept_fraction")}
    return made, stats, {"masks_from_stats": info, "sparsity": {"sparsity": sparsity}}


def _run_nlsr(*, finetuned, outs, reference, masks, stats, sparsity, preset, selection, layer_prune, delta, tau,
              seed, allow_pickle, method="nlsr", record=None, **_):
    """NLSR (eqs. 8-11) with the identified masks, or with random masks at their kept count (random-masks)."""
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.repair.baselines import random_mask_realign
    from nlsr_core.io.lineage import input_record
    from nlsr_core.method.realign import RealignParams, check_realign_inputs, realign

    repair_one = realign if method == "nlsr" else random_mask_realign
    params = RealignParams(preset=preset, selection=selection, layer_prune=layer_prune, delta=delta, tau=tau,
                           seed=seed)
    ref = load_adapter(_require(reference, "--reference DIR", method), allow_pickle=allow_pickle)
    mask_tensors, mask_path, mask_info = _masks(masks, stats, sparsity, ref, preset)
    results = []
    for path in finetuned:  # everything is checked and computed before the first output is written
        ft = load_adapter(path, allow_pickle=allow_pickle)
        check_realign_inputs(ft, ref, mask_tensors, mask_path)
        results.append(repair_one(ft, ref, mask_tensors, params))
    inputs = [input_record(reference, "reference"), input_record(mask_path, "masks")]
    record_params = {"method": method, **params.__dict__, **mask_info.pop("sparsity", {})}
    for path, out, res in zip(finetuned, outs, results):
        _write(out, path, res, inputs, record_params, fallback=reference, extra=mask_info, record=record)


def _run_blend(*, finetuned, outs, reference, aligned, interpolate_lambda, safety_vector_gamma, allow_pickle,
               method, record=None, **_):
    """The mask-free baselines: interpolate toward --reference (λ), or add γ·ΔWa of --aligned (safety-vector)."""
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.repair.baselines import interpolate, safety_vector
    from nlsr_core.config import check_value
    from nlsr_core.io.lineage import input_record

    # the knob first: a bad value fails before any adapter is read
    for name, value in (("interpolate_lambda", interpolate_lambda), ("safety_vector_gamma", safety_vector_gamma)):
        check_value(f"realign.{name}", value)
    if method == "interpolate":
        source, role, knob, value = reference, "reference", "interpolate_lambda", interpolate_lambda
        repair_one = interpolate
    else:
        source, role, knob, value = aligned, "aligned", "safety_vector_gamma", safety_vector_gamma
        repair_one = safety_vector
    other = load_adapter(_require(source, f"--{role} DIR", method), allow_pickle=allow_pickle)
    results = [repair_one(load_adapter(p, allow_pickle=allow_pickle), other, value) for p in finetuned]
    for path, out, res in zip(finetuned, outs, results):
        _write(out, path, res, [input_record(source, role)], {"method": method, knob: value}, fallback=source, record=record)


def _run_safelora(*, finetuned, outs, aligned, safelora_tau, safelora_projection, allow_pickle, record=None,
                  **_):
    """SafeLoRA: project drifted modules onto the aligned adapter's safety subspace."""
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.io.lineage import input_record
    from nlsr_core.repair.safelora import SafeLoraParams, safelora

    params = SafeLoraParams(tau=safelora_tau, projection=safelora_projection)
    al = load_adapter(_require(aligned, "--aligned DIR", "safelora"), allow_pickle=allow_pickle)
    results = [safelora(load_adapter(p, allow_pickle=allow_pickle), al, params) for p in finetuned]
    record_params = {"method": "safelora", "safelora_tau": params.tau, "safelora_projection": params.projection}
    for path, out, res in zip(finetuned, outs, results):
        _write(out, path, res, [input_record(aligned, "aligned")], record_params, fallback=aligned, record=record)


# The repair methods of `nlsr realign --method` (docs/DESIGN.md §7.2): NLSR, SafeLoRA and the training-free
# controls of nlsr_core.repair.baselines.
METHODS = {"nlsr": _run_nlsr, "safelora": _run_safelora, "random-masks": _run_nlsr, "interpolate": _run_blend,
           "safety-vector": _run_blend}


def _write(output, finetuned: Path, result, inputs: list[dict], params: dict, fallback: Path,
           extra: dict | None = None, record=None) -> None:
    """Write one repaired adapter; with `record` (nlsr_core.io.batch_record, several outputs), mark it complete."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.lineage import base_fields, input_record
    from stages.artifact import write_artifact

    out = output.path
    summary = result.summary()
    base = base_fields(finetuned) or base_fields(fallback)
    stage = "safelora" if params.get("method") == "safelora" else "realign"  # the DVC stage that runs it

    def fill(tmp):
        save_adapter(result.adapter, tmp)
        return {"seed": params.get("seed"), "modules": [r.as_dict() for r in result.records], **summary, **base,
                **(extra or {})}

    if record is not None:
        record.begin()
    write_artifact(output, stage, out.name, [input_record(finetuned, "finetuned"), *inputs], params, fill,
                   metrics={k: summary[k] for k in ("patched_count", "patched_fraction")})
    if record is not None:
        record.done(out.name)
    click.echo(f"realign: {out}: patched {summary['patched_count']}/{summary['module_count']} modules")

