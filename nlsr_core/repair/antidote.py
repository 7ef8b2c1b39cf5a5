"""Antidote (Huang et al., ICML 2025, arXiv 2408.09600; code github.com/git-disl/Antidote, `prune_wanda_outlier`):
one-shot pruning, after the fine-tune, of the weights that carry the harmful behaviour.

Per LoRA factor W ∈ {A (r×d_in), B (d_out×r)} of every module, row by row (a row of n entries):

    k = ⌊n · ρ⌋                                     ρ = realign.antidote_dense_ratio ∈ (0, 1), default 0.1
    score_ij = |W_ij| · ‖X_j‖₂                     wanda (realign.antidote_scoring, the published score)
    score_ij = |W_ij|                               magnitude (data-free)
    W'_ij = 0  for the k entries of row i with the highest score, W'_ij = W_ij otherwise

X_j is the input feature j of the factor over the answer tokens of a realignment set of harmful prompts with
harmful answers, passed through M (+ W0) + Wt: for A the module input x (d_in features), for B the LoRA hidden
z = A x (r features). ‖X_j‖₂² = Σ_t x_tj² is what the identify stage's wanda collector accumulates
(nlsr_core.method.neurons_stats.collect_wanda: "<module>.lora_A.input_sq" (d_in), "<module>.lora_B.input_sq" (r));
`RealignmentSet.norms` runs that collector on the fine-tuned adapter instead of the reference. Wanda keeps the
lowest-scoring weights when it prunes for size; Antidote removes the highest-scoring ones on harmful data, which
is the direction used here.

So every row of A loses exactly ⌊d_in·ρ⌋ entries and every row of B exactly ⌊r·ρ⌋ (0 when r·ρ < 1: at rank 4 and
ρ = 0.1 the B factors are left alone). Ties go to the lower column index (a stable sort), and ⌊·⌋ carries a 1e-9
guard so that, e.g., 100 × 0.29 gives 29 and not the 28 float rounding would. The adapter keeps its rank, scaling
and shapes; only the zeroed entries change (every other entry keeps its bits).

Where this differs from the published code, and why:
- LoRA-only form: the published code prunes the weight matrices of the model it loads; here the pruned tensors
  are the adapter's own factors A and B, so the base model and W0 are never touched and the output is a PEFT
  adapter of the same rank. Zeroing a factor entry is coarser than zeroing one entry of the d_out×d_in product
  ΔW = s·B A: zeroing A_ij removes s·A_ij·B[:, i] from the whole column j of ΔW, zeroing B_ij removes s·B_ij·A[j, :]
  from the whole row i.
- One ρ for every layer: `prune_wanda_outlier` further varies the share per layer by the layer's
  activation-outlier ratio (OWL); that layer-wise schedule is not reproduced.
- The realignment set is the prepared poison pool (harmful prompts with harmful answers, `nlsr prepare-data`,
  disjoint from the test and calibration prompts), never the test split.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from nlsr_core.config import check_knobs, knob
from nlsr_core.lora.adapters import Adapter
from nlsr_core.method.realign import ModuleAudit, RealignError, RepairResult


@dataclass(frozen=True)
class AntidoteSettings:
    """ρ of `antidote` (realign.antidote_dense_ratio, in (0, 1)): the share of each factor row that is zeroed; how
    a weight is scored (realign.antidote_scoring: wanda, which reads the realignment norms, | magnitude)."""

    dense_ratio: float = knob("realign.antidote_dense_ratio", short="rho", always=True)
    scoring: str = knob("realign.antidote_scoring", short="")

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


def prune_rows(w: torch.Tensor, dense_ratio: float, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(W with the ⌊n·ρ⌋ highest-scoring entries of each row zeroed, that count k); W itself when k = 0.
    score = |W| · scale (scale: n non-negative column factors, ‖X_j‖₂) or |W| when scale is None."""
    k = pruned_count(w.shape[1], dense_ratio)
    if k == 0:
        return w, 0
    score = w.abs().float() if scale is None else w.abs().float() * scale.float().reshape(1, -1)
    order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
    return w.scatter(1, order, 0.0), k


