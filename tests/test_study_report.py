"""reports/frontier.md, reports/ablations.md and the frontier plot from hand-made stage outputs."""
from __future__ import annotations

import json

import pytest

from nlsr_core.errors import NlsrError
from nlsr_core.eval.stats import rate
from nlsr_core.report.leaderboard import meets_goal
from nlsr_core.report.study_report import ablations_markdown, frontier_markdown, frontier_rows, load_docs
from tests.conftest import run_cli
from tests.test_report import _doc

PIPELINE = {"method": "nlsr", "sparsity": 0.5, "layer_prune": 0.0, "delta": 0.2, "selection": "adaptive",
            "tau": 0.5, "seed": 0, "preset": "paper", "identifier": "lowrank", "beta": 0.9}


def _rates(hs_k, fa_k, n=50):
    return {"hs": rate([True] * hs_k + [False] * (n - hs_k)).record(),
            "fa": rate([True] * fa_k + [False] * (n - fa_k)).record()}


def _point(name, point, hs_k, fa_k, **extra):
    return {"name": name, "label": name, "point": point, **_rates(hs_k, fa_k), **extra}


FRONTIER = {"cell": "sst2-p0.1-dpo", "split": "test", "pipeline": PIPELINE, "judge": {"name": "refusal-keywords"},
            "points": [
                _point("aligned", None, 2, 0), _point("finetuned", None, 40, 48),
                _point("nlsr P_SR=0.5 P_L=0", PIPELINE, 3, 48, patched_count=200, module_count=210,
                       kept_fraction=0.5),
                _point("nlsr P_SR=0.8 P_L=0", {**PIPELINE, "sparsity": 0.8}, 30, 49, patched_count=200,
                       module_count=210, kept_fraction=0.2),
                _point("safelora tau=0.3", {"method": "safelora", "tau": 0.3, "projection": "orthogonal"}, 25, 47),
            ]}
CALIB = {"cell": "sst2-p0.1-dpo", "split": "calibration", "target": "aligned+5", "ceiling_hs": 9.0,
         "target_met": True, "params": {"identify": {"sparsity": 0.5}, "realign": {
             "selection": "adaptive", "layer_prune": 0.0, "delta": 0.2, "tau": 0.5, "seed": 0}},
         "splits": {"harmful": {"path": "calib/harmful.jsonl", "n": 40}},
         "points": [_point("aligned", None, 1, 0), _point("nlsr P_SR=0.5 P_L=0", PIPELINE, 2, 30)]}
CALIB["chosen"] = CALIB["points"][1]


def test_frontier_markdown_marks_goal_choice_and_safelora_comparison():
    text = frontier_markdown({"sst2-p0.1-dpo": FRONTIER}, {"sst2-p0.1-dpo": CALIB})
    line = next(l for l in text.splitlines() if l.startswith("| nlsr P_SR=0.5 P_L=0 |"))
    assert line.rstrip().endswith("✓◆ |") and "6.0 [" in line and "(3/50)" in line
    assert "Settings meeting the goal: 1 of 3 scored (all methods)." in text
    assert "nearest SafeLoRA (safelora tau=0.3) HS 50.0 / FA 94.0 (FA gap 2.0): NLSR's HS is lower" in text
    assert "Target `aligned+5` → HS ≤ 9.0; met" in text


def test_goal_needs_both_halved_hs_and_fa_within_two_points():
    ft = FRONTIER["points"][1]
    assert meets_goal(FRONTIER["points"][2], ft)
    assert not meets_goal(FRONTIER["points"][3], ft)          # HS 60 > 40
    assert not meets_goal(_point("x", PIPELINE, 3, 46), ft)  # FA 92 < 96 − 2


def test_ablations_markdown_gives_seed_mean_and_sd():
    doc = {"cell": "c", "pipeline": PIPELINE, "points": [
        _point("pipeline setting", PIPELINE, 3, 48, group="setting"),
        _point("seed 0", PIPELINE, 3, 48, group="seed"), _point("seed 1", PIPELINE, 5, 48, group="seed")]}
    text = ablations_markdown({"c": doc})
    assert "| seed | seed 1 | 10.0 [" in text and "Over 2 Bernoulli seeds: HS 8.0 ± 2.8 %, FA 96.0 ± 0.0 %" in text


