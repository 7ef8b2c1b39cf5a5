"""The safety reference adapter We from the aligned adapter Wa: eq. (2) extrapolation and eq. (1) interpolation.

Pure tensor work on LoRA factors (no model load). Notation: a LoRA module has A ∈ R^{r×d_in}, B ∈ R^{d_out×r},
ΔW = s·B A with s = alpha / r; M' = M + ΔW0 (the SFT adapter W0 merged), and Wa is a LoRA on M'.

Eq. (2), extrapolation (paper: W_e = (1+β) W_a − β W_0 with β = (1−α)/α ≥ 0). In full weights the aligned model
is M + ΔW0 + ΔWa, so W_e = (1+β)(M + ΔW0 + ΔWa) − β(M + ΔW0) = M + ΔW0 + (1+β) ΔWa: on top of M',
    ΔWe = (1+β) · ΔWa.
Presets (docs/DESIGN.md §4.7): `paper` scales A and B each by √(1+β) (product × (1+β), exact); `official-code` scales A
and B each by 2β, as the published code does with its alpha (product × (2β)², 3.24 at β = 0.9).

Eq. (1), interpolation (paper: W_medium = α W_strong + (1−α) W_weak, α ∈ (0, 1]), used when a stronger adapter
W_strong is supplied; here W_weak is the aligned adapter Wa (both on M') and α = amplify.beta:
    ΔWe = α · ΔW_strong + (1−α) · ΔWa          (α = 1 gives the paper's "W_e = W_strong")
The result must stay a rank-r LoRA in Wa's coordinates, because masks and the transplant (eq. 11) compare A and B
entries of We with those of Wt, which continues Wa. A rank-r exact representation in those coordinates exists only
when ΔW_strong's row space lies in Wa's (e.g. W_strong = c·Wa or trained from Wa with A frozen). The choice made:
keep A_e = A_a and solve B_e by least squares, B_e = argmin_B ‖s_a·B A_a − ΔWe‖_F, i.e.
    B_e = (1−α)·B_a + α·(s_s/s_a)·B_s (A_s A_aᵀ)(A_a A_aᵀ)⁻¹          (r×r algebra only)
which is exact in that case and otherwise the orthogonal projection of eq. (1) onto Wa's row space. The relative
residual ‖s_a B_e A_a − ΔWe‖_F / ‖ΔWe‖_F per module is returned (computed from r×r Gram matrices) so the
deviation from eq. (1) is recorded, never hidden. Ranks, targets and shapes must match (`check_compatible`).
"""
from __future__ import annotations

import math
import torch

from nlsr_core.lora.adapters import Adapter, check_compatible
from nlsr_core.config import choices
from nlsr_core.errors import NlsrError
from nlsr_core.method.presets import PRESETS

MODES = choices("amplify", "mode")


def product_factor(beta: float, preset: str = "paper") -> float:
    """How much eq. (2) under `preset` multiplies each module's ΔW = s·B A."""
    return _factor_scale(beta, preset) ** 2


def extrapolate(aligned: Adapter, beta: float, preset: str = "paper") -> Adapter:
    """Eq. (2) on M': every A and B scaled by c(β), so ΔWe = c(β)²·ΔWa (= (1+β)·ΔWa for `paper`)."""
    c = _factor_scale(beta, preset)
    tensors = {key: t * c for key, t in aligned.tensors.items()}
    return aligned.replace(tensors)


def interpolate(aligned: Adapter, strong: Adapter, alpha: float) -> tuple[Adapter, dict[str, float]]:
    """Eq. (1) with W_weak = Wa: ΔWe = α·ΔW_strong + (1−α)·ΔWa, as a rank-r LoRA with A_e = A_a (module doc).

    Returns the adapter and, per module, the relative Frobenius residual of that representation (0 when exact).
    """
    if not 0 < alpha <= 1:
        raise NlsrError(f"amplify.beta: {alpha} (interpolation, eq. 1, needs 0 < beta <= 1)")
    check_compatible(strong, aligned, what=("strong", "aligned"))
    tensors = dict(aligned.tensors)
    residuals = {}
    for module in aligned.modules:
        b_e, residual = _interpolate_module(aligned.a(module), aligned.b(module), aligned.scaling,
                                            strong.a(module), strong.b(module), strong.scaling, alpha)
        tensors[f"{module}.lora_B.weight"] = b_e
        residuals[module] = residual
    return aligned.replace(tensors), residuals


def _interpolate_module(a_a, b_a, s_a, a_s, b_s, s_s, alpha) -> tuple[torch.Tensor, float]:
    """B_e (d_out×r) and the relative residual for one module; float64 r×r algebra, no d_out×d_in product."""
    a_a64, b_a64, a_s64, b_s64 = (t.to(torch.float64) for t in (a_a, b_a, a_s, b_s))
    gram = a_a64 @ a_a64.T                                   # r×r, A_a A_aᵀ
    cross = a_s64 @ a_a64.T                                  # r×r, A_s A_aᵀ
    # pinv: a rank-deficient A_a (e.g. a zero row) still gives the least-squares solution.
    b_e = (1 - alpha) * b_a64 + alpha * (s_s / s_a) * (b_s64 @ cross @ torch.linalg.pinv(gram))
    # ‖target‖² with target = [α s_s B_s | (1−α) s_a B_a] [A_s; A_a]; ‖fit‖² = s_a²‖B_e A_a‖²; residual ⟂ fit.
    b_cat = torch.cat([alpha * s_s * b_s64, (1 - alpha) * s_a * b_a64], dim=1)
    a_cat = torch.cat([a_s64, a_a64], dim=0)
    target_sq = _frob_sq(b_cat, a_cat)
    fit_sq = s_a ** 2 * _frob_sq(b_e, a_a64)
    residual = math.sqrt(max(target_sq - fit_sq, 0.0) / target_sq) if target_sq > 0 else 0.0
    return b_e.to(b_a.dtype), residual


def _frob_sq(b: torch.Tensor, a: torch.Tensor) -> float:
    """‖B A‖_F² = Σ (BᵀB) ⊙ (A Aᵀ), with r×r intermediates."""
    return float(((b.T @ b) * (a @ a.T)).sum())


def _factor_scale(beta: float, preset: str) -> float:
    if preset not in PRESETS:
        raise NlsrError(f"nlsr.preset: '{preset}' is unknown (expected one of {', '.join(PRESETS)})")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta)) or beta < 0:
        raise NlsrError(f"amplify.beta: {beta} (expected a finite number >= 0)")
    return PRESETS[preset].factor_scale(float(beta))   # per-factor c(β): A ← c·A, B ← c·B, so ΔW ← c²·ΔW
