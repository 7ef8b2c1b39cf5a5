"""Training-free baselines (nlsr_core.repair.baselines): each one's algebra pinned on tiny adapters."""
from __future__ import annotations

import pytest
import torch

from nlsr_core.repair.baselines import interpolate, random_mask_realign, random_masks_like, safety_vector
from nlsr_core.method.realign import RealignError, RealignParams, realign
from tests.conftest import random_adapter, random_masks


def dense(adapter, module) -> torch.Tensor:
    """ΔW = s·B A as a dense matrix (tiny shapes only)."""
    return adapter.scaling * adapter.b(module).double() @ adapter.a(module).double()


@pytest.fixture
def pair():
    return random_adapter(1), random_adapter(2)


def test_interpolate_endpoints_and_midpoint(pair):
    ft, ref = pair
    assert all(torch.equal(interpolate(ft, ref, 0.0).adapter.tensors[k], ft.tensors[k]) for k in ft.tensors)
    one = interpolate(ft, ref, 1.0).adapter
    assert all(torch.allclose(one.tensors[k], ref.tensors[k]) for k in ft.tensors)
    half = interpolate(ft, ref, 0.5)
    key = next(iter(ft.tensors))
    assert torch.allclose(half.adapter.tensors[key], (ft.tensors[key] + ref.tensors[key]) / 2)
    assert half.summary()["patched_count"] == len(ft.modules)
    assert all(r.relative_change > 0 for r in half.records)


@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan"), True])
def test_interpolate_refuses_lambda_outside_unit_interval(pair, lam):
    with pytest.raises(RealignError, match="interpolate_lambda"):
        interpolate(*pair, lam)


def test_safety_vector_is_exact_in_product_space(pair):
    ft, al = pair
    for gamma in (0.0, 0.5, 2.0):
        out = safety_vector(ft, al, gamma).adapter
        assert out.rank == ft.rank + al.rank and out.scaling == pytest.approx(ft.scaling)
        for m in ft.modules:
            assert torch.allclose(dense(out, m), dense(ft, m) + gamma * dense(al, m), atol=1e-5)


def test_safety_vector_with_other_scaling_and_refuses_negative_gamma(pair):
    ft, al = pair
    al2 = al.replace(al.tensors, lora_alpha=3.0)           # s_a = 3/4 ≠ s_t = 2
    out = safety_vector(ft, al2, 1.0).adapter
    m = ft.modules[0]
    assert torch.allclose(dense(out, m), dense(ft, m) + dense(al2, m), atol=1e-5)
    with pytest.raises(RealignError, match="safety_vector_gamma"):
        safety_vector(ft, al, -1.0)


def test_random_masks_keep_exact_counts_and_are_seeded(pair):
    ft, _ = pair
    masks = random_masks(ft, seed=7, density=0.3)
    a, b, c = random_masks_like(masks, 0), random_masks_like(masks, 0), random_masks_like(masks, 1)
    for key, mask in masks.items():
        assert a[key].shape == mask.shape and a[key].dtype == torch.bool
        assert int(a[key].sum()) == int(mask.sum())
        assert torch.equal(a[key], b[key])
    assert any(not torch.equal(a[k], c[k]) for k in masks)
    assert any(not torch.equal(a[k], masks[k]) for k in masks)


def test_random_mask_realign_is_nlsr_with_the_drawn_masks(pair):
    ft, ref = pair
    masks = random_masks(ft, seed=3)
    params = RealignParams(layer_prune=0.0, seed=4)
    got = random_mask_realign(ft, ref, masks, params)
    want = realign(ft, ref, random_masks_like(masks, 4), params)
    assert all(torch.equal(got.adapter.tensors[k], want.adapter.tensors[k]) for k in ft.tensors)


def test_random_masks_refuse_a_kept_fraction_of_zero(pair):
    ft, ref = pair
    empty = {k: torch.zeros_like(t, dtype=torch.bool) for k, t in ft.tensors.items()}
    with pytest.raises(RealignError, match="keep no entry"):
        random_mask_realign(ft, ref, empty, RealignParams())
