"""Training-free repair baselines that NLSR must beat (docs/DESIGN.md §4.8, §8); like NLSR they read adapters only.

    interpolate     W't = Wt + λ·(We − Wt) on every LoRA factor (A and B), no masks: the blind revert toward the
                    reference We. λ = 0 keeps Wt, λ = 1 gives We. With realign.interpolate_target = aligned the
                    target is the aligned adapter Wa instead: W't = Wt + λ·(Wa − Wt) (then the method reads Wa,
                    not We: the registry's `needs_for`).
    random-masks    NLSR's selection (eqs. 8-10) and transplant (eq. 11) with masks drawn uniformly at random, keeping
                    exactly as many entries per tensor as the identified masks keep (the paper's "Random", Table 5).
    safety-vector   ΔW't = ΔWt + γ·ΔWa (the adapter-level analogue of RESTA's safety-vector addition, Bhardwaj et
                    al. 2024). In product space, with s = α/r the LoRA scaling,
                        s_t·B_t A_t + γ·s_a·B_a A_a  =  s_t · [B_t | γ(s_a/s_t)·B_a] · [A_t ; A_a],
                    so the result is exact as a LoRA of rank r_t + r_a with the fine-tuned adapter's scaling
                    (lora_alpha' = s_t·(r_t + r_a)). γ = 0 keeps ΔWt. `stacked_lora` builds that concatenation for
                    any per-module pair of coefficients (SafeMERGE's merge uses it too).

Each returns a `RepairResult` (`.adapter`, per-module `.records`, `.summary()`), like `realign.realign` and SafeLoRA;
nlsr_core.repair.registry registers them with their settings (`InterpolateSettings`, `SafetyVectorSettings`,
NLSR's `RealignParams` for random masks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nlsr_core.lora.adapters import Adapter, check_compatible
from nlsr_core.config import check_knobs, check_value, knob
from nlsr_core.method.realign import (ModuleAudit, RealignError, RealignParams, RepairResult, check_masks,
                                     check_same_scaling, frobenius_inner, realign)


@dataclass(frozen=True)
class BlendRecord(ModuleAudit):
    """Per-module audit of a baseline that touches every module: the module and its relative change."""

    module: str
    relative_change: float     # ‖ΔW't − ΔWt‖_F / ‖ΔWt‖_F (0 when ΔWt = 0)
    patched: bool = True


@dataclass(frozen=True)
class InterpolateSettings:
    """λ of `interpolate` (realign.interpolate_lambda, in [0, 1]) and its target (realign.interpolate_target:
    reference We | aligned Wa)."""

    lam: float = knob("realign.interpolate_lambda", short="lambda", always=True)
    target: str = knob("realign.interpolate_target", short="toward")

    def __post_init__(self):
        check_knobs(self, error=RealignError)


@dataclass(frozen=True)
class SafetyVectorSettings:
    """γ of `safety-vector` (realign.safety_vector_gamma, ≥ 0)."""

    gamma: float = knob("realign.safety_vector_gamma", short="gamma", always=True)

    def __post_init__(self):
        check_knobs(self, error=RealignError)


def _frobenius(b: torch.Tensor, a: torch.Tensor) -> float:
    """‖B A‖_F from the factors (eq. 8's Gram form), never a d_out×d_in matrix."""
    b, a = b.double(), a.double()
    return math.sqrt(max(0.0, float(frobenius_inner(b, a, b, a))))


def _relative(before: Adapter, after: Adapter, module: str) -> float:
    """‖ΔW_after − ΔW_before‖_F / ‖ΔW_before‖_F of one module: the difference is the LoRA product
    [s'B' | −sB]·[A' ; A]."""
    diff = _frobenius(torch.cat([after.b(module) * after.scaling, -before.b(module) * before.scaling], 1),
                      torch.cat([after.a(module), before.a(module)], 0))
    base = before.scaling * _frobenius(before.b(module), before.a(module))
    return diff / base if base > 0 else 0.0


def interpolate(finetuned: Adapter, reference: Adapter, lam: float, role: str = "reference") -> RepairResult:
    """W't = Wt + λ·(W − Wt) on every factor tensor, W = `reference` (We, or Wa with role "aligned"); shapes
    (r×d_in, d_out×r) unchanged."""
    lam = float(check_value("realign.interpolate_lambda", lam, error=RealignError))
    check_compatible(finetuned, reference, ("finetuned", role))
    check_same_scaling(finetuned, reference, ("finetuned", role))
    tensors = {k: torch.lerp(t, reference.tensors[k].to(t.dtype), lam) if lam else t
               for k, t in finetuned.tensors.items()}
    out = finetuned.replace(tensors)
    return RepairResult(out, [BlendRecord(m, _relative(finetuned, out, m)) for m in finetuned.modules])


def random_masks_like(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """For each tensor, a uniformly random bool mask with exactly as many True entries as `masks[key]` (a random
    permutation per tensor, drawn in sorted key order from one generator seeded with `seed`)."""
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for key in sorted(masks):
        mask = masks[key]
        kept = int(mask.sum())
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=gen)[:kept]] = True
        out[key] = flat.view(mask.shape)
    return out