def test_report_command_writes_study_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for root, stage, doc in (("frontier", "frontier", FRONTIER), ("calibrate", "calibrate", CALIB)):
        (tmp_path / root / "sst2-p0.1-dpo").mkdir(parents=True)
        (tmp_path / root / "sst2-p0.1-dpo" / f"{stage}.json").write_text(json.dumps(doc))
    (tmp_path / "judge" / "sst2-p0.1-dpo").mkdir(parents=True)
    judged = _doc("sst2", 0.1, "dpo", {"aligned": (1, 0, 19), "finetuned": (40, 38, 0)})
    (tmp_path / "judge" / "sst2-p0.1-dpo" / "judged.json").write_text(json.dumps(judged))
    code, _, err = run_cli(["report", "--judged", "judge", "--frontier", "frontier", "--calibrate",
                            "calibrate", "--ablate", "ablate"])
    assert code == 0, err
    assert "◆" in (tmp_path / "reports" / "frontier.md").read_text()
    assert "No ablation output" in (tmp_path / "reports" / "ablations.md").read_text()
    assert (tmp_path / "reports" / "plots" / "frontier.png").stat().st_size > 1000
    rows = frontier_rows({"sst2-p0.1-dpo": FRONTIER}, {"sst2-p0.1-dpo": CALIB})
    assert [r["chosen"] for r in rows] == [False, False, True, False, False]


def test_malformed_stage_output_is_one_line_error(tmp_path):
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "frontier.json").write_text("{not json")
    with pytest.raises(NlsrError, match="frontier.json: not valid JSON"):
        load_docs(tmp_path, "frontier")


def _row(label, method, hs_k, fa_k, n=10, sparsity=0.35, flags=None):
    point = {"method": method, "sparsity": sparsity, "layer_prune": 0.0, "delta": 0.2, "selection": "adaptive",
             "seed": 0, "preset": "paper", "beta": 0.9}
    rate = lambda k: {"k": k, "n": n, "pct": 100.0 * k / n, "ci95": [0.0, 100.0]}  # noqa: E731
    return {"name": label, "label": label, "point": point, "hs": rate(hs_k), "fa": rate(fa_k),
            **({"flags": {"hs": flags}} if flags else {})}


def test_leaderboard_at_matched_fa_and_the_random_mask_contrast():
    from nlsr_core.report.leaderboard import leaderboard_lines
    from nlsr_core.study.comparison import random_contrast_lines

    ft = {"name": "finetuned", "label": "finetuned", "point": None,
          "hs": {"k": 8, "n": 10, "pct": 80.0, "ci95": [0, 100]}, "fa": {"k": 10, "n": 10, "pct": 100.0, "ci95": [0, 100]}}
    doc = {"points": [ft,
                      _row("nlsr a", "nlsr", 1, 10, flags="1000000000"),
                      _row("nlsr b", "nlsr", 0, 5, sparsity=0.2, flags="0000000000"),
                      _row("random a", "random-masks", 6, 10, flags="1111110000"),
                      _row("interp", "interpolate", 5, 7)]}
    # two replicates: nlsr meets floor 98 and ceiling 40 on the first only; random masks on neither
    replicated = {"replicates": [{"rows": [ft, _row("nlsr a", "nlsr", 1, 10), _row("random a", "random-masks", 6, 10)]},
                                 {"rows": [ft, _row("nlsr a", "nlsr", 5, 10), _row("random a", "random-masks", 7, 9)]}]}
    text = "\n".join(leaderboard_lines(doc, replicated))
    # FA floor 98: nlsr a (HS 10) qualifies, nlsr b (FA 50) does not; interpolate has nothing under the floor
    assert "| nlsr | nlsr a | 10.0 [0.0, 100.0] (1/10) | 100.0 | nlsr a |" in text
    assert "| interpolate | none | – | – | none | – | – | not replicated | – | – | – |" in text
    # HS ceiling 40: random masks (HS 60) has nothing under it
    assert "| random-masks | random a | 60.0 [0.0, 100.0] (6/10) | 100.0 | none | – | – | random a |" in text
    # seed columns: mean ± sd over the replicates and the replicates meeting both bounds
    assert "| 30.0 ± 28.3 | 100.0 ± 0.0 | 1/2 |" in text and "| 65.0 ± 7.1 | 95.0 ± 7.1 | 0/2 |" in text
    # the ranking: nlsr (HS 10) beats random masks (HS 60) under the floor, with a paired interval
    assert "Lowest HS at FA ≥ 98.0: **nlsr** (nlsr a, HS 10.0, FA 100.0); next **random-masks**" in text
    assert "HS difference -50.0 [" in text
    # under the HS ceiling 40 only nlsr has points: its best FA, and no runner-up
    assert "Highest FA at HS ≤ 40.0: **nlsr** (nlsr a, HS 10.0, FA 100.0); no other method" in text
    # a series whose name holds a bar (data-free Antidote) stays one table cell
    magnitude = _row("antidote rho=0.1 magnitude", "antidote", 9, 10)
    magnitude["point"]["scoring"] = "magnitude"
    text = "\n".join(leaderboard_lines({"points": doc["points"] + [magnitude]}, None))
    assert "| antidote-\\|W\\| | antidote rho=0.1 magnitude |" in text
    contrast = "\n".join(random_contrast_lines(doc, n_boot=2000))
    assert "| 0.35 | 0 | 10.0 | 60.0 | -50.0 [" in contrast
