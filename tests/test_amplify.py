"""amplify: eq. (2) scales every module's product B·A by exactly (1+β) (paper) or (2β)² (official-code), touches
nothing else and loads no model; eq. (1) interpolation matches a dense least-squares oracle."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import random_adapter, run_cli

# (d_in, d_out) per module, the order of tests.conftest.TINY_SHAPES
SHAPES = {"self_attn.q_proj": (64, 64), "mlp.up_proj": (64, 128), "mlp.down_proj": (128, 64)}


def make_adapter(rank: int = 4, alpha: float = 8.0, seed: int = 0, layers: int = 2, b_scale: float = 1.0):
    adapter = random_adapter(seed, rank=rank, layers=layers, alpha=alpha, shapes=SHAPES,
                             targets=["down_proj", "q_proj", "up_proj"])
    return adapter.replace({k: v * b_scale if ".lora_B." in k else v for k, v in adapter.tensors.items()})


def delta(adapter, module) -> torch.Tensor:
    """Dense ΔW = s·B A in float64 (test oracle only)."""
    return adapter.scaling * adapter.b(module).double() @ adapter.a(module).double()


def assert_product_scaled(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-6) -> None:
    """‖got − want‖_F ≤ tol·‖want‖_F: exact up to the fp32 rounding of the stored factors (~1e-7 each)."""
    assert float(torch.linalg.norm(got - want)) <= tol * float(torch.linalg.norm(want)) + 1e-12


@pytest.mark.parametrize("preset, factor", [
    ("paper", lambda beta: 1 + beta),
    ("official-code", lambda beta: (2 * beta) ** 2),
])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 3.0])
def test_extrapolate_scales_each_product_exactly(preset, factor, beta):
    from nlsr_core.method.amplify import extrapolate, product_factor

    aligned = make_adapter()
    before = {k: t.clone() for k, t in aligned.tensors.items()}
    reference = extrapolate(aligned, beta, preset)
    assert product_factor(beta, preset) == pytest.approx(factor(beta))
    for module in aligned.modules:
        assert_product_scaled(delta(reference, module), factor(beta) * delta(aligned, module))
    assert reference.config == aligned.config and reference.tensors.keys() == aligned.tensors.keys()
    assert all(torch.equal(aligned.tensors[k], before[k]) for k in before)   # the input is not modified


def test_official_code_at_the_paper_beta_is_3_24():
    from nlsr_core.method.amplify import product_factor

    assert product_factor(0.9, "official-code") == pytest.approx(3.24)
    assert product_factor(0.9, "paper") == pytest.approx(1.9)


@pytest.mark.parametrize("beta, preset, expected", [
    (-0.1, "paper", "amplify.beta: -0.1"),
    (float("nan"), "paper", "amplify.beta: nan"),
    (0.9, "papr", "nlsr.preset: 'papr' is unknown"),
])
def test_extrapolate_rejects_bad_parameters(beta, preset, expected):
    from nlsr_core.method.amplify import extrapolate
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError, match=expected.replace("(", r"\(")):
        extrapolate(make_adapter(), beta, preset)


def interpolation_oracle(aligned, strong, alpha, module):
    """Dense eq. (1) target and its least-squares fit with A fixed to A_a (B_e = T A_aᵀ (A_a A_aᵀ)⁻¹ / s_a)."""
    target = alpha * delta(strong, module) + (1 - alpha) * delta(aligned, module)
    a = aligned.a(module).double()
    b_fit = torch.linalg.lstsq(a.T, target.T).solution.T / aligned.scaling   # min ‖s_a B A − T‖
    fit = aligned.scaling * b_fit @ a
    return target, b_fit, float(torch.linalg.norm(target - fit) / torch.linalg.norm(target))


@pytest.mark.parametrize("alpha", [0.3, 0.9, 1.0])
def test_interpolate_matches_the_dense_least_squares_oracle(alpha):
    from nlsr_core.method.amplify import interpolate

    aligned, strong = make_adapter(seed=0), make_adapter(seed=1, alpha=16.0)   # other basis, other scaling
    reference, residuals = interpolate(aligned, strong, alpha)
    for module in aligned.modules:
        _, b_fit, residual = interpolation_oracle(aligned, strong, alpha, module)
        assert torch.equal(reference.a(module), aligned.a(module))
        torch.testing.assert_close(reference.b(module).double(), b_fit, rtol=1e-4, atol=1e-5)
        assert residuals[module] == pytest.approx(residual, rel=1e-4, abs=1e-6)
        assert residuals[module] > 0.1   # an unrelated basis cannot be represented exactly: recorded, not hidden


def test_interpolate_is_exact_when_the_strong_adapter_shares_the_row_space():
    """W_strong = Wa with B scaled by 3: ΔWe = (3α + 1 − α)·ΔWa exactly, residual 0."""
    from nlsr_core.method.amplify import interpolate

    aligned = make_adapter(seed=0)
    strong = aligned.replace({k: t * 3 if ".lora_B." in k else t for k, t in aligned.tensors.items()})
    reference, residuals = interpolate(aligned, strong, 0.25)
    for module in aligned.modules:
        assert_product_scaled(delta(reference, module), (3 * 0.25 + 0.75) * delta(aligned, module))
        assert residuals[module] < 1e-6


@pytest.mark.parametrize("alpha", [0.0, 1.5, -0.2])
def test_interpolate_needs_alpha_in_0_1(alpha):
    from nlsr_core.method.amplify import interpolate
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError, match="0 < beta <= 1"):
        interpolate(make_adapter(), make_adapter(seed=1), alpha)


def test_interpolate_refuses_another_rank():
    from nlsr_core.lora.adapters import AdapterError
    from nlsr_core.method.amplify import interpolate

    with pytest.raises(AdapterError, match="rank"):
        interpolate(make_adapter(rank=4), make_adapter(rank=8), 0.5)


# ------------------------------------------------------------------------------------------------- the stage
@pytest.fixture
def aligned_dir(tmp_path) -> Path:
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.lineage import write_lineage

    path = tmp_path / "adapters/aligned/dpo/aligned"
    save_adapter(make_adapter(), path)
    write_lineage(path, "align", [], {}, model={"name": "tiny-random", "source": "in-process", "digest": "d"},
                  model_spec={"name": "tiny-random", "seed": 0, "trust_remote_code": False},
                  weak="adapters/aligned/dpo/weak", method="dpo")
    return path


def test_stage_writes_the_reference_with_inherited_lineage_and_loads_no_model(aligned_dir, tmp_path):
    out = tmp_path / "ref"
    code = ("import sys\nfrom stages.cli import main\n"
            f"try:\n    main(['amplify', '--aligned', {str(aligned_dir)!r}, '--out', {str(out)!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('HEAVY', [m for m in ('transformers', 'peft', 'trl') if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.io.lineage import read_lineage, sha256_dir

    aligned, reference = load_adapter(aligned_dir), load_adapter(out)
    for module in aligned.modules:
        assert_product_scaled(delta(reference, module), 1.9 * delta(aligned, module))
    record, parent = read_lineage(out), read_lineage(aligned_dir)
    assert {k: record[k] for k in ("model", "model_spec", "weak", "method")} == \
        {k: parent[k] for k in ("model", "model_spec", "weak", "method")}
    assert record["inputs"] == [{"role": "aligned", "path": str(aligned_dir), "sha256": sha256_dir(aligned_dir)}]
    assert record["params"] == {"beta": 0.9, "preset": "paper", "mode": "extrapolate"}
    assert record["product_factor"] == pytest.approx(1.9)
    assert json.loads((out / "adapter_config.json").read_text()) == aligned.config


def test_stage_takes_an_aligned_adapter_trained_elsewhere(aligned_dir, tmp_path):
    """No lineage.json (a user's own Wa, README "Repair your own adapters"): the reference is written, naming no
    base model or W0 (identify takes them from --model / --weak), a damaged lineage.json is still an error."""
    from nlsr_core.io.lineage import read_lineage

    (aligned_dir / "lineage.json").unlink()
    code, _, err = run_cli(["amplify", "--aligned", aligned_dir, "--out", tmp_path / "ref"])
    assert code == 0, err
    record = read_lineage(tmp_path / "ref")
    assert record["inputs"][0]["role"] == "aligned" and "model" not in record and "weak" not in record
    (aligned_dir / "lineage.json").write_text("{")
    code, _, err = run_cli(["amplify", "--aligned", aligned_dir, "--out", tmp_path / "ref2"])
    assert code == 1 and "not valid JSON" in err and not (tmp_path / "ref2").exists()


def test_stage_interpolates_toward_a_strong_adapter(aligned_dir, tmp_path):
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.lineage import read_lineage

    save_adapter(make_adapter(seed=5), tmp_path / "strong")
    out = tmp_path / "ref"
    code, _, err = run_cli(["amplify", "--aligned", aligned_dir, "--out", out, "--mode", "interpolate",
                            "--strong", tmp_path / "strong", "--beta", "0.5"])
    assert code == 0, err
    record = read_lineage(out)
    assert [i["role"] for i in record["inputs"]] == ["aligned", "strong"]
    assert 0 < record["residual"]["max"] <= 1 and not math.isnan(record["residual"]["mean"])


@pytest.mark.parametrize("extra, expected", [
    (["--beta", "-1"], "amplify.beta: -1.0"),
    (["--preset", "nope"], "nlsr.preset: 'nope'"),
    (["--mode", "sideways"], "amplify.mode: 'sideways'"),
    (["--mode", "interpolate"], "--strong DIR is required"),
    (["--mode", "interpolate", "--strong", "missing-dir", "--beta", "0.5"], "missing-dir: not an adapter directory"),
])
def test_stage_bad_input_is_one_line_and_writes_nothing(aligned_dir, tmp_path, extra, expected):
    out = tmp_path / "ref"
    code, _, err = run_cli(["amplify", "--aligned", aligned_dir, "--out", out, *extra])
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".ref.tmp-*"))


def test_stage_refuses_a_missing_aligned_adapter(tmp_path):
    code, _, err = run_cli(["amplify", "--aligned", tmp_path / "none", "--out", tmp_path / "ref"])
    assert code == 1 and "not an adapter directory" in err
    assert not (tmp_path / "ref").exists()
