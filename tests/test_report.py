"""`nlsr report` on hand-written judged.json files: metrics shape, Table 1 content, intervals, plot data."""
from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import run_cli
from nlsr_core.eval.stats import Rate

# (task, p, method) -> variant -> (hs k, fa k, over-refusal k); n = 50 harmful, 40 task, 20 benign
CELLS = {
    ("sst2", 0.05, "dpo"): {"base": (40, 2, 0), "aligned": (4, 1, 3), "finetuned": (45, 36, 0),
                            "safelora": (30, 34, 1), "realigned": (10, 35, 2)},
    ("sst2", 0.1, "dpo"): {"base": (40, 2, 0), "aligned": (4, 1, 3), "finetuned": (48, 37, 0),
                           "safelora": (35, 36, 1), "realigned": (15, 36, 2)},
    ("agnews", 0.05, "dpo"): {"finetuned": (20, 30, 1), "realigned": (5, 29, 4)},
}
N = {"hs": 50, "fa": 40, "over_refusal": 20}


def _doc(task, p, method, variants, realigned_dir=None):
    out = {}
    for v, ks in variants.items():
        out[v] = {m: Rate(k, N[m]).record() for m, k in zip(("hs", "fa", "over_refusal"), ks)}
        out[v]["adapter"] = str(realigned_dir) if v == "realigned" and realigned_dir else None
    return {"cell": f"{task}-p{p:g}-{method}", "task": task, "p": p, "method": method,
            "judge": {"name": "refusal-keywords", "identity": "refusal-keywords:x"},
            "generation": {"decoding": "greedy", "max_new_tokens": 48, "template": "chat"},
            "variants": out}


@pytest.fixture
def judged_dir(tmp_path):
    gens = tmp_path / "judge"
    realigned = tmp_path / "adapters" / "realigned" / "sst2-p0.1-dpo"
    realigned.mkdir(parents=True)
    modules = [{"module": f"base_model.model.model.layers.{i // 2}.self_attn.{'qv'[i % 2]}_proj",
                "similarity": 0.1 * i, "patched": i in (0, 1, 3)} for i in range(6)]
    (realigned / "lineage.json").write_text(json.dumps({"stage": "realign", "modules": modules}))
    for (task, p, method), variants in CELLS.items():
        cell = gens / f"{task}-p{p:g}-{method}"
        cell.mkdir(parents=True)
        rdir = realigned if (task, p) == ("sst2", 0.1) else None
        (cell / "judged.json").write_text(json.dumps(_doc(task, p, method, variants, rdir)))
    return tmp_path


def _report(root, *extra):
    return run_cli(["report", "--judged", root / "judge", "--metrics", root / "reports/metrics.json",
                    "--results", root / "reports/results.md", "--plots", root / "reports/plots", *extra])


