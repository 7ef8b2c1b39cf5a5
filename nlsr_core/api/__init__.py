"""The public Python API: repair a fine-tuned LoRA adapter from Python, without DVC, MLflow or Click.

    import nlsr_core.api as nlsr

    finetuned = nlsr.load("customers/a")                      # any PEFT LoRA adapter directory
    reference = nlsr.load("adapters/reference/dpo")           # We = (1 + β)·Wa (`nlsr amplify`)
    masks = nlsr.masks("identify/dpo/stats.safetensors", reference, sparsity=0.35)
    result = nlsr.repair("nlsr", finetuned, reference=reference, masks=masks, layer_prune=0.0)
    nlsr.save(result, "repaired/a", finetuned="customers/a", inputs={"reference": "adapters/reference/dpo"})
    assert nlsr.verify("repaired/a") == []                    # every recorded input still has its digest

Every name is a thin layer over the library the commands use: `repair` runs any method of the registry
(nlsr_core.repair.registry.REPAIRS: nlsr, random-masks, interpolate, safety-vector, safelora, safemerge, antidote,
dg-hard) with its knobs given by their settings field names (Antidote's Wanda score reads `realign_norms`, a model
pass over harmful answers); `save` writes a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)
with lineage.json through the same claim/replace rules as `nlsr realign` (an existing directory is replaced only
when an nlsr repair wrote it). This layer imports every other one and nothing imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlsr_core.errors import NlsrError
from nlsr_core.lora.adapters import Adapter, load_adapter
from nlsr_core.method.realign import RepairResult
from nlsr_core.repair.registry import REPAIRS, RepairInputs, get_repair

__all__ = ["REPAIRS", "Adapter", "Repaired", "load", "masks", "identify", "realign_norms", "repair", "save",
           "verify"]


def load(path: Path | str, allow_pickle: bool = False) -> Adapter:
    """A PEFT LoRA adapter directory as an Adapter (config + tensors; A: r×d_in, B: d_out×r per module), checked:
    safetensors only unless `allow_pickle`, finite values, one A/B pair per module."""
    return load_adapter(path, allow_pickle=allow_pickle)


def masks(stats: Path | str, reference: Adapter, sparsity: float | None = None,
          preset: str | None = None) -> dict:
    """NLSR's safety-critical neuron masks (eqs. 3-6) of `reference` at P_SR = `sparsity` (default
    identify.sparsity) from an identification statistics file (`nlsr identify`'s stats.safetensors): key ->
    bool tensor of the factor's shape. No model pass."""
    from nlsr_core.config import default
    from nlsr_core.method.neurons import load_stats, masks_from_stats

    tensors, method = load_stats(stats, reference)
    return masks_from_stats(reference, tensors, default("identify", "sparsity") if sparsity is None else sparsity,
                            preset or default("nlsr", "preset"), method)


def _pass_settings(settings: dict) -> dict:
    """batch_size / max_length / seed (identify.*) and template (data.template) of a model pass, from `settings` or
    their params defaults: what `identify` and `realign_norms` take."""
    from nlsr_core.config import default

    return {**{k: settings.get(k, default("identify", k)) for k in ("batch_size", "max_length", "seed")},
            "template": settings.get("template", default("data", "template"))}


def identify(reference_dir: Path | str, data: Path | str, identifier: str | None = None,
             preference: Path | str | None = None, **settings) -> dict:
    """Identification statistics of the reference adapter at `reference_dir` from a model pass over the prompts
    of `data` (JSONL rows with "prompt" and "response"; `preference` pairs for preference-snip): the base model
    and W0 come from the reference's lineage. `settings`: identify.batch_size / max_length / seed, template,
    compute (nlsr_core.compute.Compute). Returns the statistics `masks` turns into masks (after `save_stats`)."""
    from nlsr_core.config import default
    from nlsr_core.method.identification import base_of, collect_statistics

    ident = {"data": Path(data), "preference": Path(preference) if preference else None, **_pass_settings(settings)}
    base = base_of(Path(reference_dir), None, None, settings.get("compute"))
    return collect_statistics(load_adapter(reference_dir), base, identifier or default("identify", "identifier"),
                              ident)


def realign_norms(finetuned_dir: Path | str, data: Path | str, **settings) -> dict:
    """Antidote's realignment norms of the fine-tuned adapter at `finetuned_dir`: Σ_t x_t² per input feature of every
    LoRA factor over the answer tokens of `data` (JSONL rows with "prompt" and "response": harmful prompts with
    harmful answers), from one pass of M (+ W0) + Wt, M from Wt's lineage or `model`. `settings`:
    identify.batch_size / max_length, template, compute, model. Pass the result as `repair("antidote", ...,
    norms=...)`."""
    from nlsr_core.repair.antidote import RealignmentSet

    pass_ = _pass_settings(settings)
    realignment = RealignmentSet(Path(data), pass_["batch_size"], pass_["max_length"], pass_["template"])
    return realignment.norms(load_adapter(finetuned_dir), settings.get("compute"), settings.get("model"))


def repair(method: str, finetuned: Adapter, *, reference: Adapter | None = None, aligned: Adapter | None = None,
           masks: dict | None = None, norms: dict | None = None, **knobs) -> Repaired:
    """Repair `finetuned` with the registered `method`; `knobs` are its settings fields (e.g. layer_prune, seed for
    nlsr; tau for safelora; lam and target for interpolate; dense_ratio and scoring for antidote, whose Wanda score
    reads `norms` from `realign_norms`), the others keep their params defaults. An input the
    method needs with these settings (Repair.needs_for) and the call lacks is a one-line error."""
    spec = get_repair(method)
    given = {"reference": reference, "aligned": aligned, "masks": masks, "norms": norms}
    names = {f.name for f in spec.knobs}
    unknown = sorted(set(knobs) - names)
    if unknown:
        raise NlsrError(f"repair '{method}': unknown setting '{unknown[0]}'; expected one of {', '.join(sorted(names))}")
    settings = spec.settings(**knobs)
    needs = spec.needs_for(settings)   # e.g. interpolate with target="aligned" reads `aligned`, not `reference`
    missing = [name for name in needs if given[name] is None]
    if missing:
        raise NlsrError(f"repair '{method}' needs {', '.join(missing)}; expected it as a keyword argument")
    result = spec.run(RepairInputs(finetuned, **{k: given[k] for k in needs}), settings)
    return Repaired(result.adapter, result.records, method, settings)


@dataclass(frozen=True)
class Repaired(RepairResult):
    """A repair's result (the adapter and one record per module) with the method and settings that made it, so
    `save` writes the lineage `nlsr realign` writes."""

    method: str = "nlsr"
    settings: Any = None

    @property
    def record(self) -> dict:
        return REPAIRS[self.method].record(self.settings)


def save(result: Repaired, out: Path | str, *, finetuned: Path | str,
         inputs: dict[str, Path | str] | None = None) -> Path:
    """Write `result` as a PEFT adapter directory `out` with lineage.json (the fine-tuned adapter and `inputs`
    {role: path} with their digests, the method's settings, the per-module records). `out` must not be an input;
    an existing `out` is replaced only when an nlsr repair wrote it. Returns `out`."""
    from nlsr_core.io.lineage import base_fields, input_record, write_lineage
    from nlsr_core.io.outputs import claim, replace, written_by
    from nlsr_core.lora.adapters import save_adapter

    stage = REPAIRS[result.method].stage
    given = [("--finetuned", finetuned), *((f"--{role}", path) for role, path in (inputs or {}).items())]
    output = claim(out, stage, inputs=given, recognise=written_by("realign", "safelora"))
    records = [input_record(Path(finetuned), "finetuned"),
               *(input_record(Path(path), role) for role, path in (inputs or {}).items())]
    with replace(output) as tmp:
        save_adapter(result.adapter, tmp)
        write_lineage(tmp, stage, records, result.record,
                      modules=[r.as_dict() for r in result.records], **result.summary(),
                      **base_fields(Path(finetuned)))
    return Path(out)


def verify(path: Path | str) -> list[str]:
    """What no longer matches in an artifact's lineage: one line per recorded input that changed or is missing
    (empty: every input still has its recorded digest). Inputs only, one level: `nlsr audit --verify` walks the
    whole chain."""
    from nlsr_core.api.recheck import OK, artifact_dir, input_mark, resolve
    from nlsr_core.io.lineage import read_lineage

    top = artifact_dir(Path(path))
    if top is None:
        raise NlsrError(f"{path}: no lineage.json (expected an artifact written by nlsr)")
    problems = []
    for rec in read_lineage(top).get("inputs") or []:
        mark, text = input_mark(rec, resolve(rec.get("path", ""), top))
        if mark != OK:
            problems.append(f"{rec.get('role', '?')}: {rec.get('path', '?')}: {text}")
    return problems
