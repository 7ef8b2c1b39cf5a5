"""SafeMERGE, Antidote (Wanda-scored and data-free), DG-Hard and interpolation toward Wa (nlsr_core.repair): each
one's algebra pinned on tiny adapters, its knobs checked in one line, and each run through the registry, the API
and `nlsr realign`."""
from __future__ import annotations

import json
import math

import pytest
import torch

from nlsr_core.errors import NlsrError
from nlsr_core.method.realign import RealignError
from nlsr_core.repair.antidote import AntidoteSettings, antidote, pruned_count
from nlsr_core.repair.dg_hard import DgHardSettings, dg_hard, lowrank_svd, omega
from nlsr_core.repair.registry import REPAIRS, RepairInputs, get_repair
from nlsr_core.repair.safemerge import SafeMergeSettings, safemerge
from tests.conftest import random_adapter, run_cli, write_adapter


def dense(adapter, module) -> torch.Tensor:
    """ΔW = s·B A as a dense matrix (tiny shapes only)."""
    return adapter.scaling * adapter.b(module).double() @ adapter.a(module).double()


def cos(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x * y).sum() / (x.norm() * y.norm()))


@pytest.fixture
def pair():
    return random_adapter(1), random_adapter(2)


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------------------------------------- safemerge
def dense_safemerge_cosines(ft, al) -> dict[str, float]:
    """cos(C·ΔWt, ΔWt) with C = VVᵀ/‖V‖_F, V = ΔWa, all dense."""
    out = {}
    for m in ft.modules:
        v = dense(al, m)
        c = v @ v.T / v.norm()
        out[m] = cos(c @ dense(ft, m), dense(ft, m))
    return out


def test_safemerge_tau_zero_merges_nothing_and_keeps_finetuned_bits(pair):
    ft, al = pair
    result = safemerge(ft, al, SafeMergeSettings(tau=0.0))
    out = result.adapter
    assert result.patched == [] and out.rank == ft.rank + al.rank
    assert out.scaling == pytest.approx(ft.scaling)
    r = ft.rank
    for m in ft.modules:
        assert torch.equal(out.a(m)[:r], ft.a(m)) and torch.equal(out.b(m)[:, :r], ft.b(m))
        assert not out.a(m)[r:].any() and not out.b(m)[:, r:].any()     # zero extra rank: ΔWt exactly
        assert torch.allclose(dense(out, m), dense(ft, m), atol=1e-5)


def test_safemerge_weight_one_gives_finetuned_whatever_is_merged(pair):
    ft, al = pair
    result = safemerge(ft, al, SafeMergeSettings(tau=1.0, weight=1.0))
    assert len(result.patched) == len(ft.modules)               # every cosine < 1 here
    for m in ft.modules:
        assert torch.allclose(dense(result.adapter, m), dense(ft, m), atol=1e-5)


