"""Alignment recipes: contrast-pair construction (counts, kinds, disjointness) and bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from nlsr_core.data import DataSpec
from nlsr_core.data import synthetic_safety as safety
from nlsr_core.data.synthetic import build_synthetic
from nlsr_core.errors import NlsrError
from nlsr_core.eval.judges import is_refusal
from nlsr_core.data.contrast import contrast_pairs, sensitive_contrast_pool
from nlsr_core.train.recipes import Recipe, check_disjoint, load_recipe, recipe_rows, recipes, with_overrides

RECIPES = recipes()


def test_contrast_pairs_counts_and_kinds():
    pairs = contrast_pairs(10, 7, seed=0)
    kinds = [p["kind"] for p in pairs]
    assert kinds.count("contrast-sensitive") == 10 and kinds.count("contrast-helpful") == 7
    assert len({p["prompt"] for p in pairs}) == 17
    for p in pairs:
        assert is_refusal(p["rejected"]) and not is_refusal(p["chosen"])


def test_contrast_pairs_deterministic_and_exclude():
    a = contrast_pairs(5, 5, seed=3)
    assert a == contrast_pairs(5, 5, seed=3)
    b = contrast_pairs(5, 5, seed=3, exclude=[p["prompt"] for p in a])
    assert not {p["prompt"] for p in a} & {p["prompt"] for p in b}


def test_contrast_topics_are_not_probe_topics():
    probes = set(safety.eval_benign_prompts())
    assert not {p for p, _, _ in sensitive_contrast_pool()} & probes
    held_out_topics = {t.lower() for t in safety.EVAL_BENIGN_TOPICS}
    assert not {t.lower() for _, _, t in sensitive_contrast_pool()} & held_out_topics


# The local-paper data-scaling series (issue 29) asks for more pairs than the synthetic suite holds, and the paper's
# recipe reads the paper's preference file: their rows are checked on the paper's data below.
SCALING = sorted(n for n in RECIPES if n.startswith("lp6-n"))
LOCAL_ONLY = {*SCALING, "lp-paper"}


@pytest.mark.parametrize("name", sorted(set(RECIPES) - LOCAL_ONLY))
def test_recipe_rows_counts_and_disjoint_from_eval(name):
    recipe = RECIPES[name]
    sft, pref = recipe_rows(recipe)
    assert sum(r["kind"] == "refusal" for r in sft) == recipe.sft_refusal
    assert sum(r["kind"] == "benign" for r in sft) == recipe.sft_benign
    counts = {k: sum(r["kind"] == k for r in pref) for k in ("safety", "contrast-sensitive", "contrast-helpful")}
    assert counts == {"safety": recipe.pairs_safety, "contrast-sensitive": recipe.pairs_sensitive,
                      "contrast-helpful": recipe.pairs_helpful}
    suite = build_synthetic(DataSpec())  # the default profile's held-out splits
    held_out = {"eval_harmful": {r["prompt"] for r in suite.eval_harmful},
                "eval_benign": {r["prompt"] for r in suite.eval_benign},
                "task_test": {r["prompt"] for t in suite.task_test.values() for r in t},
                "calib_harmful": {r["prompt"] for r in suite.calib_pool_harmful},
                "calib_task": {r["prompt"] for t in suite.calib_pool_task.values() for r in t}}
    assert check_disjoint(sft + pref, held_out, name) == len(sft) + len(pref)


def test_matched_recipe_changes_only_what_contrast_pairs_reject():
    (sft6, pref6), (sft7, pref7) = recipe_rows(RECIPES["lp6"]), recipe_rows(RECIPES["lp7"])
    assert sft6 == sft7 and len(pref6) == len(pref7)
    chosen = [r["chosen"] for r in pref7 if r["kind"] == "safety"]
    for a, b in zip(pref6, pref7):
        assert {**a, "rejected": None} == {**b, "rejected": None}
        if b["kind"] == "contrast-helpful":
            assert b["rejected"] in chosen
        else:
            assert a["rejected"] == b["rejected"]


def test_check_disjoint_names_the_split():
    with pytest.raises(NlsrError, match="eval/benign.jsonl"):
        check_disjoint([{"prompt": "x"}], {"eval/benign.jsonl": {"x"}}, "pairs")


def test_bad_recipes():
    with pytest.raises(NlsrError, match="data.sizes.contrast_sensitive: 10000 pairs"):
        contrast_pairs(10_000, 0, seed=0)
    with pytest.raises(NlsrError, match="sft_refusal"):
        Recipe("bad", sft_refusal=-1).check()
    with pytest.raises(NlsrError, match="no preference pairs"):
        Recipe("bad", pairs_safety=0, pairs_sensitive=0, pairs_helpful=0).check()
    with pytest.raises(NlsrError, match="unknown"):
        with_overrides(RECIPES["r0"], nope=1)


def test_params_recipe_is_r5_and_each_studied_recipe_changes_its_parent():
    import dataclasses

    from nlsr_core.params import load_params

    # params.yaml's recipe (docs/DESIGN.md §5.6), read through the same overlay path as recipes/r5.yaml
    assert Recipe.from_params("r5", load_params(REPO / "params.yaml")) == RECIPES["r5"]
    assert dataclasses.replace(Recipe("default"), name="r5") == RECIPES["r5"]
    assert RECIPES["r0"].sft_refusal == 256 and RECIPES["r0"].on_policy_tokens == 0 and RECIPES["r0"].chosen_nll == 0
    assert RECIPES["r3-e3-op"].on_policy_tokens == 48 and RECIPES["r3-e3"].on_policy_tokens == 0


PAPER_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "paper"
REPO = Path(__file__).resolve().parents[1]


def test_each_overlay_is_the_recipe_its_committed_result_was_trained_with():
    """recipes/<name>.yaml gives the very record stored with the recipe study's committed results (the evidence
    behind reports/alignment.md names the recipe that produced it; results stored before `RecipeData.sha256` carry
    no data digest, so the study would measure them again rather than trust their rows)."""
    import json

    results = sorted(REPO.glob("recipe-study/**/result.json"))
    assert len(results) >= 8
    for path in results:
        stored = json.loads(path.read_text())["recipe"]
        assert {k: RECIPES[stored["name"]].record()[k] for k in stored} == stored, path


def test_a_bad_overlay_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("align:\n  epochs: lots\n")
    with pytest.raises(NlsrError, match=r"bad.yaml: align.epochs: 'lots' is not a float") as err:
        load_recipe(bad)
    assert "\n" not in str(err.value)
    bad.write_text("data:\n  sizes:\n    preference: -3\n")
    with pytest.raises(NlsrError, match=r"bad.yaml: data.sizes.preference: expected an integer >= 1, got -3"):
        load_recipe(bad)
    bad.write_text("data:\n  sizes:\n    pairs: 3\n")
    with pytest.raises(NlsrError, match="bad.yaml: .*pairs"):
        load_recipe(bad)


def test_local_paper_profile_recipe_is_lp6_and_its_rows_are_the_prepared_rows(tmp_path):
    """profiles/local-paper.yaml holds recipe lp6, and recipe_rows(lp6, spec) are the rows prepare-data writes."""
    from nlsr_core.data.prepare import prepare
    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.params import load_params
    from tests.conftest import local_paper_spec

    LP6 = RECIPES["lp6"]
    assert Recipe.from_params("lp6", load_params(REPO / "profiles" / "local-paper.yaml")) == LP6
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} absent")
    spec = local_paper_spec(PAPER_DATA)
    prepare(spec, [("sst2", 0.1)], 200, tmp_path / "out")
    sft, pref = recipe_rows(LP6, spec)
    assert sft == read_jsonl(tmp_path / "out/align/sft.jsonl")
    assert pref == read_jsonl(tmp_path / "out/align/preference.jsonl")


@pytest.mark.parametrize("name", SCALING)
def test_scaling_recipes_fit_the_paper_data_and_never_train_on_its_held_out_splits(name, tmp_path):
    """Each point of the series differs from lp6 only in Wa's pair counts, its rows exist in the paper's files,
    and none is a prompt of the local-paper profile's held-out files (eval, probes, calibration, held-out pairs)."""
    import dataclasses

    from nlsr_core.data.prepare import prepare
    from nlsr_core.report.alignment_report import scaling_names
    from nlsr_core.train.recipes import eval_prompts
    from tests.conftest import local_paper_spec

    records = {n: RECIPES[n].record() for n in ("lp6", name)}
    assert scaling_names(records, "lp6") == ["lp6", name]
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} absent")
    spec = local_paper_spec(PAPER_DATA)
    prepare(spec, [("sst2", 0.1)], 200, tmp_path / "out")
    recipe = RECIPES[name]
    sft, pref = recipe_rows(recipe, spec)
    kinds = [r["kind"] for r in pref]
    assert (kinds.count("safety"), kinds.count("contrast-helpful")) == (recipe.pairs_safety, recipe.pairs_helpful)
    held_out = eval_prompts(tmp_path / "out", ("sst2",))
    assert "heldout/pairs.jsonl" in held_out and "eval/benign.jsonl" in held_out
    assert check_disjoint(sft + pref, held_out, name) == len(sft) + len(pref)
    more = dataclasses.replace(recipe, pairs_safety=recipe.pairs_safety + 1000)
    with pytest.raises(NlsrError, match=r"data.sizes.preference .*needs \d+ rows but only 714 are available"):
        recipe_rows(more, spec)


def test_the_papers_recipe_trains_w0_and_wa_on_the_same_pku_pairs():
    """lp-paper: W0 = SFT on the chosen answers of Wa's own pairs (every PKU prompt outside the held-out pairs),
    Wa = plain DPO on them: no safety-file refusal, no benign row, no contrast pair."""
    from tests.conftest import local_paper_spec

    recipe = RECIPES["lp-paper"]
    assert (recipe.sft_refusals, recipe.preference_pairs, recipe.sft_benign, recipe.pairs_helpful) == \
        ("preference-chosen", "all", 0, 0)
    assert (recipe.chosen_nll, recipe.on_policy_tokens, recipe.sft_epochs, recipe.pref_epochs) == (0, 0, 3, 3)
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} absent")
    sft, pref = recipe_rows(recipe, local_paper_spec(PAPER_DATA))
    assert len(sft) == len(pref) == recipe.pairs_safety == 730
    assert sorted((r["prompt"], r["response"]) for r in sft) == sorted((r["prompt"], r["chosen"]) for r in pref)
