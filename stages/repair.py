"""The repair flow `nlsr realign` and `nlsr safelora` share (not a command itself): one option per knob of the
registered repairs (nlsr_core.repair.registry), one claimed output per fine-tuned adapter, and every input checked
and every result computed before the first output is written."""
from __future__ import annotations

from pathlib import Path

import click


def knob_dest(param: str) -> str:
    """The Click keyword of a knob's option: "realign.layer_prune" -> "realign__layer_prune"."""
    return param.replace(".", "__")


def knob_options(names=None, skip: tuple = ()):
    """One option per knob of the repairs `names` (all registered ones by default), from its params key (default,
    type, help, range: nlsr_core.config) with the knob's flags; keys in `skip` are left to the command. The command
    gets them back with `knob_values`."""
    from nlsr_core.repair.registry import REPAIRS, knob_params
    from stages.options import config_option

    chosen = {f.metadata["param"]: f for name in (names or REPAIRS) for f in REPAIRS[name].knobs}
    params = [k for k in knob_params() if k in chosen and k not in skip]

    def decorate(f):
        for param in reversed(params):
            f = config_option(param, *chosen[param].metadata["flags"], dest=knob_dest(param))(f)
        return f

    return decorate


def knob_values(kwargs: dict) -> dict:
    """Pop the knob options `knob_options` added: {params key: value}."""
    from nlsr_core.repair.registry import knob_params

    return {param: kwargs.pop(knob_dest(param)) for param in knob_params() if knob_dest(param) in kwargs}


def repair(method: str, finetuned: list, out, knobs: dict, *, reference=None, masks=None, stats=None,
           sparsity=None, aligned=None, allow_pickle: bool = False, realign=None) -> None:
    """Claim one output per fine-tuned adapter (before any work), then run the registered repair `method` with the
    settings made from `knobs` ({params key: value}) on all of them. `realign` (nlsr_core.repair.antidote
    .RealignmentSet, or None) is what a method reading Wt's realignment norms (Antidote's Wanda score) runs over."""
    from nlsr_core.repair.registry import get_repair

    spec = get_repair(method, where="realign --method")
    settings = spec.settings_from_params(knobs)   # a bad knob fails before any adapter is read
    given = {"reference": reference, "aligned": aligned}
    check_lineages([*finetuned, reference, aligned])
    inputs = [*(("--finetuned", f) for f in finetuned),
              *((f"--{k}", v) for k, v in (("reference", reference), ("masks", masks), ("stats", stats),
                                            ("aligned", aligned), ("realign-data", realign and realign.data)))]
    outs = output_dirs(finetuned, out, spec.stage, inputs)
    run = dict(spec=spec, settings=settings, finetuned=finetuned, given=given, masks=masks, stats=stats,
               sparsity=sparsity, allow_pickle=allow_pickle, outs=outs, realign=realign)
    if len(outs) == 1:
        _run(**run, record=None)
        return
    from nlsr_core.io.batch_record import batch_record

    # several outputs in one container: which are complete is recorded while they are written
    with batch_record(out, spec.stage, [o.path.name for o in outs], commands=("realign", "safelora")) as record:
        _run(**run, record=record)


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


def _run(*, spec, settings, finetuned, given, masks, stats, sparsity, allow_pickle, outs, record, realign) -> None:
    """Load what `spec` needs (the reference, the aligned adapter, masks from --masks or --stats, each Wt's
    realignment norms from a model pass over --realign-data), repair every fine-tuned adapter, then write them all."""
    from nlsr_core.config import default
    from nlsr_core.io.lineage import input_record
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.method.realign import check_realign_inputs
    from nlsr_core.repair.registry import RepairInputs

    needs = spec.needs_for(settings)   # interpolate reads We or Wa by its target
    loaded = {role: load_adapter(_require(given[role], f"--{role} DIR", spec.name), allow_pickle=allow_pickle)
              for role in ("reference", "aligned") if role in needs}
    mask_tensors, mask_path, mask_info = None, None, {}
    if "masks" in needs:
        preset = getattr(settings, "preset", default("nlsr", "preset"))
        mask_tensors, mask_path, mask_info = _masks(masks, stats, sparsity, loaded["reference"], preset)
    if "norms" in needs:
        _require(realign, "--realign-data FILE", spec.name)
    results = []
    for path in finetuned:  # everything is checked and computed before the first output is written
        ft = load_adapter(path, allow_pickle=allow_pickle)
        if mask_tensors is not None:
            check_realign_inputs(ft, loaded["reference"], mask_tensors, mask_path)
        norms = realign.norms(ft) if "norms" in needs else None
        results.append(spec.run(RepairInputs(ft, masks=mask_tensors, norms=norms, **loaded), settings))
    inputs = [input_record(given[role], role) for role in loaded]
    inputs += [input_record(mask_path, "masks")] if mask_path is not None else []
    inputs += [input_record(realign.data, "realign data")] if "norms" in needs else []
    params = {**spec.record(settings), **mask_info.pop("sparsity", {})}
    if "norms" in needs:
        params["realign_pass"] = realign.record()
    fallback = next((given[role] for role in ("reference", "aligned") if role in loaded), None)   # None: Wt only
    for path, out, res in zip(finetuned, outs, results):
        _write(out, path, res, inputs, params, fallback, spec.stage, extra=mask_info, record=record)


def _write(output, finetuned: Path, result, inputs: list[dict], params: dict, fallback: Path, stage: str,
           extra: dict | None = None, record=None) -> None:
    """Write one repaired adapter; with `record` (nlsr_core.io.batch_record, several outputs), mark it complete."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.lineage import base_fields, input_record
    from stages.artifact import write_artifact

    out = output.path
    summary = result.summary()
    base = base_fields(finetuned) or (base_fields(fallback) if fallback is not None else {})

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

