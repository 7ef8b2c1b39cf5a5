"""`nlsr prepare-data` as the DVC stage calls it: determinism, DVC's dict/list spelling, one-line errors."""
from __future__ import annotations

import pytest

from nlsr_core.io.lineage import sha256_dir
from tests.conftest import run_cli

SMALL = ["--sft_refusal", "8", "--sft_benign", "8", "--preference", "8", "--identify", "4",
         "--eval_harmful", "4", "--eval_benign", "4", "--task_train", "20", "--task_test", "4",
         "--poison_pool", "10", "--finetune-n", "10"]


def test_same_params_give_byte_identical_outputs(tmp_path):
    for name in ("a", "b"):
        code, out, err = run_cli(["prepare-data", "--tasks", "sst2", "--tasks", "gsm8k", "--poison_ratios", "0.1",
                                  "--poison_ratios", "0", "--align_methods", "dpo", *SMALL,
                                  "--out", tmp_path / name])
        assert code == 0, err
    assert sha256_dir(tmp_path / "a") == sha256_dir(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a" / "mixes").iterdir()) == [
        "gsm8k-p0.1.jsonl", "gsm8k-p0.jsonl", "sst2-p0.1.jsonl", "sst2-p0.jsonl"]


@pytest.mark.parametrize("args, message", [
    (["--poison_ratios", "1.5"], "expected a number in [0, 1]"),
    (["--poison_ratios", "-0.1"], "expected a number in [0, 1]"),
    (["--finetune-n", "0"], "n"),
    (["--tasks", "mnli"], "mnli"),
    (["--source", "nope"], "unknown source"),
    (["--align_methods", "ppo"], "grid.align_methods 'ppo': expected one of sft, dpo"),
    (["--poison_pool", "2", "--finetune-n", "100", "--poison_ratios", "0.5"], "poison"),
    (["--source", "local", "--local-dir", "/nonexistent/paper", "--contrast_sensitive", "0"], "/nonexistent/paper"),
    (["--source", "local", "--local-dir", "/nonexistent/paper"], "source 'local' has no benign-sensitive prompts"),
    (["--contrast_sensitive", "5000"], "data.sizes.contrast_sensitive: 5000 pairs"),
    (["--contrast_helpful", "-1"], "data.sizes.contrast_helpful: expected an integer >= 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out_dir = tmp_path / "prepared"
    code, _, err = run_cli(["prepare-data", *SMALL, *args, "--out", out_dir])
    assert code == 1
    assert err.strip().count("\n") == 0 and message in err
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []
