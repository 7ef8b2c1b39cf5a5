"""NLSR restoration (eqs. 7-11): similarity, selection, transplant, and the `nlsr realign` command.

Adapters here are random tensors with tiny-random's module names and shapes (no model load), except the one
test that loads the output with PeftModel.from_pretrained.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import (TARGETS, TINY_MODEL, TINY_SHAPES, random_adapter, random_masks, run_cli,
                            write_adapter)
from nlsr_core.lora.adapters import Adapter, load_adapter
from nlsr_core.errors import NlsrError
from nlsr_core.io.lineage import LINEAGE_FILE, sha256_dir, sha256_file
from nlsr_core.method.neurons import save_masks
from nlsr_core.method.realign import (RealignParams, masked_similarity, realign, select_modules, similarity_ranks,
                               transplant)

# tiny-random: hidden 64, intermediate 128, 4 heads of 16, 2 kv heads -> k/v out 32
def const_masks(adapter: Adapter, value: bool) -> dict[str, torch.Tensor]:
    return {k: torch.full(t.shape, value, dtype=torch.bool) for k, t in adapter.tensors.items()}


@pytest.fixture()
def trio(tmp_path):
    """(finetuned dir, reference dir, masks file) with lineage on the finetuned adapter."""
    ft, ref = random_adapter(1), random_adapter(2)
    lineage = {"stage": "finetune", "inputs": [], "params": {}, "model": TINY_MODEL, "weak": None}
    write_adapter(tmp_path / "ft", ft, lineage)
    write_adapter(tmp_path / "ref", ref)
    save_masks(random_masks(ft, 3), tmp_path / "masks.safetensors")
    return tmp_path / "ft", tmp_path / "ref", tmp_path / "masks.safetensors"


# --------------------------------------------------------------------------------------------- eq. 8
def dense_similarity(a_e, b_e, a_t, b_t, m_a, m_b) -> float:
    we = (b_e.double() * m_b) @ (a_e.double() * m_a)
    wt = (b_t.double() * m_b) @ (a_t.double() * m_a)
    return float((we * wt).sum() / (we.norm() * wt.norm()))


@pytest.mark.parametrize("seed,density", [(0, 0.5), (1, 0.2), (2, 0.9), (3, 1.0)])
def test_similarity_equals_dense_fp64(seed, density):
    ft, ref = random_adapter(10 + seed), random_adapter(20 + seed)
    # make the two adapters correlated so S_j spans a range, not only ~0
    ft = ft.replace({k: v + 0.7 * ref.tensors[k] for k, v in ft.tensors.items()})
    masks = random_masks(ft, seed, density)
    for m in ft.modules:
        args = (ref.a(m), ref.b(m), ft.a(m), ft.b(m), masks[f"{m}.lora_A.weight"], masks[f"{m}.lora_B.weight"])
        assert masked_similarity(*args) == pytest.approx(dense_similarity(*args), abs=1e-5)


@pytest.mark.parametrize("which,expected", [("both", 1.0), ("one", 0.0)])
def test_similarity_of_empty_regions(which, expected):
    a, b = torch.randn(4, 8), torch.randn(6, 4)
    zero_a = torch.zeros_like(a)
    m_a, m_b = torch.ones(4, 8, dtype=torch.bool), torch.ones(6, 4, dtype=torch.bool)
    a_e = zero_a if which == "both" else a
    assert masked_similarity(a_e, b, zero_a, b, m_a, m_b) == expected


# --------------------------------------------------------------------------------------------- eqs. 9-10
@pytest.mark.parametrize("preset,expected", [("paper", [2, 4, 1, 3]), ("official-code", [3, 1, 4, 2])])
def test_rank_direction_follows_preset(preset, expected):
    from nlsr_core.method.presets import get_preset

    sims = [0.2, 0.9, -0.5, 0.4]
    assert similarity_ranks(sims, get_preset(preset).patch_high_similarity) == expected


def test_ties_rank_in_model_order():
    assert similarity_ranks([0.5, 0.5, 0.1], high_first=False) == [2, 3, 1]


@pytest.mark.parametrize("preset", ["paper", "official-code"])
@pytest.mark.parametrize("p_l,delta", [(0.5, 0.2), (0.0, 1.0), (0.9, 0.5), (1.0, 0.0)])
def test_probabilities_follow_eq9(preset, p_l, delta):
    sims = torch.linspace(-1, 1, 40)[torch.randperm(40, generator=torch.Generator().manual_seed(0))].tolist()
    mods = [f"m{i}" for i in range(40)]
    recs = select_modules(mods, sims, RealignParams(preset=preset, layer_prune=p_l, delta=delta))
    for rec in recs:
        assert rec.probability == pytest.approx(min(1.0, max(0.0, p_l + delta * rec.rank / 40)))
        assert rec.patched == (rec.draw == 0) == (rec.uniform >= rec.probability)
    lowest = min(recs, key=lambda r: r.similarity)
    # paper: the least similar module has the smallest P_j (most likely patched); official: the largest
    assert lowest.rank == (1 if preset == "paper" else 40)


def test_direction_shows_in_the_draws():
    sims = torch.linspace(-1, 1, 400).tolist()
    mods = [f"m{i}" for i in range(400)]
    for preset, low_more_patched in (("paper", True), ("official-code", False)):
        recs = select_modules(mods, sims, RealignParams(preset=preset, layer_prune=0.0, delta=1.0, seed=1))
        low = sum(r.patched for r in recs[:200])
        high = sum(r.patched for r in recs[200:])
        assert (low > high + 50) == low_more_patched


def test_same_seed_same_draws_other_seed_other_draws():
    sims = torch.rand(100, generator=torch.Generator().manual_seed(5)).tolist()
    mods = [f"m{i}" for i in range(100)]
    draws = {s: [r.draw for r in select_modules(mods, sims, RealignParams(seed=s))] for s in (0, 0, 1)}
    again = [r.draw for r in select_modules(mods, sims, RealignParams(seed=0))]
    assert draws[0] == again
    assert draws[0] != draws[1]


@pytest.mark.parametrize("tau", [-2.0, 0.0, 0.3, 2.0])
def test_threshold_patches_modules_below_tau(tau):
    sims = [-0.5, 0.1, 0.29, 0.31, 0.9]
    recs = select_modules([f"m{i}" for i in range(5)], sims, RealignParams(selection="threshold", tau=tau))
    assert [r.patched for r in recs] == [s < tau for s in sims]
    assert all(r.probability is None and r.draw is None for r in recs)


# --------------------------------------------------------------------------------------------- eq. 11
@pytest.mark.parametrize("value, expected", [(True, "reference"), (False, "finetuned")],
                         ids=["all-ones masks reproduce the reference", "zero masks leave Wt unchanged"])
def test_constant_masks_with_every_module_patched(value, expected):
    ft, ref = random_adapter(1), random_adapter(2)
    res = realign(ft, ref, const_masks(ft, value), RealignParams(selection="threshold", tau=2.0))
    assert len(res.patched) == len(ft.modules)
    source = {"reference": ref, "finetuned": ft}[expected]
    for k, t in res.adapter.tensors.items():
        assert torch.equal(t, source.tensors[k])


def test_transplant_takes_masked_entries_from_reference_only():
    ft, ref = random_adapter(1), random_adapter(2)
    masks = random_masks(ft, 4)
    res = realign(ft, ref, masks, RealignParams(seed=3))
    assert 0 < len(res.patched) < len(ft.modules)
    for rec in res.records:
        for w in "AB":
            key = f"{rec.module}.lora_{w}.weight"
            out, m = res.adapter.tensors[key], masks[key]
            if rec.patched:
                assert torch.equal(out[m], ref.tensors[key][m]) and torch.equal(out[~m], ft.tensors[key][~m])
            else:
                assert torch.equal(out, ft.tensors[key])  # bitwise unchanged


def test_transplant_is_eq11():
    t, s = torch.randn(5, 7), torch.randn(5, 7)
    m = torch.rand(5, 7) < 0.5
    assert torch.equal(transplant(t, s, m), t * (~m) + s * m)


# --------------------------------------------------------------------------------------------- params
@pytest.mark.parametrize("kwargs,needle", [
    ({"layer_prune": 1.5}, "layer_prune"), ({"layer_prune": -0.1}, "layer_prune"),
    ({"delta": -0.2}, "delta"), ({"selection": "greedy"}, "selection"), ({"preset": "mine"}, "preset"),
    ({"tau": math.nan}, "tau"),
])
def test_bad_params_raise_one_line(kwargs, needle):
    with pytest.raises(NlsrError, match=needle) as exc:
        RealignParams(**kwargs)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------------------------- command
def test_cli_writes_peft_adapter_and_lineage(trio, tmp_path, tiny):
    from peft import PeftModel

    from nlsr_core.lora.models import ModelSpec, load_model

    ft, ref, masks = trio
    out = tmp_path / "out"
    code, stdout, err = run_cli(["realign", "--finetuned", ft, "--reference", ref, "--masks", masks, "--out", out,
                                 "--seed", 7, "--layer-prune", 0.3])
    assert code == 0, err
    rec = json.loads((out / LINEAGE_FILE).read_text())
    digests = {i["role"]: i["sha256"] for i in rec["inputs"]}
    assert digests == {"finetuned": sha256_dir(ft), "reference": sha256_dir(ref), "masks": sha256_file(masks)}
    assert rec["params"]["seed"] == 7 and rec["params"]["layer_prune"] == 0.3 and rec["seed"] == 7
    assert rec["model"] == TINY_MODEL and rec["weak"] is None
    assert len(rec["modules"]) == 14
    assert {"similarity", "rank", "probability", "uniform", "draw", "patched"} <= set(rec["modules"][0])
    assert rec["patched_count"] == sum(m["patched"] for m in rec["modules"])
    assert rec["patched_fraction"] == pytest.approx(rec["patched_count"] / 14)
    model = PeftModel.from_pretrained(load_model(ModelSpec("tiny-random")).model, str(out))
    loaded = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    saved = load_adapter(out)
    assert all(torch.equal(loaded[k], v) for k, v in saved.tensors.items())


def test_cli_same_inputs_same_bytes(trio, tmp_path):
    ft, ref, masks = trio
    outs = [tmp_path / "o1", tmp_path / "o2"]
    for out in outs:
        assert run_cli(["realign", "--finetuned", ft, "--reference", ref, "--masks", masks, "--out", out])[0] == 0
    assert sha256_dir(outs[0], exclude=()) == sha256_dir(outs[1], exclude=())


@pytest.mark.parametrize("style", ["listed", "repeated"])
def test_cli_repairs_several_adapters(trio, tmp_path, style):
    ft, ref, masks = trio
    ft2 = write_adapter(tmp_path / "customer2", random_adapter(9))
    fts = ["--finetuned", ft, ft2] if style == "listed" else ["--finetuned", ft, "--finetuned", ft2]
    code, _, err = run_cli(["realign", *fts, "--reference", ref, "--masks", masks, "--out", tmp_path / "many"])
    assert code == 0, err
    for name in ("ft", "customer2"):
        assert (tmp_path / "many" / name / "adapter_model.safetensors").is_file()
    rec = json.loads((tmp_path / "many" / "customer2" / LINEAGE_FILE).read_text())
    assert "model" not in rec or rec["model"] is None or rec["model"] == TINY_MODEL


# --------------------------------------------------------------------------------------------- bad input
def _bad_finetuned(kind: str, tmp: Path) -> list[str]:
    """Write a broken variant of the finetuned adapter (or masks) and return the CLI arguments to use."""
    ft = random_adapter(1)
    masks = tmp / "masks.safetensors"
    if kind == "shape":
        ft = random_adapter(1, shapes={**TINY_SHAPES, "mlp.up_proj": (64, 96)})
    elif kind == "names":
        ft = random_adapter(1, layers=3)
    elif kind == "rank":
        ft = random_adapter(1, rank=8)
    elif kind == "targets":
        ft = random_adapter(1, targets=TARGETS[:4])
    elif kind == "alpha":
        ft = random_adapter(1, alpha=16.0)
    elif kind in ("nan", "inf"):
        key = sorted(ft.tensors)[3]
        ft.tensors[key][0, 0] = math.nan if kind == "nan" else math.inf
    write_adapter(tmp / "ft", ft)
    if kind == "pickle":
        (tmp / "ft" / "adapter_model.safetensors").unlink()
        torch.save(ft.tensors, tmp / "ft" / "adapter_model.bin")
    good = random_adapter(1)
    if kind == "mask-keys":
        save_masks({k.replace("layers.1", "layers.7"): v for k, v in random_masks(good, 0).items()}, masks)
    elif kind == "mask-shape":
        save_masks({k: v.T.contiguous() if "lora_A" in k else v for k, v in random_masks(good, 0).items()}, masks)
    elif kind == "mask-dtype":
        from safetensors.torch import save_file
        save_file({k: v.float() for k, v in random_masks(good, 0).items()}, str(masks))
    else:
        save_masks(random_masks(good, 0), masks)
    return ["--finetuned", tmp / "ft", "--reference", tmp / "ref", "--masks", masks]


@pytest.mark.parametrize("kind,needle", [
    ("shape", "shape"), ("names", "different modules"), ("rank", "rank"), ("targets", "targets"),
    ("alpha", "scaling"), ("nan", "NaN"), ("inf", "Inf"), ("pickle", "--allow-pickle"),
    ("mask-keys", "masks.safetensors"), ("mask-shape", "shape"), ("mask-dtype", "bool"),
])
def test_bad_inputs_one_line_exit_1_nothing_written(tmp_path, kind, needle):
    write_adapter(tmp_path / "ref", random_adapter(2))
    args = _bad_finetuned(kind, tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["realign", *args, "--out", out])
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_pickle_adapter_accepted_with_opt_in(tmp_path):
    write_adapter(tmp_path / "ref", random_adapter(2))
    args = _bad_finetuned("pickle", tmp_path)
    code, _, err = run_cli(["realign", *args, "--out", tmp_path / "out", "--allow-pickle"])
    assert code == 0, err
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("extra,needle", [
    (["--layer-prune", "1.5"], "layer_prune"), (["--layer-prune", "-0.5"], "layer_prune"),
    (["--delta", "-0.1"], "delta"), (["--selection", "best"], "selection"), (["--preset", "x"], "preset"),
    (["--method", "magic"], "--method"),
])
def test_bad_params_cli(trio, tmp_path, extra, needle):
    ft, ref, masks = trio
    out = tmp_path / "out"
    code, _, err = run_cli(["realign", "--finetuned", ft, "--reference", ref, "--masks", masks, "--out", out, *extra])
    assert code == 1 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


@pytest.mark.parametrize("drop,needle", [("--reference", "--reference"), ("--masks", "--masks")])
def test_missing_required_input(trio, tmp_path, drop, needle):
    ft, ref, masks = trio
    args = {"--finetuned": ft, "--reference": ref, "--masks": masks}
    args.pop(drop)
    flat = [x for kv in args.items() for x in kv]
    code, _, err = run_cli(["realign", *flat, "--out", tmp_path / "out"])
    assert code == 1 and needle in err and not (tmp_path / "out").exists()


def test_several_adapters_one_bad_writes_nothing(trio, tmp_path):
    ft, ref, masks = trio
    bad = random_adapter(1)
    bad.tensors[sorted(bad.tensors)[0]][0, 0] = math.nan
    write_adapter(tmp_path / "bad", bad)
    code, _, err = run_cli(["realign", "--finetuned", ft, tmp_path / "bad", "--reference", ref, "--masks", masks,
                            "--out", tmp_path / "many"])
    assert code == 1 and "bad" in err
    assert not (tmp_path / "many").exists()


def test_realign_loads_no_model_code(trio, tmp_path):
    """The operator path imports neither transformers nor peft (no base model, no tokenizer)."""
    import os
    import subprocess
    import sys

    ft, ref, masks = trio
    code = ("import sys\nfrom stages.cli import main\n"
            f"try:\n    main(['realign', '--finetuned', {str(ft)!r}, '--reference', {str(ref)!r}, '--masks', "
            f"{str(masks)!r}, '--out', {str(tmp_path / 'o')!r}])\nexcept SystemExit as e:\n    assert not e.code\n"
            "print('HEAVY', sorted(m for m in ('transformers', 'peft', 'trl') if m in sys.modules))\n")
    env = {**os.environ, "NLSR_TRACKING": "off"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
