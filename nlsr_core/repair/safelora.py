"""SafeLoRA baseline (Hsu et al. 2024): training-free projection of fine-tuned LoRA updates onto the safety subspace.

Per LoRA module, with V = ΔW_a = s_a·B_a A_a (the aligned adapter's update, d_out×d_in) and ΔW_t = s_t·B_t A_t:
    if cos(C·ΔW_t, ΔW_t) < τ:  B_t ← C·B_t        (so ΔW_t ← C·ΔW_t; A_t and every other module untouched)

Decision on C. SafeLoRA writes C = V Vᵀ / ‖V‖_F ("frobenius" here, what its code computes). That matrix is not a
projection: C² = V Vᵀ V Vᵀ / ‖V‖_F² ≠ C unless V has a single non-zero singular value equal to ‖V‖_F, so "the
component of ΔW_t in the safety subspace" is rescaled by σ_i²/‖V‖_F per direction. The default here is the
orthogonal projection onto the column space of V, C = U Uᵀ with U the left singular vectors of V with non-zero
singular values ("orthogonal"), which is idempotent and symmetric and is what the paper's prose describes.
`projection="frobenius"` keeps the literal formula for comparison.

Everything uses the rank-r factors (never a d_out×d_out or d_out×d_in matrix):
    A_aᵀ = Q R (QR, d_in×r)  =>  V = s_a·B_a Rᵀ Qᵀ;  svd(B_a Rᵀ) = U Σ Wᵀ  =>  col(V) = span(U[:, Σ > tol])
    C·B_t = U (Uᵀ B_t)                                        (orthogonal)
    C·B_t = s_a² B_a (A_a A_aᵀ)(B_aᵀ B_t) / ‖V‖_F             (frobenius, ‖V‖_F from r×r Grams)
    cos(C ΔW_t, ΔW_t) = ⟨(C B_t)A_t, B_t A_t⟩_F / (‖(C B_t)A_t‖_F ‖B_t A_t‖_F)   with ⟨B₁A₁,B₂A₂⟩ = Σ (B₁ᵀB₂)⊙(A₁A₂ᵀ)
The scaling s_t cancels in the cosine; an all-zero ΔW_t counts as cos = 1 (nothing to project).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from nlsr_core.lora.adapters import Adapter, check_compatible
from nlsr_core.config import check_knobs, knob
from nlsr_core.method.realign import (ModuleAudit, RealignError, RepairResult, cosine_from_products,
                                     frobenius_inner)

# Singular values below this fraction of the largest one are treated as zero when taking col(V).
RANK_RTOL = 1e-6


@dataclass(frozen=True)
class SafeLoraParams:
    """SafeLoRA's settings: the cosine threshold τ (safelora.tau) and the projection (safelora.projection)."""

    tau: float = knob("safelora.tau", "--safelora-tau", "--safelora_tau", short="tau", always=True)
    projection: str = knob("safelora.projection", "--safelora-projection", "--safelora_projection", short="")

    def __post_init__(self):
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau)):
            raise RealignError(f"safelora.tau (τ) = {self.tau}: expected a finite number")
        check_knobs(self, error=RealignError)


@dataclass(frozen=True)
class SafeLoraRecord(ModuleAudit):
    module: str
    cosine: float
    projected: bool

    @property
    def patched(self) -> bool:
        return self.projected


def column_basis(a_a: torch.Tensor, b_a: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis U (d_out×q, fp64) of col(B_a A_a), q ≤ r, from the factors: a_a r×d_in, b_a d_out×r."""
    _, r_fac = torch.linalg.qr(a_a.double().T)                 # A_aᵀ = Q R, R: r×r
    u, s, _ = torch.linalg.svd(b_a.double() @ r_fac.T, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return u[:, :0]
    return u[:, s > RANK_RTOL * s[0]]


def _orthogonal(a_a: torch.Tensor, b_a: torch.Tensor, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    u = column_basis(a_a, b_a)
    return lambda b: u @ (u.T @ b)


def _frobenius(a_a: torch.Tensor, b_a: torch.Tensor, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    a, b = a_a.double(), b_a.double()
    gram_a = a @ a.T
    norm_v = scale * math.sqrt(max(0.0, float(((b.T @ b) * gram_a).sum())))
    if norm_v == 0.0:
        return lambda bt: torch.zeros_like(bt)
    return lambda bt: (scale * scale / norm_v) * (b @ (gram_a @ (b.T @ bt)))


# name -> (A_a, B_a, s_a) -> (B -> C·B)
PROJECTIONS: dict[str, Callable] = {"orthogonal": _orthogonal, "frobenius": _frobenius}


def projector(a_a: torch.Tensor, b_a: torch.Tensor, scale: float, projection: str = "orthogonal"):
    """The map B ↦ C·B (fp64) for V = scale·B_a A_a."""
    return PROJECTIONS[projection](a_a, b_a, scale)


def projected_cosine(apply_c, a_t: torch.Tensor, b_t: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(cos(C ΔW_t, ΔW_t), C·B_t) for ΔW_t ∝ B_t A_t, with r×r intermediates only."""
    a, b = a_t.double(), b_t.double()
    cb = apply_c(b)
    # ΔW_t = 0 gives C ΔW_t = 0 too, and two empty products count as cos = 1: the module is left alone.
    cos = cosine_from_products(float(frobenius_inner(cb, a, b, a)), float(frobenius_inner(cb, a, cb, a)),
                               float(frobenius_inner(b, a, b, a)))
    return cos, cb


def safelora(finetuned: Adapter, aligned: Adapter, params: SafeLoraParams) -> RepairResult:
    """Project B_t of every module whose cos(C ΔW_t, ΔW_t) < τ; other modules keep their tensors bitwise."""
    check_compatible(finetuned, aligned, ("finetuned", "aligned"))
    tensors = dict(finetuned.tensors)
    records = []
    for m in finetuned.modules:
        apply_c = projector(aligned.a(m), aligned.b(m), aligned.scaling, params.projection)
        cos, cb = projected_cosine(apply_c, finetuned.a(m), finetuned.b(m))
        project = cos < params.tau
        if project:
            key = f"{m}.lora_B.weight"
            tensors[key] = cb.to(finetuned.tensors[key].dtype)
        records.append(SafeLoraRecord(m, cos, bool(project)))
    return RepairResult(finetuned.replace(tensors), records)
