"""Realign operating points: many realigned adapters from one identification pass, scored side by side.

NLSR's effect on a small model is a trade-off, not a point (docs/DESIGN.md §5.1): a larger safety region (lower P_SR) and
more patched modules (lower P_L) restore more safety and cost more task accuracy. This module holds what the
`frontier`, `calibrate` and `ablate` stages share:

    Point          one realign setting: P_SR, P_L, δ, selection, τ, seed, preset, identification method and β
                   of the reference (NLSR), or the SafeLoRA threshold (method "safelora")
    PointBuilder   the adapter of a Point from the pipeline's artifacts. Masks come from stored identification
                   statistics (`masks_from_stats`, no model pass); only a Point that changes the reference (β,
                   preset) or the identification method needs a new statistics pass, done once and reused.
    choose_point   the calibrate rule: the best task accuracy among settings whose HS meets the target.
    check_disjoint refuses a calibration split that shares a prompt with the test split.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from nlsr_core.lora.adapters import Adapter
from nlsr_core.config import AmplifyConfig, IdentifyConfig, NlsrConfig, RealignConfig, SafeloraConfig
from nlsr_core.errors import NlsrError


@dataclass(frozen=True)
class Point:
    """One realign setting. NLSR fields follow `realign.*` / `identify.*` / `amplify.beta` / `nlsr.preset`."""

    method: str = "nlsr"                           # one of METHODS
    sparsity: float = IdentifyConfig.sparsity      # P_SR
    layer_prune: float = RealignConfig.layer_prune  # P_L
    delta: float = RealignConfig.delta             # δ (eq. 9)
    selection: str = RealignConfig.selection       # adaptive (eqs. 9-10) | threshold
    tau: float = RealignConfig.tau                 # τ of threshold selection
    seed: int = RealignConfig.seed                 # Bernoulli draws
    preset: str = NlsrConfig.preset                # amplification, r*, mask scope and similarity direction
    identifier: str = IdentifyConfig.identifier    # identification method
    beta: float = AmplifyConfig.beta               # amplify.beta of the reference (eq. 2)
    safelora_tau: float = SafeloraConfig.tau       # SafeLoRA threshold (method safelora)
    lam: float = RealignConfig.interpolate_lambda  # λ (method interpolate)
    gamma: float = RealignConfig.safety_vector_gamma  # γ (method safety-vector)

    def record(self) -> dict:
        """The fields that determine this point's adapter."""
        if self.method == "safelora":
            return {"method": "safelora", "safelora_tau": self.safelora_tau}
        if self.method == "interpolate":
            return {"method": "interpolate", "lam": self.lam, "beta": self.beta, "preset": self.preset}
        if self.method == "safety-vector":
            return {"method": "safety-vector", "gamma": self.gamma}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("safelora_tau", "lam", "gamma")}

    @property
    def label(self) -> str:
        """Short name: P_SR and P_L always, the other knobs only where they differ from the defaults."""
        if self.method == "safelora":
            return f"safelora tau={self.safelora_tau:g}"
        if self.method == "interpolate":
            return f"interpolate lambda={self.lam:g}"
        if self.method == "safety-vector":
            return f"safety-vector gamma={self.gamma:g}"
        text = f"{self.method} P_SR={self.sparsity:g} P_L={self.layer_prune:g}"
        default = Point()
        for name, short in (("delta", "delta"), ("selection", ""), ("seed", "seed"), ("preset", ""),
                            ("identifier", ""), ("beta", "beta")):
            value = getattr(self, name)
            if value != getattr(default, name):
                text += f" {short}={value:g}" if short else f" {value}"
        return text


GRID_AXES = ("sparsity", "layer_prune", "delta", "selection", "seed")  # the realign knobs a grid may sweep
# Repair methods a point may use: NLSR, SafeLoRA and the training-free controls (nlsr_core.repair.baselines).
METHODS = ("nlsr", "safelora", "random-masks", "interpolate", "safety-vector")


def control_points(base: Point, random_sparsity: Iterable[float] = (), lambdas: Iterable[float] = (),
                   gammas: Iterable[float] = ()) -> list[Point]:
    """The controls NLSR is compared with: random masks at each P_SR (else the pipeline's setting, so the kept
    fraction matches NLSR's point of the same P_SR), interpolation per λ, safety-vector addition per γ."""
    points = [dataclasses.replace(base, method="random-masks", sparsity=float(s)) for s in random_sparsity]
    points += [dataclasses.replace(base, method="interpolate", lam=float(v)) for v in lambdas]
    points += [dataclasses.replace(base, method="safety-vector", gamma=float(v)) for v in gammas]
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
    points = [dataclasses.replace(base, **dict(zip(names, combo))) for combo in itertools.product(*values)]
    points += [Point(method="safelora", safelora_tau=float(t)) for t in safelora_taus]
    return list(dict.fromkeys(points))