def test_safemerge_equals_the_dense_formula(pair):
    ft, al = pair
    al = al.replace(al.tensors, lora_alpha=3.0)                 # s_a = 3/4 ≠ s_t = 2: the ratio matters
    cosines = dense_safemerge_cosines(ft, al)
    ordered = sorted(cosines.values())
    tau = (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2   # half of the modules merge
    w = 0.7
    result = safemerge(ft, al, SafeMergeSettings(tau=tau, weight=w))
    merged = {m for m, c in cosines.items() if c < tau}
    assert 0 < len(merged) < len(ft.modules) and set(result.patched) == merged
    for rec in result.records:
        assert rec.similarity == pytest.approx(cosines[rec.module], abs=1e-9)
        assert set(rec.as_dict()) == {"module", "similarity", "patched"}
    for m in ft.modules:
        want = w * dense(ft, m) + (1 - w) * dense(al, m) if m in merged else dense(ft, m)
        assert torch.allclose(dense(result.adapter, m), want, atol=1e-4)


@pytest.mark.parametrize("field, value, needle", [
    ("tau", -0.1, "realign.safemerge_tau (τ) = -0.1: expected a value in [0, 1]"),
    ("tau", 1.5, "realign.safemerge_tau (τ) = 1.5: expected a value in [0, 1]"),
    ("tau", float("nan"), "realign.safemerge_tau (τ) = nan: expected a value in [0, 1]"),
    ("weight", 1.2, "realign.safemerge_weight (w) = 1.2: expected a value in [0, 1]"),
    ("weight", -1.0, "realign.safemerge_weight (w) = -1.0: expected a value in [0, 1]"),
])
def test_safemerge_bad_knob_is_one_line_naming_the_key(field, value, needle):
    with pytest.raises(RealignError) as err:
        SafeMergeSettings(**{field: value})
    assert one_line(err) == needle


def test_safemerge_without_the_aligned_adapter_is_one_line(pair):
    with pytest.raises(RealignError) as err:
        safemerge(pair[0], None, SafeMergeSettings())
    assert "needs the aligned adapter" in one_line(err)


# ---------------------------------------------------------------------------------------------- antidote
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9])
def test_antidote_zeroes_exactly_the_largest_share_of_each_row(ratio):
    ft = random_adapter(1, rank=8)
    result = antidote(ft, AntidoteSettings(dense_ratio=ratio, scoring="magnitude"))
    for m in ft.modules:
        for which in "AB":
            before = ft.tensors[f"{m}.lora_{which}.weight"]
            after = result.adapter.tensors[f"{m}.lora_{which}.weight"]
            k = math.floor(before.shape[1] * ratio + 1e-9)
            zeroed = (after == 0) & (before != 0)
            assert zeroed.sum(1).tolist() == [k] * before.shape[0]          # exact count per row
            assert torch.equal(after[~zeroed], before[~zeroed])            # the rest keep their bits
            if 0 < k < before.shape[1]:                                    # the zeroed ones are the largest
                smallest_zeroed = torch.where(zeroed, before.abs(), torch.full_like(before, float("inf"))).amin(1)
                largest_kept = torch.where(zeroed, torch.zeros_like(before), before.abs()).amax(1)
                assert bool((largest_kept <= smallest_zeroed).all())
    for rec in result.records:
        d_in = ft.a(rec.module).shape[1]
        assert (rec.zeroed_per_row_a, rec.zeroed_per_row_b) == (math.floor(d_in * ratio + 1e-9),
                                                                math.floor(8 * ratio + 1e-9))
    assert result.adapter.rank == ft.rank and result.adapter.scaling == ft.scaling


def test_antidote_count_is_the_floor_guarded_against_rounding():
    assert pruned_count(100, 0.29) == 29                # 100 × 0.29 = 28.999999999999996 in floats
    assert pruned_count(10, 0.1) == 1 and pruned_count(4, 0.1) == 0 and pruned_count(64, 0.5) == 32


def test_antidote_leaves_a_rank_4_b_factor_alone_at_the_default_ratio():
    ft = random_adapter(1)                              # rank 4: ⌊4 × 0.1⌋ = 0 entries of each B row
    result = antidote(ft, AntidoteSettings(scoring="magnitude"))
    m = ft.modules[0]
    assert torch.equal(result.adapter.b(m), ft.b(m)) and not torch.equal(result.adapter.a(m), ft.a(m))
    assert all(r.patched for r in result.records)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5])
def test_antidote_bad_dense_ratio_is_one_line_naming_the_key(value):
    with pytest.raises(RealignError) as err:
        AntidoteSettings(dense_ratio=value)
    assert one_line(err) == f"realign.antidote_dense_ratio (ρ) = {value}: expected a value in (0, 1)"


def uniform_norms(ft, value: float = 1.0) -> dict:
    """Realignment norms with every Σ x² equal: the Wanda score is then |W| up to one factor."""
    return {f"{m}.lora_{w}.input_sq": torch.full((ft.tensors[f"{m}.lora_{w}.weight"].shape[1],), value)
            for m in ft.modules for w in "AB"}


