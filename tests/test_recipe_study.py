"""`nlsr recipe-study` and reports/alignment.md: a tiny recipe end to end on tiny-random, reuse, bad input, and
the report's arithmetic (‖ΔW‖_F against a dense product, the targets)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nlsr_core.report.alignment_report import targets
from nlsr_core.method.realign import delta_norm
from nlsr_core.train.recipes import Recipe, recipes
from tests.conftest import random_adapter, run_cli, write_adapter

SMALL = ["--sft_refusal", "8", "--sft_benign", "8", "--preference", "8", "--identify", "4",
         "--eval_harmful", "4", "--eval_benign", "4", "--task_train", "20", "--task_test", "4",
         "--poison_pool", "10", "--finetune-n", "10"]
TINY = Recipe("tiny", sft_refusal=2, sft_benign=2, sft_max_steps=1, pairs_safety=2, pairs_sensitive=1,
              pairs_helpful=1, pref_max_steps=1, max_length=64, batch_size=2, on_policy_tokens=4, chosen_nll=0.5)


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(recipes(), "tiny", TINY)
    code, _, err = run_cli(["prepare-data", *SMALL, "--out", "data/prepared"])
    assert code == 0, err
    return tmp_path


ARGS = ["recipe-study", "--recipe", "tiny", "--model", "tiny-random", "--out", "study", "--report", "alignment.md",
        "--cache", ""]


def test_tiny_recipe_trains_judges_reports_and_is_reused(study):
    from nlsr_core.compute import resolve_compute
    from nlsr_core.study.recipe_study import base_file_name

    code, out, err = run_cli(ARGS)
    assert code == 0, err
    result = json.loads(Path("study/tiny/result.json").read_text())
    assert result["recipe"] == TINY.record()
    assert result["rows"]["pairs"] == {"safety": 2, "contrast-sensitive": 1, "contrast-helpful": 1}
    assert set(result["judged"]) == {"weak", "aligned"} and result["judged"]["aligned"]["hs"]["n"] == 4
    assert sum(result["aligned_train"]["on_policy"].values()) == 2   # the two safety pairs were answered by M'
    assert result["norms"]["weak"] > 0 and result["norms"]["aligned"] > 0
    assert {v: s["n"] for v, s in result["judge_free"].items()} == {"weak": 4, "aligned": 4}
    assert result["compute"] == resolve_compute().record()   # measured where this machine's auto puts it
    assert json.loads(Path("study", base_file_name(resolve_compute())).read_text())["hs"]["n"] == 4
    report = Path("alignment.md").read_text()
    assert "| tiny | 2 / 2 | 2 / 1 / 1 |" in report and "**carried**" in report
    stamp = Path("study/tiny/result.json").stat().st_mtime_ns
    code, out, err = run_cli(ARGS)  # same recipe: the stored result is reused, nothing is retrained
    assert code == 0, err
    assert Path("study/tiny/result.json").stat().st_mtime_ns == stamp


def test_unknown_recipe_and_missing_data_are_one_line_and_write_nothing(study):
    code, _, err = run_cli([*ARGS[:2], "nope", *ARGS[3:]])
    assert code == 1 and "recipe-study --recipe: recipe 'nope': unknown" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli([*ARGS, "--data", "nowhere"])
    assert code == 1 and "nowhere/eval/harmful.jsonl is missing" in err
    assert not Path("study").exists() and not Path("alignment.md").exists()


def test_a_foreign_directory_in_the_way_is_not_replaced(study):
    Path("study/tiny").mkdir(parents=True)
    Path("study/tiny/notes.txt").write_text("mine")
    code, _, err = run_cli(ARGS)
    assert code == 1 and "study/tiny" in err and "did not write" in err
    assert Path("study/tiny/notes.txt").read_text() == "mine" and not Path("alignment.md").exists()


def test_delta_norm_is_the_dense_frobenius_norm(tmp_path):
    import torch

    adapter = random_adapter(seed=3)
    write_adapter(tmp_path / "a", adapter)
    dense = sum(float(torch.linalg.matrix_norm(adapter.scaling * adapter.b(m) @ adapter.a(m)) ** 2)
                for m in adapter.modules)
    assert delta_norm(tmp_path / "a") == pytest.approx(math.sqrt(dense), rel=1e-5)


def test_targets():
    assert targets(70, 45, 10, 12) == {"carried": True, "safe": True, "answers": True}
    assert targets(70, 40, 38, 12) == {"carried": False, "safe": False, "answers": True}
    assert targets(None, 40, 10, None) == {"carried": True, "safe": None, "answers": None}
    assert targets(45, 40, 10, 30)["safe"] is False   # HS(M) - HS(M'+Wa) = 35 < 40


def test_a_result_stored_before_a_recipe_field_existed_is_reused_only_at_that_fields_old_value(tmp_path):
    from nlsr_core.compute import Compute
    from nlsr_core.study.recipe_study import RECORD_DEFAULTS, cached_result

    recipe = Recipe("old")
    record = {k: v for k, v in recipe.record().items() if k not in RECORD_DEFAULTS}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "result.json").write_text(json.dumps({"recipe": record, "data_sha256": "d1"}))
    fp32 = Compute("cpu", "float32")   # results stored before placements existed were measured so
    assert cached_result(tmp_path, recipe, fp32, "d1") == {"recipe": record, "data_sha256": "d1"}
    assert cached_result(tmp_path, Recipe("old", preference_pairs="refusal"), fp32, "d1") is None
    assert cached_result(tmp_path, recipe, Compute("cpu", "bfloat16"), "d1") is None   # never reused at another dtype
    assert cached_result(tmp_path, recipe, fp32, "d2") is None   # other training rows or held-out prompts
    (tmp_path / "old" / "result.json").write_text(json.dumps({"recipe": record}))
    assert cached_result(tmp_path, recipe, fp32, "d1") is None   # stored before the digest: cannot be checked


def test_recipe_study_reads_the_prepared_data_spec(study):
    from nlsr_core.study.recipe_study import data_spec

    spec = data_spec(Path("data/prepared"), None)
    assert (spec.source, spec.sizes.sft_refusal, spec.preference_pairs) == ("synthetic", 8, "all")
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError, match="manifest.json is missing"):
        data_spec(Path("nowhere"), None)


def test_recipe_data_digest_follows_the_training_rows_and_the_held_out_prompts(study):
    import dataclasses

    from nlsr_core.study.recipe_study import RecipeData, data_spec

    spec = data_spec(Path("data/prepared"), None)
    one = RecipeData.of(TINY, spec, Path("data/prepared"), "sst2")
    assert RecipeData.of(TINY, spec, Path("data/prepared"), "sst2").sha256 == one.sha256
    assert RecipeData.of(dataclasses.replace(TINY, pairs_safety=3), spec, Path("data/prepared"), "sst2").sha256 \
        != one.sha256
    assert "heldout/pairs.jsonl" in one.held_out   # the judge-free pairs are held out like the eval prompts
    probes = Path("data/prepared/eval/benign.jsonl")
    probes.write_text(probes.read_text().replace('"prompt": "', '"prompt": "x', 1))
    assert RecipeData.of(TINY, spec, Path("data/prepared"), "sst2").sha256 != one.sha256


def test_the_scaling_curve_of_recipes_differing_only_in_pair_counts(study, monkeypatch):
    import csv
    import dataclasses

    monkeypatch.setitem(recipes(), "tiny3", dataclasses.replace(TINY, name="tiny3", pairs_safety=3))
    monkeypatch.setitem(recipes(), "other", dataclasses.replace(TINY, name="other", beta=0.5))
    args = [*ARGS[:2], "tiny3", "--recipe", "tiny", "--recipe", "other", *ARGS[3:]]
    code, _, err = run_cli([*args, "--curve-base", "other", "--curve", "curve"])
    assert code == 1 and "no other studied recipe differs from 'other'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli([*args, "--curve-base", "tiny"])
    assert code == 1 and "expected both" in err
    assert not Path("study").exists() and not Path("curve").exists()   # refused before any training
    code, _, err = run_cli([*args, "--curve-base", "tiny", "--curve", "curve"])
    assert code == 0, err
    rows = list(csv.DictReader(Path("curve/scaling.csv").open()))
    assert [(r["recipe"], r["pairs_safety"]) for r in rows] == [("tiny", "2"), ("tiny3", "3")]   # not 'other'
    results = {n: json.loads(Path(f"study/{n}/result.json").read_text()) for n in ("tiny", "tiny3")}
    for row in rows:
        hs = results[row["recipe"]]["judged"]["aligned"]["hs"]
        assert (float(row["hs"]), float(row["hs_lo"]), float(row["hs_hi"])) == (hs["pct"], *hs["ci95"])
    assert Path("curve/scaling.png").read_bytes()[:4] == b"\x89PNG"
    report = Path("alignment.md").read_text()
    assert "## Data-scaling curve (from tiny" in report and "| tiny3 | 3 / 1 / 1 |" in report
    Path("curve/mine.txt").write_text("mine")   # a file the command did not write: never replaced
    code, _, err = run_cli([*args, "--curve-base", "tiny", "--curve", "curve"])
    assert code == 1 and "mine.txt" in err and Path("curve/mine.txt").read_text() == "mine"
