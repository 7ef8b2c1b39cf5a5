"""SafeLoRA baseline: C is a projection, the factored cosine equals the dense one, modules above τ untouched."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import run_cli
from nlsr_core.errors import NlsrError
from nlsr_core.io.lineage import LINEAGE_FILE, sha256_dir
from nlsr_core.repair.safelora import SafeLoraParams, column_basis, projected_cosine, projector, safelora
from tests.conftest import TINY_MODEL, random_adapter, write_adapter


def dense_c(a_a, b_a, scale, projection):
    """C as a dense d_out×d_out matrix, computed the obvious way in fp64 (test only)."""
    v = scale * b_a.double() @ a_a.double()
    if projection == "frobenius":
        return v @ v.T / v.norm()
    u, s, _ = torch.linalg.svd(v, full_matrices=False)
    u = u[:, s > 1e-6 * s[0]]
    return u @ u.T


@pytest.mark.parametrize("rank,d_out,d_in", [(4, 64, 32), (8, 32, 128), (4, 3, 16)])
def test_c_is_an_orthogonal_projection_onto_col_v(rank, d_out, d_in):
    gen = torch.Generator().manual_seed(rank + d_out)
    a, b = torch.randn(rank, d_in, generator=gen), torch.randn(d_out, rank, generator=gen)
    u = column_basis(a, b)
    c = u @ u.T
    v = b.double() @ a.double()
    assert u.shape[1] == min(rank, d_out)
    assert torch.allclose(c @ c, c, atol=1e-10)          # idempotent
    assert torch.allclose(c, c.T, atol=1e-12)            # symmetric
    assert torch.allclose(c @ v, v, atol=1e-9)           # leaves the safety subspace itself alone
    assert torch.allclose(c, dense_c(a, b, 2.0, "orthogonal"), atol=1e-9)


def test_rank_deficient_v_gives_smaller_basis():
    a = torch.randn(4, 20)
    b = torch.randn(30, 4)
    b[:, 2:] = 0.0  # only two directions used
    assert column_basis(a, b).shape[1] == 2
    assert column_basis(a, torch.zeros(30, 4)).shape[1] == 0


def test_literal_formula_is_not_idempotent_and_matches_dense():
    """SafeLoRA's own C = VVᵀ/‖V‖_F, kept as projection='frobenius', is not a projection (why we default away)."""
    gen = torch.Generator().manual_seed(0)
    a, b, bt = torch.randn(4, 16, generator=gen), torch.randn(24, 4, generator=gen), torch.randn(24, 4, generator=gen)
    c = dense_c(a, b, 2.0, "frobenius")
    assert not torch.allclose(c @ c, c, atol=1e-3)
    assert torch.allclose(projector(a, b, 2.0, "frobenius")(bt.double()), c @ bt.double(), atol=1e-9)


@pytest.mark.parametrize("projection", ["orthogonal", "frobenius"])
def test_factored_cosine_equals_dense(projection):
    gen = torch.Generator().manual_seed(1)
    a_a, b_a = torch.randn(4, 16, generator=gen), torch.randn(24, 4, generator=gen)
    a_t, b_t = torch.randn(4, 16, generator=gen), torch.randn(24, 4, generator=gen) + b_a
    cos, cb = projected_cosine(projector(a_a, b_a, 2.0, projection), a_t, b_t)
    dw = b_t.double() @ a_t.double()
    cdw = dense_c(a_a, b_a, 2.0, projection) @ dw
    assert cos == pytest.approx(float((cdw * dw).sum() / (cdw.norm() * dw.norm())), abs=1e-9)
    assert torch.allclose(cb @ a_t.double(), cdw, atol=1e-8)


