"""SafeMERGE (Djuhera et al. 2025, arXiv 2503.17239; code github.com/aladinD/SafeMERGE): merge the modules whose
update has drifted from the safety subspace with a safety adapter, keep the others.

Per LoRA module j, with ΔWt = s_t·B_t A_t (fine-tuned, d_out×d_in), ΔWs = s_a·B_a A_a (the aligned adapter Wa,
the "safe" adapter) and SafeLoRA's matrix C = V Vᵀ / ‖V‖_F (d_out×d_out) of the aligned direction V = ΔWs:

    S_j = cos(C·ΔWt, ΔWt)   (Frobenius)
    S_j < τ:   ΔW't = w·ΔWt + (1 − w)·ΔWs            (merged; `patched`)
    else:      ΔW't = ΔWt

τ = realign.safemerge_tau (SafeMERGE's default 0.35), w = realign.safemerge_weight (its default weighting
[0.8, 0.2]: 0.8 on the fine-tuned adapter). C is positive semi-definite, so ⟨C·ΔWt, ΔWt⟩ ≥ 0 and S_j ∈ [0, 1]
(ΔWs = 0 makes C·ΔWt = 0 and S_j = 0): τ = 0 merges nothing, and w = 1 gives ΔWt on every module whatever τ is.

C and the cosine are SafeLoRA's code (`nlsr_core.repair.safelora.projector(..., "frobenius")` and
`projected_cosine`), from rank-r factors only: C·B_t = s_a² B_a (A_a A_aᵀ)(B_aᵀ B_t) / ‖V‖_F, never a d_out×d_out
or d_out×d_in matrix. The cosine is scale-free, so s_t, s_a and ‖V‖_F cancel in S_j.

The merge is exact in product space (`nlsr_core.repair.baselines.stacked_lora`, the construction safety-vector
uses), with the fine-tuned adapter's scaling s_t:
    w·s_t·B_t A_t + (1 − w)·s_a·B_a A_a = s_t · [w·B_t | (1 − w)(s_a/s_t)·B_a] · [A_t ; A_a]
so the output is a LoRA of rank r_t + r_a (A' (r_t+r_a)×d_in, B' d_out×(r_t+r_a), lora_alpha' = s_t·(r_t+r_a)).
A PEFT adapter has one rank for all its modules, so a module that is not merged is written at that rank too, as
[B_t | 0]·[A_t ; 0]: its product is ΔWt exactly and its A_t, B_t keep their bits.

How this LoRA-only form differs from the published code, and why:
  * V. SafeMERGE (like SafeLoRA) takes V = W_aligned − W_base of two full models (e.g. Llama-2-chat − Llama-2-base).
    This project has no such pair of checkpoints for the safety direction; its aligned adapter Wa is that
    direction, so V = ΔWa, as in `nlsr realign --method safelora`.
  * The safety adapter. SafeMERGE trains a separate safety LoRA; here it is the same Wa (the adapter the
    fine-tuned model started from), so the method needs nothing NLSR's inputs lack.
  * The merge. The published code calls PEFT's `linear` weighted-adapter merge per layer, which combines the
    factors, A' = √(w s_t)·A_t + √((1−w) s_a)·A_a and likewise B', at the fine-tuned rank with lora_alpha = r: its
    product adds the cross terms √(w(1−w) s_t s_a)·(B_t A_a + B_a A_t), so a merged layer is not w·ΔWt + (1−w)·ΔWs.
    The concatenation above is that weighted sum exactly, at the price of rank r_t + r_a.
  * The cosine is not rounded (the published code rounds it to 5 decimals).
"""
from __future__ import annotations

from dataclasses import dataclass

from nlsr_core.config import check_knobs, knob
from nlsr_core.lora.adapters import Adapter, check_compatible
from nlsr_core.method.realign import ModuleAudit, RealignError, RepairResult
from nlsr_core.repair.baselines import stacked_lora
from nlsr_core.repair.safelora import projected_cosine, projector

# SafeMERGE's C is SafeLoRA's literal VVᵀ/‖V‖_F (nlsr_core.repair.safelora: "frobenius").
PROJECTION = "frobenius"


@dataclass(frozen=True)
class SafeMergeSettings:
    """τ (realign.safemerge_tau, in [0, 1]) and w (realign.safemerge_weight, in [0, 1]) of `safemerge`."""

    tau: float = knob("realign.safemerge_tau", short="tau", always=True)
    weight: float = knob("realign.safemerge_weight", short="w")

    def __post_init__(self):
        check_knobs(self, error=RealignError)


@dataclass(frozen=True)
class SafeMergeRecord(ModuleAudit):
    """Per-module audit: the projected cosine S_j = cos(C·ΔWt, ΔWt) and whether the module was merged."""

    module: str
    similarity: float
    patched: bool


def safemerge(finetuned: Adapter, aligned: Adapter, settings: SafeMergeSettings) -> RepairResult:
    """Merge every module whose cos(C·ΔWt, ΔWt) < τ into w·ΔWt + (1 − w)·ΔWa; a LoRA of rank r_t + r_a (module
    docstring)."""
    if aligned is None:
        raise RealignError("repair 'safemerge' needs the aligned adapter Wa (--aligned DIR); none was given")
    check_compatible(finetuned, aligned, ("finetuned", "aligned"))
    records, coefficients = [], {}
    for m in finetuned.modules:
        apply_c = projector(aligned.a(m), aligned.b(m), aligned.scaling, PROJECTION)
        cos, _ = projected_cosine(apply_c, finetuned.a(m), finetuned.b(m))
        merge = cos < settings.tau
        coefficients[m] = (settings.weight, 1.0 - settings.weight) if merge else (1.0, 0.0)
        records.append(SafeMergeRecord(m, cos, bool(merge)))
    return RepairResult(stacked_lora(finetuned, aligned, coefficients), records)