def input_norms(finetuned: Adapter, norms: dict | None) -> dict[str, torch.Tensor]:
    """factor key ("<m>.lora_A.weight") -> ‖X_j‖₂ per input column (d_in for A, r for B) from the realignment
    norms ("<m>.lora_{A,B}.input_sq", Σ_t x_tj²); a missing, misshapen, negative or non-finite entry is a one-line
    error naming the key."""
    if norms is None:
        raise RealignError("realign --method antidote with realign.antidote_scoring wanda needs the realignment "
                           "norms of Wt (--realign-data FILE: harmful prompts with harmful answers); "
                           "realign.antidote_scoring magnitude needs none")
    out = {}
    for m in finetuned.modules:
        for which in "AB":
            key, factor = f"{m}.lora_{which}.input_sq", finetuned.tensors[f"{m}.lora_{which}.weight"]
            value = norms.get(key)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (factor.shape[1],):
                raise RealignError(f"realignment norms: '{key}' is {None if value is None else tuple(value.shape)}; "
                                   f"expected a vector of {factor.shape[1]} (the wanda statistics of this Wt)")
            if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
                raise RealignError(f"realignment norms: '{key}' has negative or non-finite entries; expected Σ x²")
            out[f"{m}.lora_{which}.weight"] = value.float().sqrt()
    return out


def antidote(finetuned: Adapter, settings: AntidoteSettings, norms: dict | None = None) -> RepairResult:
    """Zero the top ρ share (by score) of every row of every LoRA factor (module docstring); `norms` are the
    realignment norms of Wt (`RealignmentSet.norms`), read only with scoring wanda."""
    scales = input_norms(finetuned, norms) if settings.scoring == "wanda" else {}
    tensors, records = dict(finetuned.tensors), []
    for m in finetuned.modules:
        counts = {}
        for which in "AB":
            key = f"{m}.lora_{which}.weight"
            tensors[key], counts[which] = prune_rows(finetuned.tensors[key], settings.dense_ratio, scales.get(key))
        records.append(AntidoteRecord(m, counts["A"], counts["B"], bool(counts["A"] or counts["B"])))
    return RepairResult(finetuned.replace(tensors), records)


@dataclass(frozen=True)
class RealignmentSet:
    """What Antidote's Wanda score passes through M (+ W0) + Wt, and how: `data`, JSONL rows with prompt and
    response (harmful prompts with harmful answers), in batches of `batch_size` rows cut to `max_length` tokens
    (identify.batch_size / max_length) in the prompt `template` (data.template)."""

    data: Path
    batch_size: int
    max_length: int
    template: str

    def record(self) -> dict:
        """The lineage record of the pass (`realign_pass` in the params of the outputs that read it)."""
        return {"data": str(self.data), "batch_size": self.batch_size, "max_length": self.max_length,
                "template": self.template}

    def norms(self, finetuned: Adapter, compute=None, model: str | None = None) -> dict[str, torch.Tensor]:
        """Σ_t x_t² per input feature of every LoRA factor of `finetuned` (read from its directory) over the answer
        tokens of the set: the identify stage's wanda collector run on Wt. M comes from Wt's lineage, or `model`."""
        from nlsr_core.method.identification import base_of, collect_statistics

        if not Path(self.data).is_file():
            raise RealignError(f"--realign-data {self.data}: not a file; expected JSONL rows with prompt and "
                               "response (harmful prompts with harmful answers, e.g. data/prepared/poison/pool.jsonl)")
        if finetuned.path is None:
            raise RealignError("realignment norms: the fine-tuned adapter has no directory; expected one read by "
                               "load_adapter (the model pass loads it from disk)")
        ident = {"data": Path(self.data), "batch_size": self.batch_size, "max_length": self.max_length,
                 "template": self.template, "seed": 0}
        return collect_statistics(finetuned, base_of(Path(finetuned.path), model, None, compute), "wanda", ident)
