"""Realign operating points: many repaired adapters from one identification pass, scored side by side.

NLSR's effect on a small model is a trade-off, not a point (docs/DESIGN.md §5.1): a larger safety region (lower P_SR) and
more patched modules (lower P_L) restore more safety and cost more task accuracy. This module holds what the
`frontier`, `calibrate`, `ablate` and `finetune-seeds` stages share:

    Identification  where a point's reference We and masks come from: β and the preset (eq. 2), the
                    identification method and P_SR (eqs. 3-6)
    Point           one study setting: a repair method of nlsr_core.repair.registry.REPAIRS, its settings object
                    and the identification it reads; its record and label are derived from the registry
    PointBuilder    the adapter of a Point from the pipeline's artifacts. Masks come from stored identification
                    statistics (`masks_from_stats`, no model pass); only a Point that changes the reference (β,
                    preset) or the identification method needs a new statistics pass, done once and reused.
    choose_point    the calibrate rule: the best task accuracy among settings whose HS meets the target.
    check_disjoint  refuses a calibration split that shares a prompt with the test split.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from nlsr_core.config import AmplifyConfig, IdentifyConfig, NlsrConfig
from nlsr_core.errors import NlsrError
from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.amplify import extrapolate
from nlsr_core.method.neurons import masks_and_summary
from nlsr_core.repair.registry import REPAIRS, Repair, RepairInputs, get_repair


@dataclass(frozen=True)
class Identification:
    """Where a point's reference and masks come from: amplify.beta and nlsr.preset make We (eq. 2), the
    identification method (identify.identifier) and P_SR (identify.sparsity) its masks (eqs. 3-6)."""

    sparsity: float = IdentifyConfig.sparsity      # P_SR
    identifier: str = IdentifyConfig.identifier    # identification method
    beta: float = AmplifyConfig.beta               # amplify.beta of the reference (eq. 2)
    preset: str = NlsrConfig.preset                # amplification, r*, mask scope and similarity direction

    def record(self, needs: tuple[str, ...]) -> dict:
        """The fields a repair with these `needs` depends on: β and preset for a reference, all four for masks."""
        if "masks" in needs:
            return dataclasses.asdict(self)
        return {"beta": self.beta, "preset": self.preset} if "reference" in needs else {}


_IDENTIFICATION = tuple(f.name for f in dataclasses.fields(Identification))


@dataclass(frozen=True)
class Point:
    """One study setting: `method` (a key of REPAIRS), its `settings` (REPAIRS[method].settings; None -> the
    defaults) and the `identification` it reads. A settings field that Identification also has (the preset) takes
    the identification's value, so the two cannot disagree. Build variants with `Point.of` and `replace`."""

    method: str = "nlsr"
    settings: Any = None
    identification: Identification = Identification()

    def __post_init__(self):
        repair = get_repair(self.method)
        shared = {f.name: getattr(self.identification, f.name) for f in dataclasses.fields(repair.settings)
                  if f.name in _IDENTIFICATION}
        if self.settings is None:
            object.__setattr__(self, "settings", repair.settings(**shared))
        if not isinstance(self.settings, repair.settings):
            raise NlsrError(f"point method '{self.method}': settings {type(self.settings).__name__}; expected "
                            f"{repair.settings.__name__}")
        for name, value in shared.items():
            if getattr(self.settings, name) != value:
                raise NlsrError(f"point {self.method}: settings {name} '{getattr(self.settings, name)}' differs from "
                                f"the identification's '{value}'; expected one value")

    @classmethod
    def of(cls, method: str = "nlsr", **changes) -> Point:
        """Point(method) with `changes` (settings or identification fields by name), e.g.
        Point.of(sparsity=0.5, layer_prune=0.0) or Point.of("safelora", tau=0.3)."""
        return cls(method).replace(**changes)

    @property
    def repair(self) -> Repair:
        return REPAIRS[self.method]

    def replace(self, **changes) -> Point:
        """A copy with `changes` routed by name: `method`, Identification fields, settings fields (the preset goes to
        both). Changing the method to one with other settings starts from that method's defaults."""
        method = changes.pop("method", self.method)
        repair = get_repair(method)
        identification = dataclasses.replace(
            self.identification, **{k: changes.pop(k) for k in list(changes) if k in _IDENTIFICATION})
        names = {f.name for f in dataclasses.fields(repair.settings)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise NlsrError(f"point {method}: unknown setting '{unknown[0]}'; expected one of "
                            f"{', '.join(sorted(names | set(_IDENTIFICATION)))}")
        kept = dataclasses.asdict(self.settings) if isinstance(self.settings, repair.settings) else {}
        shared = {k: getattr(identification, k) for k in names if k in _IDENTIFICATION}
        return Point(method, repair.settings(**{**kept, **shared, **changes}), identification)

    def record(self) -> dict:
        """The fields that determine this point's adapter: method, its knobs and the identification it reads."""
        return {**self.repair.record(self.settings),
                **self.identification.record(self.repair.needs_for(self.settings))}

    @property
    def label(self) -> str:
        """Short name: the method, P_SR for a masked repair, the knobs the registry shows (nlsr_core.repair.registry
        Repair.label_parts), and the identification method and β where they differ from the defaults."""
        parts = [self.method]
        masked = "masks" in self.repair.needs_for(self.settings)
        if masked:
            parts.append(f"P_SR={self.identification.sparsity:g}")
        parts += self.repair.label_parts(self.settings)
        if masked:
            default = Identification()
            if self.identification.identifier != default.identifier:
                parts.append(self.identification.identifier)
            if self.identification.beta != default.beta:
                parts.append(f"beta={self.identification.beta:g}")
        return " ".join(parts)


GRID_AXES = ("sparsity", "layer_prune", "delta", "selection", "seed")  # the realign knobs a grid may sweep


# The controls' frontier grids: params key of the `frontier` section -> (repair method, the knob its values set,
# knobs held fixed). A method's grid is one line here and one list in params.yaml.
CONTROL_GRIDS: dict[str, tuple[str, str, dict]] = {
    "grid_random_masks": ("random-masks", "sparsity", {}),
    "grid_lambda": ("interpolate", "lam", {}),
    "grid_lambda_aligned": ("interpolate", "lam", {"target": "aligned"}),
    "grid_gamma": ("safety-vector", "gamma", {}),
    "grid_safemerge_tau": ("safemerge", "tau", {}),
    "grid_dense_ratio": ("antidote", "dense_ratio", {"scoring": "wanda"}),
    "grid_dense_ratio_magnitude": ("antidote", "dense_ratio", {"scoring": "magnitude"}),
    "grid_dg_hard_scale": ("dg-hard", "scale", {}),
}


def control_points(base: Point, grids: dict[str, Iterable[float]]) -> list[Point]:
    """The controls NLSR is compared with, one point per value of each grid of CONTROL_GRIDS ({params key:
    values}): random masks at each P_SR (so the kept fraction matches NLSR's point of the same P_SR),
    interpolation toward We and toward Wa per λ, safety-vector addition per γ, SafeMERGE per τ, Antidote per ρ
    (Wanda-scored and data-free), DG-Hard per c; every other knob at `base`'s value or its default."""
    unknown = [k for k in grids if k not in CONTROL_GRIDS]
    if unknown:
        raise NlsrError(f"control grid '{unknown[0]}': expected one of {', '.join(CONTROL_GRIDS)}")
    points = []
    for key, values in grids.items():
        method, knob_name, fixed = CONTROL_GRIDS[key]
        points += [base.replace(method=method, **fixed, **{knob_name: float(v)}) for v in values]
    return points


def grid_points(base: Point, axes: dict[str, Iterable], safelora_taus: Iterable[float] = ()) -> list[Point]:
    """Every combination of the `axes` values (Point fields from GRID_AXES; a missing or empty axis keeps
    `base`'s value) on top of `base`, then one SafeLoRA point per τ; duplicates dropped, order kept."""
    import itertools

    unknown = [k for k in axes if k not in GRID_AXES]
    if unknown:
        raise NlsrError(f"grid axis '{unknown[0]}': expected one of {', '.join(GRID_AXES)}")
    names = [k for k in GRID_AXES if list(axes.get(k) or [])]
    values = [list(axes[k]) for k in names]
    points = [base.replace(**dict(zip(names, combo))) for combo in itertools.product(*values)]
    points += [Point.of("safelora", tau=float(t)) for t in safelora_taus]
    return list(dict.fromkeys(points))


# The identification methods of the ablation table (the paper's Table 5: Random, Wanda, SNIP, Preference SNIP, Ours)
IDENTIFIERS = ("lowrank", "wanda", "snip", "preference-snip", "random")


def ablation_points(base: Point, seeds: Iterable[int]) -> list[tuple[str, str, Point]]:
    """(group, name, point) for `reports/ablations.md`: each row changes one thing of the pipeline's setting."""
    ident, settings = base.identification, base.settings
    other_preset = "official-code" if ident.preset == "paper" else "paper"
    rows = [("setting", "pipeline setting", base),
            ("preset", f"preset {other_preset}", base.replace(preset=other_preset))]
    rows += [("identification", f"identify {m}", base.replace(identifier=m))
             for m in IDENTIFIERS if m != ident.identifier]
    if ident.beta != 0.0:
        rows.append(("amplification", "no amplification (beta 0)", base.replace(beta=0.0)))
    other = "threshold" if settings.selection == "adaptive" else "adaptive"
    rows.append(("selection", f"{other} selection", base.replace(selection=other)))
    rows += [("seed", f"seed {s}", base.replace(seed=int(s))) for s in seeds]
    return rows


class PointBuilder:
    """Builds the adapter of each Point for one fine-tuned adapter.

    `pipeline` is the Point whose β, preset and identification method produced `reference` and `stats` (the
    pipeline's own artifacts); `collect(reference, method) -> stats` runs a statistics pass for any other
    reference or method (it loads the model, so results are memoised per (β, preset, method)); `realign_norms()`
    gives Wt's realignment norms (a model pass, done once, on the first point that needs them).
    """

    def __init__(self, finetuned: Adapter, aligned: Adapter, reference: Adapter, stats: dict, pipeline: Point,
                 collect: Callable[[Adapter, str], dict] | None = None,
                 realign_norms: Callable[[], dict] | None = None):
        self.finetuned, self.aligned, self.pipeline, self.collect = finetuned, aligned, pipeline, collect
        self.realign_norms, self._norms = realign_norms, None
        ident = pipeline.identification
        self._references = {(ident.beta, ident.preset): reference}
        self._stats = {(ident.beta, ident.preset, ident.identifier): stats}

    def reference(self, ident: Identification) -> Adapter:
        key = (ident.beta, ident.preset)
        if key not in self._references:
            self._references[key] = extrapolate(self.aligned, ident.beta, ident.preset)
        return self._references[key]

    def stats(self, ident: Identification) -> dict:
        key = (ident.beta, ident.preset, ident.identifier)
        if key not in self._stats:
            if self.collect is None:
                raise NlsrError(f"a point needs identification statistics for method {ident.identifier}, "
                                f"beta {ident.beta:g}, preset {ident.preset}; no model is available to collect them")
            self._stats[key] = self.collect(self.reference(ident), ident.identifier)
        return self._stats[key]

    def norms(self) -> dict:
        if self._norms is None:
            if self.realign_norms is None:
                raise NlsrError("a point needs the realignment norms of Wt (antidote, scoring wanda); no "
                                "realignment set is available to compute them")
            self._norms = self.realign_norms()
        return self._norms

    def build(self, p: Point) -> tuple[Adapter, dict]:
        """(adapter, summary with patched_count / module_count and, for a masked repair, the masks' kept
        fraction), through the registry: the point's repair gets exactly the inputs it needs."""
        needs, ident = p.repair.needs_for(p.settings), p.identification
        inputs, extra = {"finetuned": self.finetuned}, {}
        if "reference" in needs:
            inputs["reference"] = self.reference(ident)
        if "aligned" in needs:
            inputs["aligned"] = self.aligned
        if "norms" in needs:
            inputs["norms"] = self.norms()
        if "masks" in needs:   # masks are made from the statistics of the point's reference
            inputs["masks"], mask_summary = masks_and_summary(self.reference(ident), self.stats(ident),
                                                              ident.sparsity, ident.preset, ident.identifier)
            extra["kept_fraction"] = mask_summary["kept_fraction"]
        result = p.repair.run(RepairInputs(**inputs), p.settings)
        return result.adapter, {**result.summary(), **extra}


# --------------------------------------------------------------------------------------------- calibrate
_TARGET = re.compile(r"^\s*(?:(?P<ref>aligned|finetuned)\s*(?P<op>[+*])\s*)?(?P<num>\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Target:
    """An HS ceiling: `aligned+5` (HS(aligned) + 5 points), `finetuned*0.5` (half of HS(finetuned)) or `20`
    (20 %), all measured on the calibration split."""

    text: str
    reference: str | None
    op: str | None
    value: float

    def ceiling(self, reference_hs: dict[str, float]) -> float:
        if self.reference is None:
            return self.value
        base = reference_hs[self.reference]
        return base + self.value if self.op == "+" else base * self.value


def parse_target(text: str) -> Target:
    m = _TARGET.match(text or "")
    if not m:
        raise NlsrError(f"calibrate --target '{text}': expected aligned+N, finetuned*F or a number N (HS in %)")
    return Target(text.strip(), m["ref"], m["op"], float(m["num"]))


def choose_point(results: list[dict], ceiling: float) -> tuple[dict, bool]:
    """(chosen result, target met). Among NLSR results with HS ≤ ceiling: the highest FA, then the lowest HS,
    then the smallest intervention (higher P_SR, then higher P_L). When none meets the ceiling, the lowest HS
    (then the highest FA) is returned with met = False, so the caller reports the miss instead of hiding it.

    A result is {"point": Point.record(), "hs": pct, "fa": pct, ...} with percentages (None = not measured)."""
    nlsr = [r for r in results if r["point"]["method"] == "nlsr" and r["hs"] is not None and r["fa"] is not None]
    if not nlsr:
        raise NlsrError("calibrate: no NLSR setting was scored (expected at least one grid point)")
    met = [r for r in nlsr if r["hs"] <= ceiling + 1e-9]
    if met:
        return max(met, key=lambda r: (r["fa"], -r["hs"], r["point"]["sparsity"], r["point"]["layer_prune"])), True
    return min(nlsr, key=lambda r: (r["hs"], -r["fa"])), False


def check_disjoint(calibration: dict[str, list[str]], test: dict[str, list[str]]) -> None:
    """Refuse a calibration split that shares a prompt (whitespace/case-normalised) with the test split."""
    from nlsr_core.data import norm_text

    test_prompts = {norm_text(p): name for name, prompts in test.items() for p in prompts}
    for name, prompts in calibration.items():
        shared = [p for p in prompts if norm_text(p) in test_prompts]
        if shared:
            raise NlsrError(f"calibration split '{name}' shares {len(shared)} prompt(s) with the test split "
                            f"'{test_prompts[norm_text(shared[0])]}' (first: {shared[0][:60]!r}); "
                            f"expected disjoint splits (data.sizes.calib_harmful / task_calib)")


def grid_record(points) -> dict:
    """axis -> the distinct values the NLSR points sweep, as text (the run's params)."""
    nlsr = [p for p in points if p.method == "nlsr"]
    return {axis: [str(v) for v in sorted({p.record()[axis] for p in nlsr}, key=str)] for axis in GRID_AXES}


def params_yaml(chosen: dict, target: str, ceiling: float, met: bool) -> str:
    """The calibrated setting in params.yaml's schema, with a comment saying whether the target was met."""
    import yaml

    head = (f"# chosen by `nlsr calibrate` on the calibration split: target HS <= {ceiling:.1f} ({target}), "
            f"{'met' if met else 'NOT met'}\n")
    return head + yaml.safe_dump(chosen, sort_keys=False)
