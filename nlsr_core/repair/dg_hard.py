"""DG-Hard (arXiv 2605.20296, "Spectral Unforgetting"; code github.com/BrickleRex/dghard, `dghard/repair/dg_hard.py`):
data-free Donoho–Gavish optimal hard thresholding of the fine-tuned update's singular values.

Per LoRA module, with ΔWt = s·B A (d_out×d_in, rank ≤ r; B d_out×r, A r×d_in, s = α/r):

    ΔWt = s · U diag(σ) Vᵀ                          (σ: the q ≤ r singular values of B A, descending)
    β   = min(d_out, d_in) / max(d_out, d_in)
    θ   = c · ω(β) · median(σ)                      (Gavish & Donoho 2014, unknown noise level)
    ΔW't = s · U diag(σ · [σ > θ]) Vᵀ

ω(β) = λ*(β) / √μ_β with λ*(β) = √(2(β+1) + 8β / ((β+1) + √(β² + 14β + 1))) and μ_β the median of the
Marchenko–Pastur law of aspect β (numerical integration of the MP density, as the published code does, but in
x = √λ so the density stays bounded at β = 1); GD's cubic fit ω(β) ≈ 0.56β³ − 0.95β² + 1.82β + 1.43 agrees to
within 0.02 (ω(1) = 2.858). c = realign.dg_hard_scale, the published `--scale`, default 1.0; c = 0 keeps every
non-zero singular value (ΔWt back).
The scaling s multiplies σ and θ alike, so it does not change which values are kept.

The SVD is taken in the rank-r space, never forming a d_out×d_in matrix (fp64):
    B = Q_b R_b,  Aᵀ = Q_a R_a  (reduced QR)  =>  B A = Q_b (R_b R_aᵀ) Q_aᵀ;   R_b R_aᵀ = U_c diag(σ) V_cᵀ
    U = Q_b U_c,  V = Q_a V_c.
The k kept directions are written back as a LoRA of the same rank r, the singular values split evenly between the
factors, and zero-padded so the adapter keeps one rank:
    B' = [U_k diag(√σ_k) | 0]  (d_out×r),   A' = [diag(√σ_k) V_kᵀ ; 0]  (r×d_in),   s·B' A' = ΔW't.
A module that keeps every non-zero singular value (σ_i > 1e-6·σ_1) keeps its A and B bitwise.

The median. The published code thresholds the dense delta θ_ft − θ_base of a full fine-tune and takes
`torch.median` over all min(d_out, d_in) singular values (a Marchenko–Pastur noise bulk). A LoRA update has rank
≤ r ≪ min(d_out, d_in): all but r of those values are exactly zero, the median is 0, θ = 0 and DG-Hard would keep
everything (the published method applied to a merged LoRA delta is the identity up to fp32 round-off). Here the
median is taken over the q ≤ r singular values of the rank-r space instead (`torch.median`, the lower of the two
middle values for even q, as the published code does): the update's weaker half of directions plays the noise
floor, and a direction is kept when it stands c·ω(β) times above it. Since ω(β) > 1.41 for every β, at c = 1 every
direction at or below the median goes: a module keeps at most ⌊q/2⌋ of its directions, and none when they are all
of about the same size; c < 1/ω(β) is needed to keep more than half. β stays the aspect ratio of the d_out×d_in
matrix, as in the published code; MP theory describes a full random matrix, so within a rank-r update θ is the
published rule's form applied to the values a LoRA has, not a derived optimum.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from nlsr_core.config import check_knobs, knob
from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.realign import ModuleAudit, RealignError, RepairResult
from nlsr_core.repair.safelora import RANK_RTOL


@dataclass(frozen=True)
class DgHardSettings:
    """c of `dg-hard` (realign.dg_hard_scale, ≥ 0): the multiplier of the threshold ω(β)·median(σ)."""

    scale: float = knob("realign.dg_hard_scale", short="c")

    def __post_init__(self):
        check_knobs(self, error=RealignError)


@dataclass(frozen=True)
class DgHardRecord(ModuleAudit):
    """Per-module audit: singular values kept / non-zero, the threshold in ΔW's units (s·θ), patched when any
    non-zero singular value was dropped."""

    module: str
    rank_kept: int
    rank_nonzero: int
    threshold: float
    patched: bool


def optimal_lambda(beta: float) -> float:
    """λ*(β), the known-noise optimal threshold coefficient (Gavish & Donoho 2014, eq. 11); 4/√3 at β = 1."""
    return math.sqrt(2 * (beta + 1) + 8 * beta / ((beta + 1) + math.sqrt(beta * beta + 14 * beta + 1)))


@functools.lru_cache(maxsize=256)
def mp_median(beta: float, points: int = 200_001) -> float:
    """μ_β, the median of the Marchenko–Pastur eigenvalue law of aspect β ∈ (0, 1] (variance 1), whose density is
    f(λ) = √((λ₊ − λ)(λ − λ₋)) / (2πβλ) on [λ₋, λ₊] = [(1 − √β)², (1 + √β)²]. Integrated in x = √λ, where the
    density 2x·f(x²) = √((λ₊ − x²)(x² − λ₋)) / (πβx) stays bounded at β = 1 (f itself diverges at λ = 0 there), by
    the trapezoid rule; the CDF's crossing of ½ by linear interpolation. μ_1 = 0.6528 (Gavish & Donoho)."""
    if not 0.0 < beta <= 1.0:
        raise RealignError(f"dg-hard: aspect ratio β = {beta}; expected a value in (0, 1]")
    low, high = (1 - math.sqrt(beta)) ** 2, (1 + math.sqrt(beta)) ** 2
    x = torch.linspace(math.sqrt(low), math.sqrt(high), points, dtype=torch.float64)
    lam = x * x
    dens = torch.sqrt(((high - lam) * (lam - low)).clamp(min=0)) / (math.pi * beta * x.clamp(min=1e-300))
    if low == 0.0:
        dens[0] = math.sqrt(high) / (math.pi * beta)      # the limit x -> 0 at β = 1: √(λ₊ − x²)·x / (πx)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((dens[1:] + dens[:-1]) / 2, 0)])
    cdf = cdf / cdf[-1]
    i = int(torch.searchsorted(cdf, torch.tensor([0.5], dtype=torch.float64)))
    c0, c1, x0, x1 = float(cdf[i - 1]), float(cdf[i]), float(x[i - 1]), float(x[i])
    median_x = x0 + (0.5 - c0) * (x1 - x0) / max(c1 - c0, 1e-300)
    return median_x * median_x