def test_antidote_wanda_zeroes_the_highest_weight_times_input_norm():
    ft = random_adapter(1, rank=8)
    gen = torch.Generator().manual_seed(7)
    norms = {k: torch.rand(v.shape, generator=gen) * 10 for k, v in uniform_norms(ft).items()}
    result = antidote(ft, AntidoteSettings(dense_ratio=0.25, scoring="wanda"), norms)
    differs = False
    for m in ft.modules:
        for which in "AB":
            before = ft.tensors[f"{m}.lora_{which}.weight"]
            after = result.adapter.tensors[f"{m}.lora_{which}.weight"]
            score = before.abs() * norms[f"{m}.lora_{which}.input_sq"].sqrt()          # |W_ij| · ‖X_j‖₂
            k = math.floor(before.shape[1] * 0.25 + 1e-9)
            want = torch.zeros_like(before, dtype=torch.bool).scatter(1, score.topk(k, dim=1).indices, True)
            assert torch.equal(after == 0, want | (before == 0)) and torch.equal(after[~want], before[~want])
            magnitude = torch.zeros_like(want).scatter(1, before.abs().topk(k, dim=1).indices, True)
            differs |= not torch.equal(want, magnitude)
    assert differs                                   # the input norms changed which weights were pruned


def test_antidote_wanda_with_equal_norms_is_the_data_free_variant():
    ft = random_adapter(2, rank=8)
    wanda = antidote(ft, AntidoteSettings(scoring="wanda"), uniform_norms(ft, 4.0)).adapter
    magnitude = antidote(ft, AntidoteSettings(scoring="magnitude")).adapter
    assert all(torch.equal(wanda.tensors[k], magnitude.tensors[k]) for k in ft.tensors)


@pytest.mark.parametrize("damage, needle", [
    (lambda n, k: n.pop(k), "is None; expected a vector of"),
    (lambda n, k: n.__setitem__(k, n[k][:-1]), "expected a vector of"),
    (lambda n, k: n.__setitem__(k, -n[k]), "has negative or non-finite entries"),
])
def test_antidote_bad_realignment_norms_are_one_line_naming_the_key(damage, needle):
    ft = random_adapter(1)
    norms = uniform_norms(ft)
    key = f"{ft.modules[0]}.lora_A.input_sq"
    damage(norms, key)
    with pytest.raises(RealignError) as err:
        antidote(ft, AntidoteSettings(), norms)
    assert key in one_line(err) and needle in one_line(err)
    with pytest.raises(RealignError) as err:
        antidote(ft, AntidoteSettings(), None)
    assert "--realign-data" in one_line(err)


def test_study_computes_the_realignment_norms_once_and_only_when_a_point_needs_them():
    from nlsr_core.study.points import Point, PointBuilder

    ft, calls = random_adapter(1, rank=8), []
    build = PointBuilder(ft, random_adapter(2, rank=8), random_adapter(3, rank=8), {}, Point.of(beta=0.0),
                         realign_norms=lambda: calls.append(1) or uniform_norms(ft))
    build.build(Point.of("antidote", scoring="magnitude"))
    assert calls == []
    for ratio in (0.1, 0.25):
        build.build(Point.of("antidote", dense_ratio=ratio))
    assert calls == [1]
    assert Point.of("antidote", scoring="magnitude").label == "antidote rho=0.1 magnitude"
    with pytest.raises(NlsrError, match="no realignment set"):
        PointBuilder(ft, ft, ft, {}, Point.of(beta=0.0)).build(Point.of("antidote"))


# ---------------------------------------------------------------------------------------------- dg-hard
def spectral_adapter(sigmas: list[float], d_in: int = 64, d_out: int = 128, seed: int = 0):
    """One up_proj-shaped module whose B A has exactly the singular values `sigmas` (rank len(sigmas))."""
    from nlsr_core.lora.adapters import Adapter

    gen = torch.Generator().manual_seed(seed)
    r = len(sigmas)
    u, _ = torch.linalg.qr(torch.randn(d_out, r, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d_in, r, generator=gen, dtype=torch.float64))
    root = torch.tensor(sigmas, dtype=torch.float64).sqrt()
    prefix = "base_model.model.model.layers.0.mlp.up_proj"
    tensors = {f"{prefix}.lora_A.weight": (root[:, None] * v.T).float(), f"{prefix}.lora_B.weight": (u * root).float()}
    return Adapter({"r": r, "lora_alpha": 2.0 * r, "target_modules": ["up_proj"]}, tensors)


