"""The paper's layer and neuron analyses (nlsr_core.study.analyses) on tiny adapters: each count, set and overlap
against a direct computation, and the chance level of the overlap coefficient."""
from __future__ import annotations

import pytest
import torch

from nlsr_core.errors import NlsrError
from nlsr_core.method.amplify import extrapolate
from nlsr_core.method.neurons import masks_from_stats, stat_shapes
from nlsr_core.method.realign import RealignParams, select_modules, similarities
from nlsr_core.study import analyses
from nlsr_core.study.points import Point, PointBuilder
from tests.conftest import random_adapter


def _stats(reference, method, seed=0):
    """Statistics of `method`'s shapes for every module, positive entries from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for module in reference.modules:
        for key, shape in stat_shapes(method, reference, module).items():
            if len(shape) == 2 and shape[0] == shape[1] == reference.rank and method == "lowrank":
                z = torch.randn(20, reference.rank, generator=gen)
                out[key] = z.T @ z
            else:
                out[key] = torch.rand(shape, generator=gen) + 0.01
    return out


@pytest.fixture
def build():
    aligned, finetuned = random_adapter(1), random_adapter(2)
    reference = extrapolate(aligned, 0.9, "paper")
    seeds = {"lowrank": 0, "wanda": 1, "snip": 2, "random": 3}
    return PointBuilder(finetuned, aligned, reference, _stats(reference, "lowrank"),
                        Point.of(beta=0.9, sparsity=0.5, layer_prune=0.0, delta=0.2, seed=3),
                        lambda ref, method: _stats(ref, method, seeds[method]))


def test_broken_layer_counts_are_the_modules_below_tau(build):
    rows = analyses.broken_layer_counts(build, [0.2, 0.8], [0.0, 0.5, 1.01])
    assert [(r["sparsity"], r["tau"]) for r in rows] == [(0.2, 0.0), (0.2, 0.5), (0.2, 1.01),
                                                         (0.8, 0.0), (0.8, 0.5), (0.8, 1.01)]
    masks = masks_from_stats(build.reference(build.pipeline.identification), build.stats(build.pipeline.identification), 0.8, "paper")
    sims = similarities(build.finetuned, build.reference(build.pipeline.identification), masks)
    assert rows[4]["broken"] == sum(s < 0.5 for s in sims) and rows[4]["modules"] == len(sims)
    assert rows[5]["broken"] == len(sims)                     # every cosine is below 1.01
    assert all(r["broken"] <= s["broken"] for r, s in zip(rows, rows[1:]) if r["sparsity"] == s["sparsity"])


def test_a_method_against_itself_is_one_and_sets_follow_the_adaptive_rule(build):
    rows = analyses.broken_set_similarity(build, ["lowrank", "wanda"], 0.5, [0.0, 1.0])
    assert [(r["layer_prune"], r["first"], r["second"]) for r in rows] == [(0.0, "lowrank", "wanda"),
                                                                         (1.0, "lowrank", "wanda")]
    # P_L = 1 patches nothing: two empty sets are the same set
    assert rows[1]["jaccard"] == 1.0 and rows[1]["broken_first"] == rows[1]["broken_second"] == 0
    masks = masks_from_stats(build.reference(build.pipeline.identification), build.stats(build.pipeline.identification), 0.5, "paper")
    sims = similarities(build.finetuned, build.reference(build.pipeline.identification), masks)
    chosen = select_modules(build.finetuned.modules, sims,
                            RealignParams(layer_prune=0.0, delta=0.2, selection="adaptive", seed=3))
    assert rows[0]["broken_first"] == sum(r.patched for r in chosen)
    same = analyses.broken_set_similarity(build, ["wanda", "wanda"], 0.5, [0.0, 0.5])
    assert [r["jaccard"] for r in same] == [1.0, 1.0]


def test_jaccard_and_overlap_coefficient():
    assert analyses.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and analyses.jaccard(set(), set()) == 1.0
    first = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    second = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0], dtype=torch.bool)
    assert analyses.overlap_coefficient(first, second) == (1.0, 0.5)       # second ⊂ first; chance 4/8
    assert analyses.overlap_coefficient(first, ~first) == (0.0, 0.5)
    assert analyses.overlap_coefficient(first & ~first, first & ~first) == (1.0, 1.0)


def test_random_masks_overlap_at_chance(build):
    """Two independent random identifications agree only as much as their kept fractions predict."""
    seeds = iter(range(10, 100))
    build.collect = lambda ref, method: _stats(ref, method, next(seeds))
    rows = analyses.neuron_overlap(build, ["random", "snip"], 0.5, 0.0)
    assert rows and {(r["first"], r["second"]) for r in rows} == {("random", "snip")}
    mean = sum(r["overlap"] for r in rows) / len(rows)
    chance = sum(r["chance"] for r in rows) / len(rows)
    assert abs(mean - chance) < 0.1


def test_amplified_references_and_preamplification_points(build):
    refs = analyses.amplified_references(build, [0.0, 0.9])
    assert [b for b, _ in refs] == [0.0, 0.9]
    assert all(torch.equal(refs[0][1].tensors[k], build.aligned.tensors[k]) for k in build.aligned.tensors)
    expected = extrapolate(build.aligned, 0.9, "paper")
    assert all(torch.equal(refs[1][1].tensors[k], expected.tensors[k]) for k in expected.tensors)
    named = analyses.preamplification_points(build.pipeline, [0.35, 0.8], [0.0, 0.5])
    records = [p.record() for _, p in named]
    assert len(named) == 8 == len({n for n, _ in named})
    assert [(r["layer_prune"], r["sparsity"], r["beta"]) for r in records[:4]] == [
        (0.0, 0.35, 0.9), (0.0, 0.35, 0.0), (0.0, 0.8, 0.9), (0.0, 0.8, 0.0)]
    with pytest.raises(NlsrError, match="amplify.beta is 0"):
        analyses.preamplification_points(build.pipeline.replace(beta=0.0), [0.5], [0.0])


def _rate(k, n):
    from nlsr_core.eval.stats import rate

    return rate([True] * k + [False] * (n - k)).record()


def _doc(method="dpo"):
    flags = lambda k, n: "1" * k + "0" * (n - k)
    arm = lambda beta, k: {"name": f"b{beta}", "point": {"method": "nlsr", "sparsity": 0.8, "layer_prune": 0.5,
                                                         "beta": beta},
                           "hs": _rate(k, 10), "fa": _rate(9, 10), "flags": {"hs": flags(k, 10), "fa": flags(9, 10)},
                           "patched_count": 3, "module_count": 14}
    return {"cell": f"sst2-p0.05-{method}", "pipeline": {"identifier": "lowrank", "sparsity": 0.35, "beta": 0.9},
            "broken_layers": [{"sparsity": 0.35, "tau": t, "broken": b, "modules": 14} for t, b in ((0.3, 2), (0.6, 9))],
            "broken_set_similarity": [{"layer_prune": 0.5, "first": "lowrank", "second": "wanda", "jaccard": 0.75,
                                       "broken_first": 4, "broken_second": 3}],
            "neuron_overlap": [{"module": "m1", "first": "lowrank", "second": "wanda", "overlap": 0.8, "chance": 0.5},
                               {"module": "m2", "first": "lowrank", "second": "wanda", "overlap": 0.6, "chance": 0.5}],
            "amplification": [{"beta": b, "hs": _rate(k, 10), "fa": _rate(5, 10), "over_refusal": _rate(1, 10)}
                              for b, k in ((0.0, 4), (0.9, 1))],
            "preamplification": [{"name": "aligned", "point": None}, arm(0.9, 2), arm(0.0, 7)]}


def test_analyses_markdown_reads_the_rows():
    from nlsr_core.report import analyses_report

    docs = {"sst2-p0.05-dpo": _doc("dpo")}
    similarity = [{"cell": f"sst2-p0.05-{m}", "similarity": s} for m, sims in (("dpo", (0.1, 0.5, 0.9)),
                                                                                ("kto", (0.1, 0.2, 0.3)))
                  for s in sims] + [{"cell": "agnews-p0.05-dpo", "similarity": 0.0}]
    by_method = analyses_report.method_broken_rows(similarity, analyses_report.taus_of(docs))
    text = analyses_report.analyses_markdown(docs, by_method)
    assert text.startswith(analyses_report.ANALYSES_TITLE)
    assert "## Fig. 3 (right): broken modules per alignment method · sst2-p0.05" in text
    assert "| dpo | 3 | 1 | 2 |" in text and "| kto | 3 | 2 | 3 |" in text     # S_j < 0.3, < 0.6
    assert "agnews-p0.05 " not in text                                       # one method: nothing to compare
    assert "| lowrank~wanda | 0.75 (4/3) |" in text
    assert "| lowrank~wanda | 2 | 0.700 [0.600, 0.800] | 0.500 | +0.200 |" in text
    assert "| 0.9 | 10.0 [1.8, 40.4] (1/10) |" in text
    # HS 20 with β against 70 without: −50 points, the paired interval below zero
    row = next(line for line in text.splitlines() if line.startswith("| 0.5 | 0.8 | 20.0 | 70.0 |"))
    diff, lo, hi = (float(x) for x in row.split("|")[5].replace("[", " ").replace("]", " ").replace(",", " ").split())
    assert diff == -50.0 and hi < 0
    rows = analyses_report.preamplification_rows(docs)
    assert [(r["beta"], r["hs"]) for r in rows[:2]] == [(0.9, 20.0), (0.0, 70.0)]


def test_every_figure_writes_its_csv_and_png(tmp_path):
    from nlsr_core.report import analyses_report
    from nlsr_core.report.results import write_csv

    docs = {"sst2-p0.05-dpo": _doc()}
    from nlsr_core.report.plots import plot_broken_layers_by_method

    rows = analyses_report.method_broken_rows([{"cell": f"sst2-p0.05-{m}", "similarity": 0.4} for m in ("dpo", "kto")],
                                              (0.3, 0.5))
    plot_broken_layers_by_method(rows, tmp_path / "by_method.png")
    assert (tmp_path / "by_method.png").read_bytes()[:4] == b"\x89PNG"
    for name, columns, rows_of, plot in analyses_report.FIGURES:
        rows = rows_of(docs)
        write_csv(tmp_path / f"{name}.csv", columns, rows)
        plot(rows, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.csv").read_text().splitlines()[0] == ",".join(columns)
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_overlap_at_chance_reads_plus_zero():
    from nlsr_core.report import analyses_report

    doc = _doc()
    doc["neuron_overlap"] = [{"module": "m1", "first": "lowrank", "second": "random", "overlap": 0.30596,
                              "chance": 0.306}]
    assert "| lowrank~random | 1 | 0.306 [0.306, 0.306] | 0.306 | +0.000 |" in analyses_report.analyses_markdown(
        {"sst2-p0.1-dpo": doc})
