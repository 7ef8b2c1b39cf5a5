"""Operating points (nlsr_core.study.points): grids, the calibrate rule on a synthetic frontier, split disjointness,
and adapters built from stored statistics equal to the realign/safelora paths they stand for."""
from __future__ import annotations


import pytest
import torch

from nlsr_core.method.amplify import extrapolate
from nlsr_core.errors import NlsrError
from nlsr_core.method.neurons import masks_from_stats
from nlsr_core.method.realign import RealignParams, realign
from nlsr_core.repair.safelora import SafeLoraParams, safelora
from nlsr_core.study.points import (Point, PointBuilder, ablation_points, check_disjoint, choose_point, grid_points,
                             parse_target)
from tests.conftest import run_cli
from tests.conftest import random_adapter


def test_grid_is_the_product_then_safelora_without_duplicates():
    base = Point.of(sparsity=0.5, layer_prune=0.0, seed=3)
    points = grid_points(base, {"sparsity": [0.2, 0.5, 0.2], "layer_prune": [0.0, 0.5], "seed": []}, [0.3])
    nlsr = [(p.identification.sparsity, p.settings.layer_prune) for p in points if p.method == "nlsr"]
    assert nlsr == [(0.2, 0.0), (0.2, 0.5), (0.5, 0.0), (0.5, 0.5)]
    assert all(p.settings.seed == 3 for p in points if p.method == "nlsr")  # an empty axis keeps the base value
    assert points[-1] == Point.of("safelora", tau=0.3)
    assert grid_points(base, {}) == [base]
    with pytest.raises(NlsrError, match="grid axis 'beta'"):
        grid_points(base, {"beta": [0.1]})


def test_labels_name_what_differs():
    assert Point.of(sparsity=0.35, layer_prune=0.5).label == "nlsr P_SR=0.35 P_L=0.5"
    assert Point.of(seed=2, identifier="wanda").label == "nlsr P_SR=0.35 P_L=0 seed=2 wanda"
    assert Point.of("safelora", tau=0.4).label == "safelora tau=0.4"
    assert Point("safelora").record() == {"method": "safelora", "tau": 0.6, "projection": "orthogonal"}


def test_ablation_rows_change_one_thing_each():
    base = Point()
    rows = ablation_points(base, [0, 1, 2])
    names = [name for _, name, _ in rows]
    assert names == ["pipeline setting", "preset official-code", "identify wanda", "identify snip",
                     "identify preference-snip", "identify random", "no amplification (beta 0)", "threshold selection", "seed 0", "seed 1",
                     "seed 2"]
    for _, name, point in rows[1:]:
        a, b = point.record(), base.record()
        changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert len(changed) <= 1, (name, changed)


def _row(name, sparsity, layer_prune, hs, fa, method="nlsr"):
    return {"name": name, "point": {"method": method, "sparsity": sparsity, "layer_prune": layer_prune},
            "hs": hs, "fa": fa}


# A synthetic frontier: lower P_SR / P_L restore more safety and cost task accuracy.
FRONTIER = [
    _row("a", 0.8, 0.5, 80.0, 97.0), _row("b", 0.65, 0.5, 40.0, 96.0), _row("c", 0.5, 0.5, 12.0, 90.0),
    _row("d", 0.5, 0.0, 8.0, 91.0), _row("e", 0.35, 0.0, 4.0, 60.0), _row("f", 0.2, 0.0, 2.0, 10.0),
    _row("s", None, None, 1.0, 99.0, method="safelora"),  # never chosen: calibrate picks NLSR settings
]


@pytest.mark.parametrize("ceiling, expected, met", [
    (10.0, "d", True),    # d has the best FA among HS <= 10
    (12.0, "d", True),    # c now qualifies but d's FA is higher
    (50.0, "b", True),
    (100.0, "a", True),
    (4.0, "e", True),
    (1.0, "f", False),    # nothing meets it: lowest HS, reported as a miss
])
def test_choose_point_on_a_synthetic_frontier(ceiling, expected, met):
    chosen, ok = choose_point(FRONTIER, ceiling)
    assert (chosen["name"], ok) == (expected, met)


def test_choose_point_breaks_ties_towards_lower_hs_then_smaller_intervention():
    rows = [_row("x", 0.5, 0.0, 6.0, 90.0), _row("y", 0.65, 0.0, 4.0, 90.0), _row("z", 0.8, 0.5, 4.0, 90.0)]
    assert choose_point(rows, 10.0)[0]["name"] == "z"
    with pytest.raises(NlsrError, match="no NLSR setting"):
        choose_point([FRONTIER[-1]], 10.0)


