"""The side-by-side report's pieces (nlsr_core.report.paper_tables): interval verdicts, SafeLoRA's best τ, stage
times from a stamped log, and our rows read from run outputs; the whole command runs on the tiny pipeline in
tests/test_pipeline.py."""
from __future__ import annotations

import json

import pytest

from nlsr_core.eval.stats import rate
from nlsr_core.report import paper_tables as pt


def _r(k, n=100):
    return rate([True] * k + [False] * (n - k)).record()


def test_compare_and_verdict_read_the_intervals():
    low, high, near = {"hs": _r(10)}, {"hs": _r(60)}, {"hs": _r(14)}
    assert pt.compare(low, high) == "lower" and pt.compare(high, low) == "higher" and pt.compare(low, near) == "overlap"
    assert pt.compare(low, None) == "not run"
    assert pt.verdict(["lower", "lower"], "lower") == "holds"
    assert pt.verdict(["lower", "overlap"], "lower") == "cannot tell"
    assert pt.verdict(["lower", "higher"], "lower") == "does not hold"
    assert pt.verdict(["lower", "not run"], "lower") == "cannot tell"
    assert pt.verdict(["not run"], "lower") == "cannot tell (not run)"
    # a claim that keeps FA: HS lower but the repaired FA interval wholly below the fine-tuned model's counts against
    repaired, finetuned = {"hs": _r(10), "fa": _r(70)}, {"hs": _r(60), "fa": _r(98)}
    lost = pt.fa_kept(pt.compare(repaired, finetuned), repaired, finetuned)
    assert lost == "lower, FA lost" and pt.verdict(["lower", lost], "lower") == "does not hold"
    kept = {"hs": _r(10), "fa": _r(95)}
    assert pt.fa_kept(pt.compare(kept, finetuned), kept, finetuned) == "lower"


def test_best_safelora_is_the_lowest_hs_within_the_fa_margin():
    def point(tau, hs, fa):
        return {"label": f"safelora tau={tau}", "point": {"method": "safelora", "tau": tau}, "hs": _r(hs), "fa": _r(fa)}

    frontier = {"points": [point(0.3, 20, 60), point(0.5, 30, 92), point(0.6, 35, 96), point(0.7, 30, 97),
                           {"label": "nlsr", "point": {"method": "nlsr"}, "hs": _r(1), "fa": _r(99)}]}
    # FA of the fine-tuned model 98: τ 0.3 (FA 60) is out; of the rest the lowest HS, then the higher FA
    assert pt.best_safelora(frontier, 98.0)["label"] == "safelora tau=0.7"
    assert pt.best_safelora(frontier, None)["label"] == "safelora tau=0.3"
    assert pt.best_safelora({"points": []}, 98.0) is None


def test_stage_times_from_a_stamped_log(tmp_path):
    log = tmp_path / "repro.log"
    log.write_text("100 Running stage 'prepare-data':\n101 > nlsr prepare-data\n150 Updating lock file 'dvc.lock'\n"
                   "160 Running stage 'align@dpo':\noops unstamped\n400 Updating lock file 'dvc.lock'\n"
                   "440 Stage 'x' is cached - skipping run\n460 Updating lock file 'dvc.lock'\n"
                   "470 Running stage 'frontier@c':\n480 [interrupted]\n"
                   "490 Running stage 'ablate@c':\n600 Updating lock file 'dvc.lock'\n900 Stage 'ablate@c' didn't "
                   "change\n990 Running stage 'analyze@c':\n1200 still running\n")
    # a stage ends at its own lock update: align@dpo not at the restored stage x's, ablate@c not at the next dvc
    # repro's lines 300 s later; frontier@c was interrupted and analyze@c has not finished: neither has a time
    assert pt.stage_times(log) == [("prepare-data", 50.0), ("align@dpo", 240.0), ("ablate@c", 110.0)]


def test_load_runs_names_a_missing_run_and_an_empty_one(tmp_path):
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError, match="not a directory; expected a profile run"):
        pt.load_runs([tmp_path / "absent"])
    with pytest.raises(NlsrError, match="no judge/<cell>/judged.json under"):
        pt.load_runs([tmp_path])


def test_cell_rows_map_the_papers_rows_to_ours(tmp_path):
    run = tmp_path / "run"
    (run / "judge" / "sst2-p0.1-dpo").mkdir(parents=True)
    variants = {v: {"hs": _r(k), "fa": _r(90)} for v, k in (("nonaligned", 80), ("aligned", 5), ("finetuned", 95),
                                                             ("safelora", 70), ("realigned", 30))}
    (run / "judge" / "sst2-p0.1-dpo" / "judged.json").write_text(json.dumps({"cell": "sst2-p0.1-dpo",
                                                                             "variants": variants}))
    (run / "frontier" / "sst2-p0.1-dpo").mkdir(parents=True)
    points = [{"label": "nlsr P_SR=0.8 P_L=0.5", "point": {"method": "nlsr", "sparsity": 0.8, "layer_prune": 0.5},
               "hs": _r(50), "fa": _r(95)},
              {"label": "random-masks", "point": {"method": "random-masks", "sparsity": 0.35, "layer_prune": 0.0},
               "hs": _r(60), "fa": _r(95)}]
    (run / "frontier" / "sst2-p0.1-dpo" / "frontier.json").write_text(json.dumps({
        "cell": "sst2-p0.1-dpo", "pipeline": {"sparsity": 0.35, "layer_prune": 0.0}, "points": points}))
    runs = pt.load_runs([run])
    rows = pt.cell_rows(runs, "sst2-p0.1-dpo")
    assert rows["Non-Aligned"]["hs"]["k"] == 80 and rows["Aligned"]["hs"]["k"] == 95
    assert rows[pt.BEFORE]["hs"]["k"] == 5 and rows[pt.NLSR]["hs"]["k"] == 30
    assert rows["NLSR (paper's P_SR 0.8, P_L 0.5)"]["hs"]["k"] == 50
    assert rows["Random masks (NLSR's kept count)"]["hs"]["k"] == 60
    assert rows["SafeLoRA (best τ)"] is None
    text = pt.paper_tables_markdown(runs)
    assert "| Table 1 | holds |" not in text and "| Table 1 | cannot tell |" in text     # one p of five ran
    assert "30.0 [21.9, 39.6] · 27.6" in text                                        # NLSR, p = 0.1, paper 27.6


