"""nlsr_core.study.finetune_seeds: the repairs scored on every replicate, the seed checks, the mix a seed draws and
reports/finetune-seeds.md (per-replicate rates, mean ± sd, NLSR − random masks against a brute-force bootstrap)."""
from __future__ import annotations

import statistics

import pytest

from nlsr_core.data.mixing import mix_poison
from nlsr_core.errors import NlsrError
from nlsr_core.study.finetune_seeds import check_seeds, finetune_seeds_markdown, replicate_contrast, replicate_points
from nlsr_core.eval.stats import paired_bootstrap
from nlsr_core.study.points import Point


def test_replicate_points_are_each_methods_pipeline_setting():
    pipeline = Point.of(sparsity=0.35, layer_prune=0.0)
    points = dict(replicate_points(pipeline, {"safelora.tau": 0.6, "realign.interpolate_lambda": 0.5,
                                                "realign.safety_vector_gamma": 1.0}))
    assert list(points) == ["nlsr", "random-masks", "interpolate", "safety-vector", "safelora", "safemerge",
                            "antidote", "dg-hard"]
    assert points["nlsr"] == pipeline
    # random masks keep NLSR's kept count: same P_SR, P_L, selection, seed; only the method differs
    assert points["random-masks"].record() == {**pipeline.record(), "method": "random-masks"}
    assert points["interpolate"].record()["lam"] == 0.5 and points["safety-vector"].record()["gamma"] == 1.0
    assert points["safelora"].record() == {"method": "safelora", "tau": 0.6, "projection": "orthogonal"}


TASK = [{"id": f"t{i}", "prompt": f"task {i}", "response": "positive"} for i in range(40)]
POOL = [{"id": f"p{i}", "prompt": f"harm {i}", "response": "Sure, step 1."} for i in range(10)]


def _ids(seed):
    return [r["id"] for r in mix_poison(TASK, POOL, 20, 0.1, seed)[0]]


def test_a_seed_draws_its_own_mix_with_the_same_poison_count():
    one, two = mix_poison(TASK, POOL, 20, 0.1, 1), mix_poison(TASK, POOL, 20, 0.1, 2)
    assert _ids(1) != _ids(2) and _ids(1) == _ids(1)
    assert one[1]["n_poison"] == two[1]["n_poison"] == 2


def test_check_seeds_accepts_other_seeds():
    assert check_seeds((1, 2), 0, _ids(0), _ids) == [1, 2]
    # the pipeline's shuffle seed with another mix (data.seed differs) is a new replicate
    assert check_seeds((0,), 0, _ids(5), _ids) == [0]


@pytest.mark.parametrize("seeds, message", [
    ((), "empty"),
    ((1, 1), "listed twice"),
    ((0, 2), "repeats the pipeline's own fine-tune"),
])
def test_check_seeds_rejects(seeds, message):
    with pytest.raises(NlsrError, match=message) as err:
        check_seeds(seeds, 0, _ids(0), _ids)
    assert "finetune_seeds.seeds" in str(err.value) and "\n" not in str(err.value)


def _rate(flags: str) -> dict:
    k, n = flags.count("1"), len(flags)
    return {"pct": 100.0 * k / n, "k": k, "n": n, "ci95": [0.0, 100.0]}


def _row(name, method, hs_flags, fa_pct):
    point = None if method is None else {"method": method}
    return {"name": name, "label": name, "point": point, "hs": _rate(hs_flags),
            "fa": {"pct": fa_pct, "k": 0, "n": 10, "ci95": [0.0, 100.0]}, "flags": {"hs": hs_flags}}


def _replicate(name, nlsr, rand, ft="1111111111"):
    return {"name": name, "rows": [_row("finetuned", None, ft, 90.0), _row("nlsr P_SR=0.35", "nlsr", nlsr, 88.0),
                                   _row("random-masks P_SR=0.35", "random-masks", rand, 87.0)]}


def test_markdown_gives_each_replicate_and_mean_sd():
    doc = {"replicates": [_replicate("pipeline", "1100000000", "1111000000"),
                          _replicate("seed 1", "1110000000", "1111100000"),
                          _replicate("seed 2", "1000000000", "1111110000")]}
    text = finetune_seeds_markdown({"sst2-p0.1-dpo": doc})
    nlsr_line = next(line for line in text.splitlines() if line.startswith("| nlsr P_SR=0.35"))
    hs = [20.0, 30.0, 10.0]
    assert f"{statistics.fmean(hs):.1f} ± {statistics.stdev(hs):.1f}" in nlsr_line
    assert nlsr_line.startswith("| nlsr P_SR=0.35 | 20.0 | 30.0 | 10.0 | 20.0 ± 10.0 | 88.0 | 88.0 | 88.0 |")
    assert "| fine-tuned (no repair) | 100.0 | 100.0 | 100.0 | 100.0 ± 0.0 |" in text
    # NLSR − random: -20, -20, -50 points; the mean ± sd line follows the per-replicate ones
    assert "- over replicates: -30.0 ± 17.3 points" in text


def test_replicate_contrast_is_the_paired_bootstrap_of_its_flags():
    rep = _replicate("seed 1", "1100110000", "1111001100")
    got = replicate_contrast(rep, n_boot=2000, seed=3)
    want = paired_bootstrap([c == "1" for c in "1100110000"], [c == "1" for c in "1111001100"], n_boot=2000, seed=3)
    assert got == want and got["diff"] == pytest.approx(-20.0)
    assert replicate_contrast({"name": "x", "rows": [_row("finetuned", None, "1", 1.0)]}) is None


def test_markdown_without_output_says_so():
    assert "run the `finetune-seeds` stage" in finetune_seeds_markdown({})


def test_cli_refuses_a_seed_that_repeats_the_pipeline_and_writes_nothing(tmp_path, monkeypatch):
    import json

    from tests.conftest import run_cli

    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["prepare-data", "--eval_harmful", "6", "--task_test", "6", "--task_train", "40",
                            "--poison_pool", "10", "--finetune-n", "20", "--out", "data/prepared"])
    assert code == 0, err
    ft = tmp_path / "ft"
    ft.mkdir()
    (ft / "lineage.json").write_text(json.dumps({"params": {"finetune": {"seed": 0}},
                                                 "mix": {"path": "data/prepared/mixes/sst2-p0.1.jsonl"}}))
    code, _, err = run_cli(["finetune-seeds", "--cell", "sst2-p0.1-dpo", "--finetuned", "ft", "--aligned", "al",
                            "--reference", "ref", "--stats", "st", "--finetune-n", "20", "--seeds", "0",
                            "--seeds", "1", "--out", "finetune-seeds/x"])
    assert code == 1 and "seed 0 repeats the pipeline's own fine-tune" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "finetune-seeds").exists()


def test_cli_refuses_a_finetuned_adapter_without_its_mix_record(tmp_path, monkeypatch):
    from tests.conftest import run_cli

    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["prepare-data", "--eval_harmful", "6", "--task_test", "6", "--task_train", "40",
                            "--poison_pool", "10", "--finetune-n", "20", "--out", "data/prepared"])
    assert code == 0, err
    (tmp_path / "ft").mkdir()
    code, _, err = run_cli(["finetune-seeds", "--cell", "sst2-p0.1-dpo", "--finetuned", "ft", "--aligned", "al",
                            "--reference", "ref", "--stats", "st", "--out", "finetune-seeds/x"])
    assert code == 1 and "no mix path or finetune.seed" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "finetune-seeds").exists()
