"""The repair registry: every training-free repair of a fine-tuned adapter, NLSR and its controls, in one table.

    REPAIRS[name] = Repair(name, settings=<frozen dataclass of knobs>, run=<(RepairInputs, settings) -> RepairResult>,
                           needs=<inputs beyond Wt>, stage=<DVC stage and output folder of `nlsr realign`>,
                           needs_by=<settings -> needs, where a knob picks the inputs>)

`nlsr realign --method` and `nlsr safelora` (stages/repair.py), the study's PointBuilder and points
(nlsr_core.study.points) and the reports read this table only. A knob is a settings field declared with
`nlsr_core.config.knob`: its default and range come from its params key, the CLI grows one option for it, and
lineage and study points record it under the field's name. Adding a method is one module holding its settings and
function plus one line below (docs/DESIGN.md §7.2). What a method reads is `needs_for(settings)`: `needs` unless a
knob chooses the input (interpolate's realign.interpolate_target picks We or Wa).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from nlsr_core.errors import NlsrError
from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.realign import RealignParams, RepairResult, realign
from nlsr_core.repair.antidote import AntidoteSettings, antidote
from nlsr_core.repair.baselines import (InterpolateSettings, SafetyVectorSettings, interpolate, random_mask_realign,
                                        safety_vector)
from nlsr_core.repair.dg_hard import DgHardSettings, dg_hard
from nlsr_core.repair.safelora import SafeLoraParams, safelora
from nlsr_core.repair.safemerge import SafeMergeSettings, safemerge

INPUTS = ("reference", "aligned", "masks", "norms")   # what a repair may read besides Wt


@dataclass(frozen=True)
class RepairInputs:
    """What one repair of Wt reads: the reference We (eq. 2), the aligned Wa, NLSR's identified masks (key -> bool
    tensor of the factor's shape, r×d_in or d_out×r) and Wt's realignment norms (Antidote's Wanda score:
    "<m>.lora_{A,B}.input_sq" -> Σ_t x_t² per input feature, nlsr_core.repair.antidote.RealignmentSet.norms);
    those a method does not need stay None."""

    finetuned: Adapter
    reference: Adapter | None = None
    aligned: Adapter | None = None
    masks: dict | None = None
    norms: dict | None = None


@dataclass(frozen=True)
class Repair:
    """One repair method: its knobs (`settings`, a frozen dataclass of `knob` fields), the function that applies
    it, the inputs it needs at its default settings (a subset of INPUTS; `needs_by(settings)` where a knob changes
    them) and the DVC stage that writes its output from the CLI."""

    name: str
    settings: type
    run: Callable[[RepairInputs, Any], RepairResult]
    needs: tuple[str, ...]
    stage: str = "realign"
    about: str = ""
    needs_by: Callable[[Any], tuple[str, ...]] | None = None

    def __post_init__(self):
        unknown = [n for n in self.needs if n not in INPUTS]
        if unknown or not dataclasses.is_dataclass(self.settings):
            raise NlsrError(f"repair '{self.name}': needs {unknown} / settings {self.settings}; expected inputs from "
                            f"{', '.join(INPUTS)} and a settings dataclass")

    def needs_for(self, settings) -> tuple[str, ...]:
        """The inputs beyond Wt this repair reads with `settings`: `needs`, or `needs_by(settings)`."""
        if self.needs_by is None:
            return self.needs
        needs = tuple(self.needs_by(settings))
        unknown = [n for n in needs if n not in INPUTS]
        if unknown:
            raise NlsrError(f"repair '{self.name}': needs {unknown}; expected inputs from {', '.join(INPUTS)}")
        return needs

    @property
    def knobs(self) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(self.settings) if "param" in f.metadata]

    def settings_from_params(self, values: dict):
        """The settings from {params key: value} (e.g. {"realign.interpolate_lambda": 0.5}, what the CLI parses);
        a knob missing there or None takes its default. Checked: a bad value is a one-line error."""
        given = {f.name: values.get(f.metadata["param"]) for f in self.knobs}
        return self.settings(**{k: v for k, v in given.items() if v is not None})

    def record(self, settings) -> dict:
        """{"method": name, field: value, ...}: what lineage and a study point record of this repair."""
        return {"method": self.name, **{f.name: getattr(settings, f.name) for f in self.knobs}}

    def label_parts(self, settings) -> list[str]:
        """The knobs a study point's label shows: those marked `always`, the others where they differ from the
        default (`short` "x" -> "x=value", "" -> the value alone; no `short` -> never shown)."""
        parts = []
        for f in self.knobs:
            short, value = f.metadata.get("short"), getattr(settings, f.name)
            if short is None or (value == f.default and not f.metadata.get("always")):
                continue
            text = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
            parts.append(f"{short}={text}" if short else text)
        return parts


def _nlsr(inputs: RepairInputs, settings: RealignParams) -> RepairResult:
    return realign(inputs.finetuned, inputs.reference, inputs.masks, settings)


def _random_masks(inputs: RepairInputs, settings: RealignParams) -> RepairResult:
    return random_mask_realign(inputs.finetuned, inputs.reference, inputs.masks, settings)


def _interpolate(inputs: RepairInputs, settings: InterpolateSettings) -> RepairResult:
    return interpolate(inputs.finetuned, getattr(inputs, settings.target), settings.lam, role=settings.target)


def _safety_vector(inputs: RepairInputs, settings: SafetyVectorSettings) -> RepairResult:
    return safety_vector(inputs.finetuned, inputs.aligned, settings.gamma)


def _safelora(inputs: RepairInputs, settings: SafeLoraParams) -> RepairResult:
    return safelora(inputs.finetuned, inputs.aligned, settings)


def _safemerge(inputs: RepairInputs, settings: SafeMergeSettings) -> RepairResult:
    return safemerge(inputs.finetuned, inputs.aligned, settings)


def _antidote(inputs: RepairInputs, settings: AntidoteSettings) -> RepairResult:
    return antidote(inputs.finetuned, settings, inputs.norms)


def _dg_hard(inputs: RepairInputs, settings: DgHardSettings) -> RepairResult:
    return dg_hard(inputs.finetuned, settings)


REPAIRS: dict[str, Repair] = {r.name: r for r in (
    Repair("nlsr", RealignParams, _nlsr, ("reference", "masks"),
           about="NLSR: module similarity, selection and neuron transplant (eqs. 8-11)"),
    Repair("random-masks", RealignParams, _random_masks, ("reference", "masks"),
           about="NLSR's selection and transplant with random masks of the identified kept count"),
    Repair("interpolate", InterpolateSettings, _interpolate, ("reference",), needs_by=lambda s: (s.target,),
           about="W't = Wt + λ·(We − Wt), or toward Wa with --interpolate-target aligned"),
    Repair("safety-vector", SafetyVectorSettings, _safety_vector, ("aligned",),
           about="ΔW't = ΔWt + γ·ΔWa, exact as a LoRA of rank r_t + r_a"),
    Repair("safelora", SafeLoraParams, _safelora, ("aligned",), stage="safelora",
           about="SafeLoRA: project drifted modules onto the aligned adapter's subspace"),
    Repair("safemerge", SafeMergeSettings, _safemerge, ("aligned",),
           about="SafeMERGE: modules with cos(C·ΔWt, ΔWt) < τ become w·ΔWt + (1 − w)·ΔWa (rank r_t + r_a)"),
    Repair("antidote", AntidoteSettings, _antidote, ("norms",),
           needs_by=lambda s: ("norms",) if s.scoring == "wanda" else (),
           about="Antidote: zero the highest-scoring share ρ of every LoRA factor row (Wanda score |W|·‖X‖ over "
                 "--realign-data, or |W| with --antidote-scoring magnitude)"),
    Repair("dg-hard", DgHardSettings, _dg_hard, (),
           about="DG-Hard: Donoho–Gavish hard threshold on each module's singular values"),
)}


def get_repair(name: str, where: str = "repair method") -> Repair:
    """REPAIRS[name], or a one-line error naming `where` and the registered methods."""
    if name not in REPAIRS:
        raise NlsrError(f"{where} '{name}': expected one of {', '.join(REPAIRS)}")
    return REPAIRS[name]


def knob_params() -> dict[str, dataclasses.Field]:
    """params key -> its knob field, over every registered repair (a key two repairs share appears once)."""
    return {f.metadata["param"]: f for r in REPAIRS.values() for f in r.knobs}
