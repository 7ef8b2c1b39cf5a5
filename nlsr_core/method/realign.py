"""NLSR restoration (paper eqs. 7-11): similarity of safety regions, layer selection, neuron transplant.

Works on adapter tensors and masks only (no base model, no tokenizer), in fp32. A "layer" j is one LoRA
module (q/k/v/o/gate/up/down of one block) with A ∈ R^{r×d_in}, B ∈ R^{d_out×r} and masks M^A, M^B (bool).

Similarity (eqs. 7-8), never forming a d_out×d_in product:
    W'_e = (M^B⊙B_e)(M^A⊙A_e),  W'_t = (M^B⊙B_t)(M^A⊙A_t)
    ⟨B₁A₁, B₂A₂⟩_F = Σ (B₁ᵀB₂) ⊙ (A₁A₂ᵀ)        (r×r intermediates)
    S_j = ⟨W'_e, W'_t⟩_F / (‖W'_e‖_F ‖W'_t‖_F);  both regions empty -> S_j = 1, one empty -> S_j = 0.
The LoRA scaling α/r multiplies both sides and cancels in the cosine.

Selection:
    adaptive (eqs. 9-10)  r_j = 1..N = rank of S_j (stable sort, ties -> model order), P_j = clip(P_L + δ·r_j/N, 0, 1),
                          u_j ~ U[0,1) from torch.Generator().manual_seed(seed) in model order, γ_j = [u_j < P_j],
                          γ_j = 0 -> patch. Preset "paper": rank 1 = lowest S_j, so low similarity is the most
                          likely to be patched; "official-code": rank 1 = highest S_j (the published code's order).
    threshold (Figure 3)  patch every module with S_j < τ (both presets; the preset only orders the ranking).
Transplant (eq. 11, factor level as in the published code): A_t ← A_t⊙(1−M^A) + A_e⊙M^A, same for B, on patched
modules only (done with torch.where, so masked entries equal A_e bitwise); other modules keep their tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from nlsr_core.lora.adapters import Adapter, AdapterError, check_compatible, load_adapter
from nlsr_core.config import check_knobs, choices, knob
from nlsr_core.errors import NlsrError
from nlsr_core.method.presets import get_preset

SELECTIONS = choices("realign", "selection")


class RealignError(NlsrError):
    """Bad realign input (params, masks); one line naming the param or file."""


@dataclass(frozen=True)
class RealignParams:
    """NLSR's settings (the `nlsr` and `random-masks` repairs of nlsr_core.repair.registry): realign.* params +
    nlsr.preset, defaults from nlsr_core.config. layer_prune = P_L ∈ [0,1], delta = δ ≥ 0 (eq. 9), selection
    adaptive (eqs. 9-10) | threshold, tau = τ (threshold selection), seed of the Bernoulli draws. The field order
    is the order a study point's label shows them in."""

    layer_prune: float = knob("realign.layer_prune", short="P_L", always=True)
    delta: float = knob("realign.delta", short="delta")
    selection: str = knob("realign.selection", short="")
    tau: float = knob("realign.tau")
    seed: int = knob("realign.seed", short="seed")
    preset: str = knob("nlsr.preset", "--preset", short="")

    def __post_init__(self):
        get_preset(self.preset)
        check_knobs(self, error=RealignError)   # the ranges beside RealignConfig's fields
        if not _finite(self.tau):
            raise RealignError(f"realign.tau (τ) = {self.tau}: expected a finite number")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class ModuleAudit:
    """Base of every repair's per-module audit dataclass (a `RepairResult` record): `as_dict()` gives its fields,
    what lineage, the study points and the reports record of one module."""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModuleRecord(ModuleAudit):
    """Per-module audit: similarity S_j, rank r_j, probability P_j, uniform u_j, draw γ_j, patched flag."""

    module: str
    similarity: float
    rank: int
    probability: float | None
    uniform: float | None
    draw: int | None
    patched: bool


@dataclass(frozen=True)
class RepairResult:
    """What every repair returns (nlsr_core.repair.registry): the repaired adapter and one audit record per module
    (a `ModuleAudit` dataclass with `.module` and `.patched`; its other fields are the method's own)."""

    adapter: Adapter
    records: list

    @property
    def patched(self) -> list[str]:
        return [r.module for r in self.records if r.patched]

    def summary(self) -> dict:
        return patch_summary([r.patched for r in self.records])