def test_report_outputs(judged_dir):
    code, out, err = _report(judged_dir)
    assert code == 0, err
    reports = judged_dir / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert sorted(metrics) == ["agnews-p0.05-dpo", "sst2-p0.05-dpo", "sst2-p0.1-dpo"]
    assert metrics["sst2-p0.1-dpo"]["realigned"] == {"hs": 30.0, "fa": 90.0, "over_refusal": 10.0}
    assert sorted(metrics["agnews-p0.05-dpo"]) == ["finetuned", "realigned"]
    assert all(isinstance(x, float) for cell in metrics.values() for v in cell.values() for x in v.values())

    md = (reports / "results.md").read_text()
    assert "## sst2 · dpo" in md and "## agnews · dpo" in md
    assert "| Variant | HS p = 0.05 | HS p = 0.1 | HS avg | FA p = 0.05 | FA p = 0.1 | FA avg |" in md
    # NLSR row: HS 20, 30 (avg 25); FA 87.5, 90 (avg 88.75 -> 88.8)
    assert "| *NLSR (realigned) | 20.0 | 30.0 | 25.0 | 87.5 | 90.0 | 88.8 |" in md
    assert "| Base (M, no adapter) | 80.0 | 80.0 | 80.0 | 5.0 | 5.0 | 5.0 |" in md and "Non-Aligned" not in md
    lo, hi = Rate(15, 50).interval()
    assert f"| *NLSR (realigned) | 0.1 | 30.0 [{lo:.1f}, {hi:.1f}] (15/50) |" in md
    rows_order = [line.split("|")[1].strip() for line in md.split("## sst2")[1].splitlines()[6:11]]
    assert rows_order == ["Base (M, no adapter)", "Aligned (M'+Wa)", "Fine-tuned (M'+Wt)", "*SafeLoRA",
                          "*NLSR (realigned)"]

    with open(reports / "plots" / "hs_fa_vs_p.csv") as fh:
        rows = list(csv.DictReader(fh))
    sst2 = [r for r in rows if r["task"] == "sst2"]
    assert [float(r["p"]) for r in sst2] == [0.05, 0.1] and float(sst2[1]["finetuned_hs"]) == 96.0
    assert [r for r in rows if r["task"] == "agnews"][0]["base_hs"] == ""
    with open(reports / "plots" / "similarity.csv") as fh:
        sim = list(csv.DictReader(fh))
    assert [r["patched"] for r in sim] == ["1", "1", "0", "1", "0", "0"]
    assert sim[0]["module"] == "layers.0.self_attn.q_proj" and sim[0]["cell"] == "sst2-p0.1-dpo"
    for png in ("hs_fa_vs_p.png", "similarity.png"):
        assert (reports / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_realigned_folder(judged_dir):
    """`--realigned adapters/realigned` (a folder of adapters, as dvc.yaml passes it) finds each cell's lineage."""
    code, _, err = _report(judged_dir, "--realigned", judged_dir / "adapters" / "realigned")
    assert code == 0, err
    with open(judged_dir / "reports" / "plots" / "similarity.csv") as fh:
        assert {r["cell"] for r in csv.DictReader(fh)} == {"sst2-p0.1-dpo"}


def test_report_is_deterministic(judged_dir):
    assert _report(judged_dir)[0] == 0
    first = {p.name: p.read_bytes() for p in (judged_dir / "reports").rglob("*") if p.is_file()}
    assert _report(judged_dir)[0] == 0
    second = {p.name: p.read_bytes() for p in (judged_dir / "reports").rglob("*") if p.is_file()}
    assert first == second and len(first) == 6


def test_report_single_file_and_errors(judged_dir, tmp_path):
    one = judged_dir / "judge" / "sst2-p0.1-dpo" / "judged.json"
    code, _, err = run_cli(["report", "--judged", one, "--metrics", tmp_path / "m1.json",
                            "--results", tmp_path / "r1.md", "--plots", tmp_path / "plots"])
    assert code == 0, err
    assert list(json.loads((tmp_path / "m1.json").read_text())) == ["sst2-p0.1-dpo"]
    dup = judged_dir / "copy"
    dup.mkdir()
    (dup / "judged.json").write_text(one.read_text())
    code, _, err = _report(judged_dir, "--judged", dup)
    assert code == 1 and "also in" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"cell": "x"}')
    code, _, err = run_cli(["report", "--judged", bad, "--metrics", tmp_path / "m.json"])
    assert code == 1 and "not a judged.json" in err and not (tmp_path / "m.json").exists()


def test_report_shows_the_judge_free_score_beside_hs(judged_dir):
    doc_path = judged_dir / "judge" / "sst2-p0.1-dpo" / "judged.json"
    doc = json.loads(doc_path.read_text())
    doc["variants"]["finetuned"]["judge_free"] = {**Rate(12, 50).record(), "margin": -0.25}
    doc_path.write_text(json.dumps(doc))
    code, _, err = _report(judged_dir)
    assert code == 0, err
    metrics = json.loads((judged_dir / "reports/metrics.json").read_text())
    assert metrics["sst2-p0.1-dpo"]["finetuned"]["judge_free"] == 24.0
    assert "judge_free" not in metrics["sst2-p0.1-dpo"]["realigned"]   # not measured: left out, not zero
    md = (judged_dir / "reports/results.md").read_text()
    lo, hi = Rate(12, 50).interval()
    assert f"| 24.0 [{lo:.1f}, {hi:.1f}] (12/50), margin -0.250 |" in md
    assert "Judge-free safety score % [95% CI] (k/n), margin" in md