@pytest.mark.parametrize("text, refs, ceiling", [
    ("aligned+5", {"aligned": 4.0, "finetuned": 80.0}, 9.0),
    ("finetuned*0.5", {"aligned": 4.0, "finetuned": 80.0}, 40.0),
    (" 20 ", {}, 20.0),
])
def test_targets(text, refs, ceiling):
    assert parse_target(text).ceiling(refs) == pytest.approx(ceiling)


@pytest.mark.parametrize("bad", ["", "aligned", "aligned-5", "base+5", "five"])
def test_bad_target_is_one_line_error(bad):
    with pytest.raises(NlsrError, match="calibrate --target"):
        parse_target(bad)


def test_check_disjoint_refuses_shared_prompts_after_normalisation():
    check_disjoint({"harmful": ["How to pick a lock?"]}, {"harmful": ["How to bake bread?"]})
    with pytest.raises(NlsrError, match="shares 1 prompt"):
        check_disjoint({"task": ["a", "The  movie was GREAT"]}, {"task": ["the movie was great"]})


def _stats_for(reference, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for m in reference.modules:
        z = torch.randn(20, reference.rank, generator=gen)
        out[f"{m}.gram"] = z.T @ z
    return out


def _gram_key_stats(reference):
    from nlsr_core.method.neuron_keys import gram_key

    return {gram_key(m): v for m, v in zip(reference.modules, _stats_for(reference).values())}


def test_builder_matches_realign_and_safelora_and_reuses_statistics():
    aligned, finetuned = random_adapter(1), random_adapter(2)
    reference = extrapolate(aligned, 0.9, "paper")
    stats = _gram_key_stats(reference)
    calls = []

    def collect(ref, method):
        calls.append((method, ref))
        return _gram_key_stats(ref)

    build = PointBuilder(finetuned, aligned, reference, stats, Point.of(beta=0.9), collect)
    point = Point.of(sparsity=0.35, layer_prune=0.5, seed=4)
    adapter, summary = build.build(point)
    masks = masks_from_stats(reference, stats, 0.35, "paper", "lowrank")
    expected = realign(finetuned, reference, masks, RealignParams(layer_prune=0.5, seed=4))
    assert all(torch.equal(adapter.tensors[k], expected.adapter.tensors[k]) for k in expected.adapter.tensors)
    assert summary["patched_count"] == expected.summary()["patched_count"] and calls == []
    sl, _ = build.build(Point.of("safelora", tau=0.3))
    ref_sl = safelora(finetuned, aligned, SafeLoraParams(tau=0.3)).adapter
    assert all(torch.equal(sl.tensors[k], ref_sl.tensors[k]) for k in ref_sl.tensors)
    # beta 0 under the paper preset: the reference is the aligned adapter; its statistics are collected once
    build.build(Point.of(beta=0.0))
    build.build(Point.of(beta=0.0, sparsity=0.8))
    assert len(calls) == 1 and all(torch.equal(calls[0][1].tensors[k], aligned.tensors[k]) for k in aligned.tensors)


def test_builder_without_a_model_names_the_missing_statistics():
    aligned, finetuned = random_adapter(1), random_adapter(2)
    build = PointBuilder(finetuned, aligned, aligned, _gram_key_stats(aligned), Point.of(beta=0.0))
    with pytest.raises(NlsrError, match="method wanda"):
        build.build(Point.of(beta=0.0, identifier="wanda"))


def test_calibrate_refuses_a_calibration_split_that_overlaps_the_test_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["prepare-data", "--eval_harmful", "6", "--task_test", "6", "--calib_harmful", "4",
                            "--task_calib", "4", "--out", "data/prepared"])
    assert code == 0, err
    test_rows = (tmp_path / "data/prepared/eval/harmful.jsonl").read_text().splitlines()
    (tmp_path / "data/prepared/calib/harmful.jsonl").write_text("\n".join(test_rows[:2]) + "\n")
    code, _, err = run_cli(["calibrate", "--cell", "sst2-p0.1-dpo", "--finetuned", "ft", "--aligned", "al",
                            "--reference", "ref", "--stats", "st", "--out", "calibrate/x"])
    assert code == 1 and "shares 2 prompt(s) with the test split" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "calibration").exists()
