"""Antidote, data-free (after Huang et al., ICML 2025, arXiv 2408.09600; code github.com/git-disl/Antidote,
`prune_wanda_outlier`): one-shot pruning of the fine-tuned adapter's largest entries.

Per LoRA factor W ∈ {A (r×d_in), B (d_out×r)} of every module, row by row (a row of n entries):

    k = ⌊n · ρ⌋                                     ρ = realign.antidote_dense_ratio ∈ (0, 1), default 0.1
    score_ij = |W_ij|
    W'_ij = 0  for the k entries of row i with the largest score, W'_ij = W_ij otherwise

so every row of A loses exactly ⌊d_in·ρ⌋ entries and every row of B exactly ⌊r·ρ⌋ (0 when r·ρ < 1: at rank 4 and
ρ = 0.1 the B factors are left alone). Ties in |W| go to the lower column index (a stable sort), and ⌊·⌋ carries a
1e-9 guard so that, e.g., 100 × 0.29 gives 29 and not the 28 float rounding would. The adapter keeps its rank,
scaling and shapes; only the zeroed entries change (every other entry keeps its bits).

This is NOT the published method, only its data-free variant: Antidote scores each weight by Wanda,
|W_ij| · ‖X_j‖₂, with X_j the input activations of the weight's column over a realignment set of harmful prompts
with harmful answers, and removes the highest-scoring (most harm-carrying) dense_ratio share per row; its
`prune_wanda_outlier` further varies that share per layer by the layer's activation-outlier ratio (OWL). Both need
a model pass over harmful data, which this change does not include: here every factor uses |W| alone and the same
ρ. A Wanda-scored variant would take its activation norms from the identification pass (`nlsr identify`), which
already runs the model over the safety set.

LoRA-only form: the published code prunes the weight matrices of the model it loads; here the pruned tensors are
the adapter's own factors A and B, so the base model and W0 are never touched and the output is a PEFT adapter of
the same rank. Zeroing a factor entry is coarser than zeroing one entry of the d_out×d_in product ΔW = s·B A:
zeroing A_ij removes s·A_ij·B[:, i] from the whole column j of ΔW, zeroing B_ij removes s·B_ij·A[j, :] from the
whole row i.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nlsr_core.config import check_knobs, knob
from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.realign import ModuleAudit, RealignError, RepairResult


@dataclass(frozen=True)
class AntidoteSettings:
    """ρ of `antidote` (realign.antidote_dense_ratio, in (0, 1)): the share of each factor row that is zeroed."""

    dense_ratio: float = knob("realign.antidote_dense_ratio", short="rho", always=True)

    def __post_init__(self):
        check_knobs(self, error=RealignError)


@dataclass(frozen=True)
class AntidoteRecord(ModuleAudit):
    """Per-module audit: entries zeroed per row of A and of B, and whether any entry was zeroed."""

    module: str
    zeroed_per_row_a: int
    zeroed_per_row_b: int
    patched: bool


def pruned_count(n: int, dense_ratio: float) -> int:
    """k = ⌊n·ρ⌋ entries of a row of n (guarded against float rounding just below an integer)."""
    return int(math.floor(n * dense_ratio + 1e-9))


def prune_rows(w: torch.Tensor, dense_ratio: float) -> tuple[torch.Tensor, int]:
    """(W with the ⌊n·ρ⌋ largest-|W| entries of each row zeroed, that count k); W itself when k = 0."""
    k = pruned_count(w.shape[1], dense_ratio)
    if k == 0:
        return w, 0
    order = torch.sort(w.abs(), dim=1, descending=True, stable=True).indices[:, :k]
    return w.scatter(1, order, 0.0), k


def antidote(finetuned: Adapter, settings: AntidoteSettings) -> RepairResult:
    """Zero the top ρ share (by |W|) of every row of every LoRA factor (module docstring)."""
    tensors, records = dict(finetuned.tensors), []
    for m in finetuned.modules:
        counts = {}
        for which in "AB":
            key = f"{m}.lora_{which}.weight"
            tensors[key], counts[which] = prune_rows(finetuned.tensors[key], settings.dense_ratio)
        records.append(AntidoteRecord(m, counts["A"], counts["B"], bool(counts["A"] or counts["B"])))
    return RepairResult(finetuned.replace(tensors), records)