@pytest.mark.parametrize("tau", [-2.0, 0.3, 0.6, 0.9, 2.0])
def test_only_modules_below_tau_are_projected(tau):
    aligned = random_adapter(2)
    ft = random_adapter(1)
    # half the modules stay close to the aligned update, half drift away: cosines spread over [0, 1]
    ft = ft.replace({k: (aligned.tensors[k] + (0.1 if i % 4 < 2 else 3.0) * v)
                     for i, (k, v) in enumerate(sorted(ft.tensors.items()))})
    res = safelora(ft, aligned, SafeLoraParams(tau=tau))
    assert [r.projected for r in res.records] == [r.cosine < tau for r in res.records]
    for rec in res.records:
        a_key, b_key = f"{rec.module}.lora_A.weight", f"{rec.module}.lora_B.weight"
        assert torch.equal(res.adapter.tensors[a_key], ft.tensors[a_key])
        if rec.projected:
            c = dense_c(aligned.a(rec.module), aligned.b(rec.module), aligned.scaling, "orthogonal")
            assert torch.allclose(res.adapter.tensors[b_key].double(), c @ ft.tensors[b_key].double(), atol=1e-5)
        else:
            assert torch.equal(res.adapter.tensors[b_key], ft.tensors[b_key])  # bitwise untouched
    if tau == 0.6:
        assert 0 < sum(r.projected for r in res.records) < len(res.records)


def test_projecting_twice_changes_nothing():
    aligned, ft = random_adapter(2), random_adapter(1)
    once = safelora(ft, aligned, SafeLoraParams(tau=2.0)).adapter
    twice = safelora(once, aligned, SafeLoraParams(tau=2.0))
    assert all(r.cosine == pytest.approx(1.0, abs=1e-6) for r in twice.records)
    for k, v in twice.adapter.tensors.items():
        assert torch.allclose(v, once.tensors[k], atol=1e-5)


@pytest.mark.parametrize("kwargs,needle", [({"tau": float("nan")}, "tau"), ({"projection": "x"}, "projection")])
def test_bad_params(kwargs, needle):
    with pytest.raises(NlsrError, match=needle):
        SafeLoraParams(**kwargs)


def test_cli_safelora_writes_adapter_and_lineage(tmp_path):
    lineage = {"stage": "finetune", "inputs": [], "params": {}, "model": TINY_MODEL, "weak": "w0"}
    ft = write_adapter(tmp_path / "ft", random_adapter(1), lineage)
    al = write_adapter(tmp_path / "al", random_adapter(2))
    out = tmp_path / "out"
    code, _, err = run_cli(["realign", "--method", "safelora", "--finetuned", ft, "--aligned", al, "--out", out,
                            "--safelora-tau", "0.5"])
    assert code == 0, err
    rec = json.loads((out / LINEAGE_FILE).read_text())
    assert rec["params"] == {"method": "safelora", "tau": 0.5, "projection": "orthogonal"}
    assert {i["role"]: i["sha256"] for i in rec["inputs"]} == {"finetuned": sha256_dir(ft), "aligned": sha256_dir(al)}
    assert rec["model"] == TINY_MODEL and rec["weak"] == "w0"
    assert rec["patched_count"] == sum(m["projected"] for m in rec["modules"])


@pytest.mark.parametrize("args,needle", [
    ([], "--aligned"), (["--aligned", "ALIGNED", "--safelora-projection", "sideways"], "projection"),
])
def test_cli_safelora_bad_input(tmp_path, args, needle):
    ft = write_adapter(tmp_path / "ft", random_adapter(1))
    al = write_adapter(tmp_path / "al", random_adapter(2, rank=8))
    args = [str(al) if a == "ALIGNED" else a for a in args]
    code, _, err = run_cli(["realign", "--method", "safelora", "--finetuned", ft, *args, "--out", tmp_path / "o"])
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_cli_safelora_rank_mismatch(tmp_path):
    ft = write_adapter(tmp_path / "ft", random_adapter(1))
    al = write_adapter(tmp_path / "al", random_adapter(2, rank=8))
    code, _, err = run_cli(["realign", "--method", "safelora", "--finetuned", ft, "--aligned", al, "--out",
                            tmp_path / "o"])
    assert code == 1 and "rank" in err and not (tmp_path / "o").exists()