def patch_summary(patched: list[bool]) -> dict:
    """patched_count / patched_fraction / module_count from one flag per module (NLSR and SafeLoRA results)."""
    n, k = len(patched), sum(patched)
    return {"patched_count": k, "patched_fraction": k / n if n else 0.0, "module_count": n}


# --------------------------------------------------------------------------------------------- eq. 8
def frobenius_inner(b1: torch.Tensor, a1: torch.Tensor, b2: torch.Tensor, a2: torch.Tensor) -> torch.Tensor:
    """⟨B₁A₁, B₂A₂⟩_F = Σ (B₁ᵀB₂) ⊙ (A₁A₂ᵀ); b: d_out×r, a: r×d_in; cost O(r²(d_in+d_out))."""
    return ((b1.T @ b2) * (a1 @ a2.T)).sum()


def cosine_from_products(inner: float, norm1_sq: float, norm2_sq: float) -> float:
    """cos = inner / (‖1‖‖2‖); two empty regions are identical (1.0), one empty region is orthogonal (0.0)."""
    if norm1_sq <= 0.0 and norm2_sq <= 0.0:
        return 1.0
    if norm1_sq <= 0.0 or norm2_sq <= 0.0:
        return 0.0
    return max(-1.0, min(1.0, inner / (math.sqrt(norm1_sq) * math.sqrt(norm2_sq))))


def masked_similarity(a_e: torch.Tensor, b_e: torch.Tensor, a_t: torch.Tensor, b_t: torch.Tensor,
                      m_a: torch.Tensor, m_b: torch.Tensor) -> float:
    """S_j of eq. 8 for one module (fp32). a_*: r×d_in, b_*: d_out×r, m_a, m_b: bool masks of those shapes."""
    r, d_in, d_out = a_e.shape[0], a_e.shape[1], b_e.shape[0]
    # Masked factors go straight into one (2r)×d_in and one d_out×(2r) buffer: two matmuls then give all
    # three Grams, and one 2×2 block sum gives ‖W'_e‖², ‖W'_t‖², ⟨W'_e, W'_t⟩ (few small ops per module).
    a = torch.empty(2 * r, d_in, dtype=a_e.dtype)
    b = torch.empty(d_out, 2 * r, dtype=b_e.dtype)
    # ×0/1 through a uint8 view of the bool mask: same values, about twice as fast as bool promotion on CPU.
    m_a, m_b = m_a.view(torch.uint8), m_b.view(torch.uint8)
    torch.mul(a_e, m_a, out=a[:r])
    torch.mul(a_t, m_a, out=a[r:])
    torch.mul(b_e, m_b, out=b[:, :r])
    torch.mul(b_t, m_b, out=b[:, r:])
    blocks = (a @ a.T).mul_(b.T @ b).view(2, r, 2, r).sum((1, 3), dtype=torch.float64).tolist()
    return cosine_from_products(blocks[0][1], blocks[0][0], blocks[1][1])


def similarities(finetuned: Adapter, reference: Adapter, masks: dict[str, torch.Tensor]) -> list[float]:
    """S_j for every module of `finetuned`, in model order."""
    return [masked_similarity(reference.a(m), reference.b(m), finetuned.a(m), finetuned.b(m),
                              masks[f"{m}.lora_A.weight"], masks[f"{m}.lora_B.weight"])
            for m in finetuned.modules]


# --------------------------------------------------------------------------------------------- eqs. 9-10
def similarity_ranks(sims: list[float], high_first: bool) -> list[int]:
    """Ranks 1..N; rank 1 = lowest S (paper) or highest S (high_first); ties keep model order."""
    s = torch.tensor(sims, dtype=torch.float64)
    order = torch.sort(s, descending=high_first, stable=True).indices
    ranks = torch.empty(len(sims), dtype=torch.long)
    ranks[order] = torch.arange(1, len(sims) + 1)
    return ranks.tolist()


def _select_adaptive(sims: list[float], ranks: list[int], params: RealignParams) -> list[tuple]:
    n = len(sims)
    gen = torch.Generator().manual_seed(params.seed)
    uniforms = torch.rand(n, generator=gen, dtype=torch.float64).tolist()
    out = []
    for rank, u in zip(ranks, uniforms):
        p = min(1.0, max(0.0, params.layer_prune + params.delta * rank / n))
        gamma = int(u < p)
        out.append((p, u, gamma, gamma == 0))
    return out


def _select_threshold(sims: list[float], ranks: list[int], params: RealignParams) -> list[tuple]:
    return [(None, None, None, s < params.tau) for s in sims]


