"""Slow, naive oracle for lowrank identification (paper eqs. 3-6), written to be obviously right, not fast.

One sample at a time, no padding: a forward pre-hook on each LoRA module's lora_A stores every response-token
activation x (d_in). Then, per module, in fp64:
    X̂ = [x_1 ... x_T]                      (d_in × T)
    U S Vᵀ = svd(A X̂)        Â = U_{:r*} U_{:r*}ᵀ A       (eq. 4, left singular vectors of the product)
    U S Vᵀ = svd(B (A X̂))    B̂ = U_{:r*} U_{:r*}ᵀ B       (lora_B's input is z = A x)
and masks = top-k of |Â|, |B̂| (eq. 5) with the same tie rule as nlsr_core.method.presets.topk_mask, implemented
independently here with numpy.lexsort: sort by −|value|, then by index, keep the first k.

The rank / k rules are re-derived here too (round half up, clipped to [1, n]) so a bug there is caught.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def oracle_rank(r: int, sparsity: float, preset: str) -> int:
    raw = r * (1 - sparsity) if preset == "paper" else r * sparsity
    return max(1, min(r, _round_half_up(raw)))


def oracle_topk(scores: np.ndarray, sparsity: float, scope: str) -> np.ndarray:
    """Top-k per row (scope 'row') or over the whole matrix; ties -> lower index first."""
    flat = scores.reshape(1, -1) if scope == "matrix" else scores
    n = flat.shape[1]
    k = max(1, min(n, _round_half_up(n * (1 - sparsity))))
    mask = np.zeros(flat.shape, dtype=bool)
    index = np.arange(n)
    for row in range(flat.shape[0]):
        order = np.lexsort((index, -flat[row]))  # last key is primary: −score, then index
        mask[row, order[:k]] = True
    return mask.reshape(scores.shape)


def collect_activations(model, samples: Sequence, modules: Sequence[str]) -> dict[str, torch.Tensor]:
    """module -> X̂ᵀ (T × d_in, fp32 as the model computed it), one unpadded sample per forward."""
    named = dict(model.named_modules())
    store: dict[str, list[torch.Tensor]] = {m: [] for m in modules}
    current = {}
    handles = []
    for m in modules:
        lora_a = next(iter(named[m].lora_A.values()))

        def pre_hook(_mod, inputs, m=m):
            store[m].append(inputs[0][0, current["start"]:].detach().clone())

        handles.append(lora_a.register_forward_pre_hook(pre_hook))
    try:
        with torch.no_grad():
            for s in samples:
                current["start"] = s.start
                model(input_ids=torch.tensor([list(s.ids)]), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {m: torch.cat(xs) for m, xs in store.items()}


def oracle_masks(model, samples: Sequence, reference, sparsity: float, preset: str = "paper",
                 activations: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Masks keyed by adapter tensor name, from full fp64 SVDs of the stacked activations."""
    acts = activations if activations is not None else collect_activations(model, samples, reference.modules)
    rank = oracle_rank(reference.rank, sparsity, preset)
    scope = "row" if preset == "paper" else "matrix"
    masks = {}
    for m in reference.modules:
        a = reference.a(m).double()
        b = reference.b(m).double()
        ax = a @ acts[m].double().T                                   # r × T
        u = torch.linalg.svd(ax, full_matrices=False).U[:, :rank]
        a_hat = u @ u.T @ a
        ub = torch.linalg.svd(b @ ax, full_matrices=False).U[:, :rank]  # d_out × T product, naive on purpose
        b_hat = ub @ ub.T @ b
        masks[f"{m}.lora_A.weight"] = torch.from_numpy(oracle_topk(a_hat.abs().numpy(), sparsity, scope))
        masks[f"{m}.lora_B.weight"] = torch.from_numpy(oracle_topk(b_hat.abs().numpy(), sparsity, scope))
    return masks