def random_mask_realign(finetuned: Adapter, reference: Adapter, masks: dict[str, torch.Tensor],
                        params: RealignParams) -> RepairResult:
    """NLSR (eqs. 8-11) with masks drawn at random at the identified masks' kept count per tensor; `params.seed`
    seeds both the masks and the Bernoulli draws."""
    check_masks(masks, finetuned)
    if not any(bool(m.any()) for m in masks.values()):
        raise RealignError("random-masks: the identified masks keep no entry; expected a P_SR that keeps at least "
                           "one entry per adapter")
    return realign(finetuned, reference, random_masks_like(masks, params.seed), params)


def stacked_lora(finetuned: Adapter, other: Adapter, coefficients: dict[str, tuple[float, float]]) -> Adapter:
    """ΔW'_m = c_t·ΔWt_m + c_o·ΔWo_m for each module m, {m: (c_t, c_o)}, exactly, as one LoRA of rank r_t + r_o
    with the fine-tuned adapter's scaling s_t:
        c_t·s_t·B_t A_t + c_o·s_o·B_o A_o = s_t · [c_t·B_t | c_o(s_o/s_t)·B_o] · [A_t ; A_o]
    (A' (r_t+r_o)×d_in, B' d_out×(r_t+r_o), lora_alpha' = s_t·(r_t + r_o), or s_t·√(r_t + r_o) with rsLoRA). A
    module with c_o = 0 gets zero rows in A' and zero columns in B' (ΔW'_m = c_t·ΔWt_m exactly): a PEFT adapter has
    one rank, so every module is written at r_t + r_o. c_t = 1 keeps B_t's bits. The caller checks that the two
    adapters wrap the same modules (check_compatible)."""
    tensors = {}
    for m in finetuned.modules:
        c_t, c_o = coefficients[m]
        a_t, b_t = finetuned.a(m), finetuned.b(m)
        a_o, b_o = other.a(m).to(a_t.dtype), other.b(m).to(b_t.dtype)
        if c_o == 0:
            a_o, b_o = torch.zeros_like(a_o), torch.zeros_like(b_o)
        else:
            b_o = (c_o * other.scaling / finetuned.scaling) * b_o    # (c_o·s_o)/s_t: safety-vector's bytes as before
        tensors[f"{m}.lora_A.weight"] = torch.cat([a_t, a_o], 0)
        tensors[f"{m}.lora_B.weight"] = torch.cat([b_t if c_t == 1 else c_t * b_t, b_o], 1)
    rank = finetuned.rank + other.rank
    config = {"r": rank, "lora_alpha": finetuned.scaling * (math.sqrt(rank) if finetuned.config.get("use_rslora")
                                                            else rank)}
    return Adapter({**finetuned.config, **config}, tensors, None)


def safety_vector(finetuned: Adapter, aligned: Adapter, gamma: float) -> RepairResult:
    """ΔW't = ΔWt + γ·ΔWa, exactly, as a LoRA of rank r_t + r_a (module docstring); γ ≥ 0."""
    gamma = float(check_value("realign.safety_vector_gamma", gamma, error=RealignError))
    check_compatible(finetuned, aligned, ("finetuned", "aligned"))
    out = stacked_lora(finetuned, aligned, {m: (1.0, gamma) for m in finetuned.modules})
    return RepairResult(out, [BlendRecord(m, _relative(finetuned, out, m)) for m in finetuned.modules])