def omega(beta: float) -> float:
    """ω(β) = λ*(β) / √μ_β: the unknown-noise coefficient, θ = ω(β)·median(σ) (≈ 0.56β³ − 0.95β² + 1.82β + 1.43)."""
    return optimal_lambda(beta) / math.sqrt(mp_median(beta))


def lowrank_svd(b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U d_out×q, σ (q,), V d_in×q) with B A = U diag(σ) Vᵀ, fp64, from b d_out×r and a r×d_in via two reduced QRs
    and the SVD of a small core; σ descending, q ≤ r."""
    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().T)
    u_c, sigma, vh_c = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)
    return q_b @ u_c, sigma, q_a @ vh_c.T


def dg_hard(finetuned: Adapter, settings: DgHardSettings) -> RepairResult:
    """Hard-threshold every module's singular values at c·ω(β)·median(σ); a LoRA of the same rank (module
    docstring)."""
    rank = finetuned.rank
    tensors, records = dict(finetuned.tensors), []
    for m in finetuned.modules:
        a, b = finetuned.a(m), finetuned.b(m)
        u, sigma, v = lowrank_svd(b, a)
        d_out, d_in = b.shape[0], a.shape[1]
        top = float(sigma[0]) if sigma.numel() else 0.0
        nonzero = int((sigma > RANK_RTOL * top).sum()) if top > 0 else 0
        theta = settings.scale * omega(min(d_out, d_in) / max(d_out, d_in)) * float(sigma.median()) if top else 0.0
        keep = sigma > theta
        kept = int(keep.sum())
        patched = kept < nonzero
        if patched:
            root = sigma[keep].sqrt()
            b_new = torch.zeros(d_out, rank, dtype=torch.float64)
            a_new = torch.zeros(rank, d_in, dtype=torch.float64)
            b_new[:, :kept] = u[:, keep] * root
            a_new[:kept] = root[:, None] * v[:, keep].T
            tensors[f"{m}.lora_B.weight"] = b_new.to(b.dtype)
            tensors[f"{m}.lora_A.weight"] = a_new.to(a.dtype)
        records.append(DgHardRecord(m, min(kept, nonzero), nonzero, finetuned.scaling * theta, patched))
    return RepairResult(finetuned.replace(tensors), records)