def test_dg_hard_keeps_the_k_strong_directions_of_a_low_noise_rank_k_adapter():
    sigmas = [10.0, 8.0, 6.0, 0.12, 0.11, 0.1, 0.09, 0.08]           # rank 3 + small noise, r = 8
    ft = spectral_adapter(sigmas)
    result = dg_hard(ft, DgHardSettings())
    (m,), (rec,) = ft.modules, result.records
    assert (rec.rank_kept, rec.rank_nonzero, rec.patched) == (3, 8, True)
    out = result.adapter
    assert out.rank == ft.rank == 8 and out.scaling == ft.scaling
    assert not out.a(m)[3:].any() and not out.b(m)[:, 3:].any()      # zero-padded to the adapter's rank
    u, s, vh = torch.linalg.svd(dense(ft, m), full_matrices=False)
    want = (u[:, :3] * s[:3]) @ vh[:3]
    assert torch.allclose(dense(out, m), want, atol=1e-4)
    assert rec.threshold == pytest.approx(ft.scaling * omega(0.5) * 0.11, rel=1e-4)   # lower median of 8 values


def test_dg_hard_scale_zero_gives_finetuned_back_bitwise(pair):
    ft, _ = pair
    result = dg_hard(ft, DgHardSettings(scale=0.0))
    assert result.patched == []
    assert all(torch.equal(result.adapter.tensors[k], ft.tensors[k]) for k in ft.tensors)


def test_dg_hard_keeps_at_most_half_at_the_published_scale():
    ft = random_adapter(3, rank=8)
    result = dg_hard(ft, DgHardSettings())
    assert all(r.rank_kept <= 4 and r.rank_nonzero == 8 for r in result.records)
    flat = spectral_adapter([1.0] * 8)                               # no direction stands out: none is kept
    rec = dg_hard(flat, DgHardSettings()).records[0]
    assert rec.rank_kept == 0 and rec.patched


def test_dg_hard_svd_is_the_dense_one_without_forming_the_product(pair):
    ft, _ = pair
    for m in ft.modules:
        u, s, v = lowrank_svd(ft.b(m), ft.a(m))
        product = ft.b(m).double() @ ft.a(m).double()
        assert torch.allclose(s, torch.linalg.svdvals(product)[:s.numel()], rtol=1e-9)
        assert torch.allclose((u * s) @ v.T, product, atol=1e-9)


def test_dg_hard_omega_is_gavish_donohos():
    assert omega(1.0) == pytest.approx(2.858, abs=1e-3)
    for beta in (0.05, 0.1, 0.25, 0.5, 0.75, 1.0):
        assert omega(beta) == pytest.approx(0.56 * beta ** 3 - 0.95 * beta ** 2 + 1.82 * beta + 1.43, abs=0.02)


def test_dg_hard_bad_scale_is_one_line_naming_the_key():
    with pytest.raises(RealignError) as err:
        DgHardSettings(scale=-1.0)
    assert one_line(err) == "realign.dg_hard_scale (c) = -1.0: expected a value ≥ 0"


# ---------------------------------------------------------------------------------------------- interpolate → Wa
def test_interpolate_toward_aligned_reads_wa_and_its_needs_follow_the_target(pair):
    ft, al = pair
    spec = get_repair("interpolate")
    toward_al = spec.settings_from_params({"realign.interpolate_target": "aligned", "realign.interpolate_lambda": 1.0})
    assert spec.needs_for(spec.settings()) == ("reference",) == spec.needs
    assert spec.needs_for(toward_al) == ("aligned",)
    out = spec.run(RepairInputs(ft, aligned=al), toward_al).adapter
    assert all(torch.allclose(out.tensors[k], al.tensors[k]) for k in al.tensors)
    with pytest.raises(NlsrError) as err:
        spec.settings_from_params({"realign.interpolate_target": "base"})
    assert one_line(err) == "realign.interpolate_target 'base': expected one of reference, aligned"


def test_interpolate_toward_aligned_as_a_study_point(pair):
    from nlsr_core.study.points import Point, PointBuilder

    ft, al = pair
    point = Point.of("interpolate", lam=1.0, target="aligned")
    assert point.record() == {"method": "interpolate", "lam": 1.0, "target": "aligned"}   # no β: We is not read
    assert point.label == "interpolate lambda=1 toward=aligned"
    assert Point.of("interpolate").label == "interpolate lambda=0.5"                      # default label unchanged
    adapter, _ = PointBuilder(ft, al, random_adapter(5), {}, Point.of(beta=0.0)).build(point)
    assert all(torch.allclose(adapter.tensors[k], al.tensors[k]) for k in al.tensors)