# The identification methods of the ablation table (the paper's Table 5: Random, Wanda, SNIP, Preference SNIP, Ours)
IDENTIFIERS = ("lowrank", "wanda", "snip", "preference-snip", "random")


def ablation_points(base: Point, seeds: Iterable[int]) -> list[tuple[str, str, Point]]:
    """(group, name, point) for `reports/ablations.md`: each row changes one thing of the pipeline's setting."""
    other_preset = "official-code" if base.preset == "paper" else "paper"
    rows = [("setting", "pipeline setting", base),
            ("preset", f"preset {other_preset}", dataclasses.replace(base, preset=other_preset))]
    rows += [("identification", f"identify {m}", dataclasses.replace(base, identifier=m))
             for m in IDENTIFIERS if m != base.identifier]
    if base.beta != 0.0:
        rows.append(("amplification", "no amplification (beta 0)", dataclasses.replace(base, beta=0.0)))
    other = "threshold" if base.selection == "adaptive" else "adaptive"
    rows.append(("selection", f"{other} selection", dataclasses.replace(base, selection=other)))
    rows += [("seed", f"seed {s}", dataclasses.replace(base, seed=int(s))) for s in seeds]
    return rows


class PointBuilder:
    """Builds the adapter of each Point for one fine-tuned adapter.

    `pipeline` is the Point whose β, preset and identification method produced `reference` and `stats` (the
    pipeline's own artifacts); `collect(reference, method) -> stats` runs a statistics pass for any other
    reference or method (it loads the model, so results are memoised per (β, preset, method)).
    """

    def __init__(self, finetuned: Adapter, aligned: Adapter, reference: Adapter, stats: dict, pipeline: Point,
                 collect: Callable[[Adapter, str], dict] | None = None):
        self.finetuned, self.aligned, self.pipeline, self.collect = finetuned, aligned, pipeline, collect
        self._references = {(pipeline.beta, pipeline.preset): reference}
        self._stats = {(pipeline.beta, pipeline.preset, pipeline.identifier): stats}

    def reference(self, p: Point) -> Adapter:
        from nlsr_core.method.amplify import extrapolate

        key = (p.beta, p.preset)
        if key not in self._references:
            self._references[key] = extrapolate(self.aligned, p.beta, p.preset)
        return self._references[key]

    def stats(self, p: Point) -> dict:
        key = (p.beta, p.preset, p.identifier)
        if key not in self._stats:
            if self.collect is None:
                raise NlsrError(f"point {p.label} needs identification statistics for method {p.identifier}, "
                                f"beta {p.beta:g}, preset {p.preset}; no model is available to collect them")
            self._stats[key] = self.collect(self.reference(p), p.identifier)
        return self._stats[key]

    def build(self, p: Point) -> tuple[Adapter, dict]:
        """(adapter, summary with patched_count / module_count and, for NLSR, the masks' kept fraction)."""
        from nlsr_core.repair import baselines

        if p.method not in METHODS:
            raise NlsrError(f"point method '{p.method}': expected one of {', '.join(METHODS)}")
        if p.method == "safelora":
            from nlsr_core.repair.safelora import SafeLoraParams, safelora

            result = safelora(self.finetuned, self.aligned, SafeLoraParams(tau=p.safelora_tau))
            return result.adapter, result.summary()
        if p.method == "interpolate":
            result = baselines.interpolate(self.finetuned, self.reference(p), p.lam)
            return result.adapter, result.summary()
        if p.method == "safety-vector":
            result = baselines.safety_vector(self.finetuned, self.aligned, p.gamma)
            return result.adapter, result.summary()
        from nlsr_core.method.neurons import masks_and_summary
        from nlsr_core.method.realign import RealignParams, realign

        ref = self.reference(p)
        masks, mask_summary = masks_and_summary(ref, self.stats(p), p.sparsity, p.preset, p.identifier)
        params = RealignParams(preset=p.preset, selection=p.selection, layer_prune=p.layer_prune, delta=p.delta,
                               tau=p.tau, seed=p.seed)
        repair = realign if p.method == "nlsr" else baselines.random_mask_realign
        result = repair(self.finetuned, ref, masks, params)
        return result.adapter, {**result.summary(), "kept_fraction": mask_summary["kept_fraction"]}


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
    return {axis: [str(v) for v in sorted({getattr(p, axis) for p in nlsr}, key=str)] for axis in GRID_AXES}


def params_yaml(chosen: dict, target: str, ceiling: float, met: bool) -> str:
    """The calibrated setting in params.yaml's schema, with a comment saying whether the target was met."""
    import yaml

    head = (f"# chosen by `nlsr calibrate` on the calibration split: target HS <= {ceiling:.1f} ({target}), "
            f"{'met' if met else 'NOT met'}\n")
    return head + yaml.safe_dump(chosen, sort_keys=False)