SELECTORS = {"adaptive": _select_adaptive, "threshold": _select_threshold}


def select_modules(modules: list[str], sims: list[float], params: RealignParams) -> list[ModuleRecord]:
    """Ranks, probabilities and draws per module (eqs. 9-10, or the threshold variant)."""
    ranks = similarity_ranks(sims, get_preset(params.preset).patch_high_similarity)
    picks = SELECTORS[params.selection](sims, ranks, params)
    return [ModuleRecord(m, s, rk, p, u, g, bool(patched))
            for m, s, rk, (p, u, g, patched) in zip(modules, sims, ranks, picks)]


# --------------------------------------------------------------------------------------------- eq. 11
def transplant(target: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """target⊙(1−M) + source⊙M, exactly: masked entries are source's bits, the others target's."""
    return torch.where(mask, source, target)


def realign(finetuned: Adapter, reference: Adapter, masks: dict[str, torch.Tensor],
            params: RealignParams) -> RepairResult:
    """NLSR on adapter tensors: similarity (eq. 8), selection (eqs. 9-10), transplant (eq. 11)."""
    check_realign_inputs(finetuned, reference, masks)
    records = select_modules(finetuned.modules, similarities(finetuned, reference, masks), params)
    tensors = dict(finetuned.tensors)  # unpatched modules keep the very same tensor objects
    for rec in records:
        if rec.patched:
            for which in ("lora_A", "lora_B"):
                key = f"{rec.module}.{which}.weight"
                tensors[key] = transplant(finetuned.tensors[key], reference.tensors[key], masks[key])
    return RepairResult(finetuned.replace(tensors), records)


# --------------------------------------------------------------------------------------------- checks
def check_same_scaling(first: Adapter, second: Adapter, what: tuple[str, str]) -> None:
    """Transplanted factors only mean the same thing under the same α/r."""
    if not math.isclose(first.scaling, second.scaling, rel_tol=1e-12):
        raise AdapterError(f"{what[0]} adapter {first.path or ''} has scaling {first.scaling:g} but {what[1]} "
                           f"adapter {second.path or ''} has {second.scaling:g}; expected the same lora_alpha/r")


def check_realign_inputs(finetuned: Adapter, reference: Adapter, masks: dict[str, torch.Tensor],
                         masks_path=None) -> None:
    check_compatible(finetuned, reference, ("finetuned", "reference"))
    check_same_scaling(finetuned, reference, ("finetuned", "reference"))
    check_masks(masks, finetuned, masks_path)


def check_masks(masks: dict[str, torch.Tensor], adapter: Adapter, where=None) -> None:
    """Masks must have exactly the adapter's lora_A/lora_B keys, the same shapes, and bool dtype."""
    where = where or "masks"
    expected = {f"{m}.lora_{w}.weight" for m in adapter.modules for w in "AB"}
    missing = sorted(expected - set(masks))
    extra = sorted(set(masks) - expected)
    if missing:
        raise RealignError(f"{where}: no mask for adapter tensor {missing[0]} (expected masks keyed by the "
                           f"adapter's tensor names; {len(missing)} missing)")
    if extra:
        raise RealignError(f"{where}: mask {extra[0]} matches no tensor of adapter {adapter.path or ''}".rstrip())
    for key in sorted(expected):
        m, t = masks[key], adapter.tensors[key]
        if m.dtype != torch.bool:
            raise RealignError(f"{where}: mask {key} has dtype {m.dtype}; expected bool")
        if m.shape != t.shape:
            raise RealignError(f"{where}: mask {key} has shape {tuple(m.shape)} but the adapter tensor has "
                               f"{tuple(t.shape)}; expected identical shapes")


def load_masks(path) -> dict[str, torch.Tensor]:
    """Read masks.safetensors (a file, or a masks directory holding one)."""
    from nlsr_core.method.neurons import load_tensor_file

    return load_tensor_file(path, "masks")


def delta_norm(adapter_dir: Path | str) -> float:
    """‖ΔW‖_F of a LoRA adapter: sqrt(Σ_modules ‖s·B·A‖_F²), with ‖BA‖_F² = Σ (BᵀB) ⊙ (AAᵀ) (rank-space, exact).
    B: d_out×r, A: r×d_in, s = alpha / r."""
    adapter = load_adapter(adapter_dir)
    total = sum(float(frobenius_inner(adapter.b(m), adapter.a(m), adapter.b(m), adapter.a(m)))
                for m in adapter.modules)
    return adapter.scaling * math.sqrt(max(total, 0.0))