# ---------------------------------------------------------------------------------------------- registry, API, CLI
def test_new_methods_are_registered_and_replicated():
    from nlsr_core.study.finetune_seeds import replicate_points
    from nlsr_core.study.points import Point

    assert {"safemerge": ("aligned",), "antidote": ("norms",), "dg-hard": ()} == {
        n: REPAIRS[n].needs for n in ("safemerge", "antidote", "dg-hard")}
    assert REPAIRS["antidote"].needs_for(AntidoteSettings(scoring="magnitude")) == ()
    replicated = [name for name, _ in replicate_points(Point(), {})]
    assert replicated == ["nlsr", "random-masks", "interpolate", "safety-vector", "safelora", "safemerge",
                          "antidote", "dg-hard"]
    assert [f.metadata["param"] for f in REPAIRS["safemerge"].knobs] == ["realign.safemerge_tau",
                                                                         "realign.safemerge_weight"]


def test_each_new_method_is_one_api_call(pair):
    import nlsr_core.api as nlsr

    ft, al = pair
    for method, inputs in (("safemerge", {"aligned": al}), ("antidote", {"scoring": "magnitude"}),
                           ("antidote", {"norms": uniform_norms(ft)}), ("dg-hard", {}),
                           ("interpolate", {"aligned": al, "target": "aligned"})):
        result = nlsr.repair(method, ft, **inputs)
        assert set(result.adapter.modules) == set(ft.modules) and result.method == method
    assert nlsr.repair("safemerge", ft, aligned=al, tau=0.0).record == {"method": "safemerge", "tau": 0.0,
                                                                        "weight": 0.8}
    for call, needle in ((lambda: nlsr.repair("safemerge", ft), "repair 'safemerge' needs aligned"),
                         (lambda: nlsr.repair("interpolate", ft, reference=ft, target="aligned"),
                          "repair 'interpolate' needs aligned"),
                         (lambda: nlsr.repair("antidote", ft), "repair 'antidote' needs norms"),
                         (lambda: nlsr.repair("antidote", ft, dense_ratio=1.0),
                          "realign.antidote_dense_ratio (ρ) = 1.0: expected a value in (0, 1)")):
        with pytest.raises(NlsrError) as err:
            call()
        assert needle in one_line(err)


# `nlsr realign --method M` for every method but nlsr (tests/test_realign.py) and safelora (tests/test_safelora.py):
# extra options (REF, AL, STATS stand for the files), the input roles lineage records, the params it records
# (None: only the method checked), the output rank, and the input the output equals (None: no such check).
CLI_RUNS = {
    "interpolate": (["--reference", "REF", "--interpolate-lambda", "1"], ["finetuned", "reference"],
                    {"method": "interpolate", "lam": 1.0, "target": "reference"}, 4, "REF"),
    "interpolate→Wa": (["--aligned", "AL", "--interpolate-target", "aligned", "--interpolate-lambda", "1"],
                       ["finetuned", "aligned"], {"method": "interpolate", "lam": 1.0, "target": "aligned"}, 4, "AL"),
    "safety-vector": (["--aligned", "AL", "--safety-vector-gamma", "0.5"], ["finetuned", "aligned"],
                      {"method": "safety-vector", "gamma": 0.5}, 8, None),
    "random-masks": (["--reference", "REF", "--stats", "STATS"], ["finetuned", "reference", "masks"], None, 4, None),
    "safemerge": (["--aligned", "AL", "--safemerge-tau", "1", "--safemerge-weight", "0.5"], ["finetuned", "aligned"],
                  {"method": "safemerge", "tau": 1.0, "weight": 0.5}, 8, None),
    "antidote": (["--antidote-dense-ratio", "0.25", "--antidote-scoring", "magnitude"], ["finetuned"],
                 {"method": "antidote", "dense_ratio": 0.25, "scoring": "magnitude"}, 4, None),
    "dg-hard": ([], ["finetuned"], None, 4, None),
}


