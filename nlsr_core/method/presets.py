"""The paper / official-code presets and the P_SR arithmetic identification and realign share (docs/DESIGN.md §4.7):
retained rank r*, keep counts and top-k masks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from nlsr_core.config import check_value
from nlsr_core.method.neuron_keys import IdentifyError


def _rank_paper(r: int, sparsity: float) -> float:
    return r * (1.0 - sparsity)


def _rank_official(r: int, sparsity: float) -> float:
    return r * sparsity


@dataclass(frozen=True)
class Preset:
    """The paper / official-code differences of docs/DESIGN.md §4.7 that identification and realign depend on.

    rank_rule(r, P_SR) -> retained rank before rounding; mask_scope "row" (eq. 5 per row) or "matrix";
    patch_high_similarity: False = low S_j -> more likely patched (paper), True = the official code's direction;
    factor_scale(β) -> c, the pre-amplification scale of each LoRA factor (eq. 2: A ← c·A, B ← c·B, ΔW ← c²·ΔW).
    """

    name: str
    rank_rule: Callable[[int, float], float]
    mask_scope: str
    patch_high_similarity: bool
    factor_scale: Callable[[float], float]


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", _rank_paper, "row", False,
                    lambda beta: math.sqrt(1.0 + beta)),        # c² = 1 + β  (eq. 2)
    "official-code": Preset("official-code", _rank_official, "matrix", True,
                            lambda beta: 2.0 * beta),           # c² = (2β)²  (published code, its alpha = β)
}


def get_preset(name: str) -> Preset:
    check_value("nlsr.preset", name, error=IdentifyError)   # PRESETS has the field's choices
    return PRESETS[name]


def check_sparsity(sparsity: float) -> float:
    """P_SR must be in [0, 1): P_SR = 1 would keep no neuron at all."""
    return float(check_value("identify.sparsity", sparsity, error=IdentifyError))


def round_half_up(x: float) -> int:
    # Python's round() is banker's rounding; +1e-9 absorbs binary noise such as 16·(1−0.8) = 3.1999999999999993.
    return int(math.floor(x + 0.5 + 1e-9))


def retained_rank(r: int, sparsity: float, preset: Preset) -> int:
    """r* = r·(1−P_SR) (paper) or r·P_SR (official code), rounded half up, clipped to [1, r]."""
    return max(1, min(r, round_half_up(preset.rank_rule(r, sparsity))))


def keep_count(n: int, sparsity: float) -> int:
    """k = N*·(1−P_SR) rounded half up, clipped to [1, N*] (eq. 5)."""
    return max(1, min(n, round_half_up(n * (1.0 - sparsity))))


def topk_mask(scores: torch.Tensor, sparsity: float, scope: str) -> torch.Tensor:
    """Bool mask of the top-k scores (eqs. 5-6). scores: (rows, cols); scope "row" or "matrix".

    Ties: stable descending sort, so among equal scores the lower index (row-major for "matrix") wins.
    """
    flat = scores.reshape(1, -1) if scope == "matrix" else scores
    k = keep_count(flat.shape[-1], sparsity)
    order = torch.sort(flat, dim=-1, descending=True, stable=True).indices[:, :k]
    mask = torch.zeros(flat.shape, dtype=torch.bool)
    mask.scatter_(-1, order, True)
    return mask.reshape(scores.shape)