def test_table4_and_figures_read_the_analyses(tmp_path):
    from tests.test_analyses import _doc

    run = tmp_path / "run"
    for stage, name, doc in (("judge", "judged.json", {"cell": "sst2-p0.05-dpo", "variants": {}}),
                             ("analyze", "analyze.json", _doc("dpo"))):
        (run / stage / "sst2-p0.05-dpo").mkdir(parents=True)
        (run / stage / "sst2-p0.05-dpo" / name).write_text(json.dumps(doc))
    text = pt.paper_tables_markdown(pt.load_runs([run]), tables=("table4", "figures"))
    # the paper's setting (P_SR 0.8, P_L 0.5): HS 20 with β 0.9 against 70 without, the paired interval below zero
    row = next(line for line in text.splitlines() if line.startswith("| sst2-p0.05-dpo | 0.8 | 0.5 |"))
    assert "| -50.0 [" in row and "| Table 4 | holds |" in text
    assert "lowrank~wanda: neuron overlap 0.700 over 2 modules (chance 0.500)" in text and "| Fig. 4 | holds |" in text


def test_snapshot_copies_the_summaries_and_replaces_only_its_own_or_identical_files(tmp_path):
    from nlsr_core.errors import NlsrError

    run, dest = tmp_path / "run", tmp_path / "reports" / "run"          # stage times are keyed by the folder name
    judged = {"cell": "sst2-p0.1-dpo", "variants": {"finetuned": {"hs": _r(95), "fa": _r(90)}}}
    (run / "judge" / "sst2-p0.1-dpo" / "finetuned").mkdir(parents=True)
    (run / "judge" / "sst2-p0.1-dpo" / "judged.json").write_text(json.dumps(judged))
    (run / "judge" / "sst2-p0.1-dpo" / "finetuned" / "harmful.jsonl").write_text("{}\n")   # answers: not copied
    (run / "adapters" / "realigned" / "sst2-p0.1-dpo").mkdir(parents=True)
    (run / "adapters" / "realigned" / "sst2-p0.1-dpo" / "lineage.json").write_text(json.dumps({"modules": []}))
    (run / "adapters" / "realigned" / "sst2-p0.1-dpo" / "adapter_model.safetensors").write_bytes(b"0")
    (run / "repro.log").write_text("100 Running stage 'judge@sst2-0.1-dpo':\n160 done\n")
    dest.mkdir(parents=True)
    (dest / "repro.log").write_text((run / "repro.log").read_text())       # the Makefile's copy: identical, kept
    assert pt.snapshot_run(run, dest) == ["judge/sst2-p0.1-dpo/judged.json",
                                          "adapters/realigned/sst2-p0.1-dpo/lineage.json", "repro.log"]
    assert not (dest / "judge" / "sst2-p0.1-dpo" / "finetuned").exists()
    assert not (dest / "adapters" / "realigned" / "sst2-p0.1-dpo" / "adapter_model.safetensors").exists()
    assert pt.paper_tables_markdown(pt.load_runs([dest])) == pt.paper_tables_markdown(pt.load_runs([run]))

    judged["variants"]["finetuned"]["hs"] = _r(90)                          # the run moved on: its own copy replaced
    (run / "judge" / "sst2-p0.1-dpo" / "judged.json").write_text(json.dumps(judged))
    pt.snapshot_run(run, dest)
    assert json.loads((dest / "judge" / "sst2-p0.1-dpo" / "judged.json").read_text()) == judged

    judged["variants"]["finetuned"]["hs"] = _r(85)
    (run / "judge" / "sst2-p0.1-dpo" / "judged.json").write_text(json.dumps(judged))
    with pytest.raises(NlsrError, match="judge/sst2-p0.1-dpo/judged.json exists and no earlier snapshot wrote it"):
        pt.snapshot_run(dest, run)                                          # into a run: refused before any copy
    assert json.loads((run / "judge" / "sst2-p0.1-dpo" / "judged.json").read_text()) == judged
    assert not (run / pt.SNAPSHOT_LIST).exists()
    with pytest.raises(NlsrError, match="no judge/ folder; expected a profile run"):
        pt.snapshot_run(tmp_path / "absent", tmp_path / "elsewhere")