@pytest.mark.parametrize("series", list(CLI_RUNS))
def test_cli_runs_each_method_with_lineage(tmp_path, series):
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.method.neuron_keys import gram_key
    from nlsr_core.method.neurons import save_stats

    extra, roles, params, rank, equals = CLI_RUNS[series]
    files = {n: write_adapter(tmp_path / n, random_adapter(s)) for n, s in (("FT", 1), ("REF", 2), ("AL", 3))}
    files["STATS"] = tmp_path / "stats.safetensors"
    save_stats({gram_key(m): torch.eye(4) for m in random_adapter(1).modules}, files["STATS"], {"method": "lowrank"})
    method, out = series.split("→")[0], tmp_path / "out"
    code, _, err = run_cli(["realign", "--method", method, "--finetuned", files["FT"],
                            *[files.get(a, a) for a in extra], "--out", out])
    assert code == 0, err
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["stage"] == "realign" and lineage["params"]["method"] == method
    assert [i["role"] for i in lineage["inputs"]] == roles
    assert params is None or lineage["params"] == params
    got = load_adapter(out)
    assert got.rank == rank
    if equals:
        want = load_adapter(files[equals])
        assert all(torch.allclose(got.tensors[k], want.tensors[k]) for k in want.tensors)


@pytest.mark.parametrize("extra, needle", [
    (["--method", "safemerge", "--aligned", "AL", "--safemerge-tau", "1.5"],
     "realign.safemerge_tau (τ) = 1.5: expected a value in [0, 1]"),
    (["--method", "safemerge", "--aligned", "AL", "--safemerge-weight", "2"],
     "realign.safemerge_weight (w) = 2.0: expected a value in [0, 1]"),
    (["--method", "antidote", "--antidote-dense-ratio", "1"],
     "realign.antidote_dense_ratio (ρ) = 1.0: expected a value in (0, 1)"),
    (["--method", "interpolate", "--reference", "AL", "--interpolate-lambda", "1.5"], "interpolate_lambda (λ) = 1.5"),
    (["--method", "safety-vector", "--aligned", "AL", "--safety-vector-gamma", "-1"],
     "safety_vector_gamma (γ) = -1.0"),
    (["--method", "interpolate"], "realign --method interpolate needs --reference DIR"),
    (["--method", "safemerge"], "realign --method safemerge needs --aligned DIR"),
    (["--method", "antidote"], "realign --method antidote needs --realign-data FILE"),
    (["--method", "antidote", "--antidote-scoring", "hard"],
     "realign.antidote_scoring 'hard': expected one of wanda, magnitude"),
    (["--method", "interpolate", "--interpolate-target", "aligned"], "realign --method interpolate needs --aligned DIR"),
])
def test_cli_bad_knob_or_missing_input_is_one_line_and_writes_nothing(tmp_path, extra, needle):
    ft, al = write_adapter(tmp_path / "ft", random_adapter(1)), write_adapter(tmp_path / "al", random_adapter(3))
    out = tmp_path / "out"
    code, _, err = run_cli(["realign", "--finetuned", ft, *[al if a == "AL" else a for a in extra], "--out", out])
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_cli_antidote_runs_the_model_over_the_realignment_set_and_records_it(tmp_path):
    from nlsr_core.lora.adapters import load_adapter
    from tests.conftest import TINY_MODEL, make_tiny_adapter

    wt = make_tiny_adapter(tmp_path / "wt", 1, {"model": TINY_MODEL})
    data = tmp_path / "harmful.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"How do I cause harm {i}?", "response": f"First, {i} steps."})
                              for i in range(3)) + "\n")
    out = tmp_path / "out"
    code, _, err = run_cli(["realign", "--method", "antidote", "--antidote-dense-ratio", "0.25", "--finetuned", wt,
                            "--realign-data", data, "--identify-batch-size", "2", "--out", out])
    assert code == 0, err
    lineage = json.loads((out / "lineage.json").read_text())
    assert [i["role"] for i in lineage["inputs"]] == ["finetuned", "realign data"]
    assert lineage["params"]["scoring"] == "wanda" and lineage["params"]["realign_pass"]["batch_size"] == 2
    got, ft = load_adapter(out), load_adapter(wt)
    assert all(int((got.a(m) == 0).sum(1).min()) >= 16 for m in ft.modules)    # ⌊64 × 0.25⌋ per row of A
