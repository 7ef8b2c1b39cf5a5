"""FA by scoring the label strings (`judge.fa_mode: score`), token budgets in the answer-cache key, the progress
switch, and the bad-input cases of the answering settings."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.test_judge import _judge_args, cell_fixture  # noqa: F401  (fixture re-used)

PROMPTS = ["a tender, moving film", "dull and lifeless!!", "ok", "the plot is a mess but the acting is superb"]
LABELS = ("negative", "positive")


def _brute_force(model, tokenizer, prompt_ids, candidates):
    """Each (prompt, candidate) sequence alone, no padding: Σ log p of the candidate tokens, and the prompt's
    greedy first token."""
    import torch

    ll, first = [], []
    for ids in prompt_ids:
        row = []
        for cand in candidates:
            seq = torch.tensor([list(ids) + cand])
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=seq).logits[0].float(), dim=-1)
            row.append(sum(float(logp[len(ids) + k - 1, tok]) for k, tok in enumerate(cand)))
            first_tok = int(logp[len(ids) - 1].argmax())
        ll.append(row)
        first.append(first_tok)
    return ll, first


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_label_loglik_matches_brute_force(tiny, one_torch_thread, batch_size):
    from nlsr_core.lora.generate import encode_texts, format_prompts
    from nlsr_core.eval.label_scoring import label_candidates, label_loglik

    candidates = label_candidates(tiny.tokenizer, LABELS)
    assert all(c[-1] == tiny.tokenizer.eos_token_id for c in candidates)
    prompt_ids = encode_texts(tiny.tokenizer, format_prompts(tiny.tokenizer, PROMPTS, "chat"))
    assert len({len(p) for p in prompt_ids}) > 1  # different lengths: left padding is exercised
    ll, first = label_loglik(tiny.model, prompt_ids, candidates, batch_size)
    want_ll, want_first = _brute_force(tiny.model, tiny.tokenizer, prompt_ids, candidates)
    assert first == want_first
    assert ll[0][0] != ll[0][1]  # distinct candidates score differently (the comparison below is not vacuous)
    for got, want in zip(ll, want_ll):
        assert got == pytest.approx(want, abs=1e-3)


def test_predict_labels_gate_and_ties():
    from nlsr_core.eval.label_scoring import NO_LABEL, predict_labels

    candidates = [[10, 11, 2], [20, 2]]
    ll = [[-1.0, -2.0], [-3.0, -0.5], [-1.0, -1.0], [-0.1, -9.0]]
    first = [10, 20, 10, 99]  # the last row's greedy first token starts no label
    assert predict_labels(ll, first, candidates, ("a", "b")) == ["a", "b", "a", NO_LABEL]


def test_score_label_answers_agrees_with_likelihood(tiny, one_torch_thread):
    """The scored answer is the argmax label (or none) of the brute-force likelihoods."""
    from nlsr_core.lora.generate import encode_texts, format_prompts
    from nlsr_core.eval.label_scoring import NO_LABEL, label_candidates, score_label_answers

    candidates = label_candidates(tiny.tokenizer, LABELS)
    prompt_ids = encode_texts(tiny.tokenizer, format_prompts(tiny.tokenizer, PROMPTS, "chat"))
    ll, first = _brute_force(tiny.model, tiny.tokenizer, prompt_ids, candidates)
    starts = {c[0] for c in candidates}
    want = [LABELS[max(range(2), key=lambda j: (row[j], -j))] if f in starts else NO_LABEL
            for row, f in zip(ll, first)]
    assert score_label_answers(tiny.model, tiny.tokenizer, PROMPTS, LABELS, "chat", 4) == want


def test_jobs_and_cache_keys():
    """Budget and mode are part of the answer-cache key; a model judge reads longer harmful answers."""
    from nlsr_core.eval.cache import generation_key
    from nlsr_core.eval.settings import EvalSettings, LabelScoring

    s = EvalSettings(max_new_tokens=48, opening_tokens=16, label_tokens=8, fa_mode="score")
    assert s.job("harmful", "sst2", "refusal-keywords").max_new_tokens == 16
    assert s.job("harmful", "sst2", "beaver-dam").max_new_tokens == 48
    assert s.job("benign", "sst2", "beaver-dam").max_new_tokens == 16
    assert isinstance(s.job("task", "sst2", "refusal-keywords"), LabelScoring)
    gen = EvalSettings(fa_mode="generate", label_tokens=8, gsm8k_tokens=200)
    assert gen.job("task", "agnews", "refusal-keywords").max_new_tokens == 8
    assert gen.job("task", "gsm8k", "refusal-keywords").max_new_tokens == 200
    # gsm8k has no label strings: score mode generates it as generate mode does, the same job and cache key, so a
    # grid that mixes label tasks and gsm8k runs under one judge section
    mixed = EvalSettings(fa_mode="score", label_tokens=8, gsm8k_tokens=200)
    assert isinstance(mixed.job("task", "agnews", "refusal-keywords"), LabelScoring)
    gsm8k = mixed.job("task", "gsm8k", "refusal-keywords")
    assert gsm8k.record() == gen.job("task", "gsm8k", "refusal-keywords").record()

    stack, prompts = {"model": {"name": "m"}, "weak": None, "adapter": "x"}, ["p1", "p2"]
    keys = {generation_key(stack, prompts, job.record()) for job in (
        s.job("task", "sst2", "refusal-keywords"), gen.job("task", "sst2", "refusal-keywords"),
        EvalSettings(fa_mode="generate", label_tokens=9).job("task", "sst2", "refusal-keywords"),
        s.job("harmful", "sst2", "refusal-keywords"), s.job("harmful", "sst2", "beaver-dam"))}
    assert len(keys) == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"fa_mode": "vote"}, "judge.fa_mode 'vote'"),
    ({"opening_tokens": 0}, "judge.opening_tokens = 0"),
    ({"max_new_tokens": -1}, "judge.max_new_tokens = -1"),
    ({"gsm8k_tokens": 0}, "judge.gsm8k_tokens = 0"),
])
def test_eval_settings_errors(kwargs, message):
    from nlsr_core.errors import NlsrError
    from nlsr_core.eval.settings import EvalSettings

    with pytest.raises(NlsrError, match=message.replace("(", r"\(")):
        EvalSettings(**kwargs)


def test_judge_scores_fa_and_keys_the_cache_by_mode(cell_fixture, one_torch_thread):  # noqa: F811
    fx = cell_fixture
    out = fx["root"] / "scored"
    code, _, err = run_cli(_judge_args(fx, out) + ["--fa-mode", "score"])
    assert code == 0, err
    judged = json.loads((out / "judged.json").read_text())
    assert judged["generation"]["fa_mode"] == "score"
    assert judged["generation"]["task"]["decoding"] == "label-scoring"

    # generate mode on the same cache: the task answers are produced afresh (a different key), not reused
    gen_out = fx["root"] / "generated"
    assert run_cli(_judge_args(fx, gen_out) + ["--fa-mode", "generate"])[0] == 0
    for variant in ("base", "aligned", "finetuned"):
        scored = [json.loads(line) for line in (out / variant / "task.jsonl").read_text().splitlines()]
        generated = [json.loads(line) for line in (gen_out / variant / "task.jsonl").read_text().splitlines()]
        assert judged["variants"][variant]["fa"]["k"] == sum(r["correct"] for r in scored)
        for s_row, g_row in zip(scored, generated):
            # a scored row holds a label; a row the model would not start with a label holds its generated answer
            assert s_row["response"] in LABELS or s_row["response"] == g_row["response"]
    # tiny-random answers in bytes, so no row starts with a label token: every row fell back to generation
    assert all(r["response"] not in LABELS for r in scored)


@pytest.mark.parametrize("extra, cell, message", [
    (["--fa-mode", "vote"], "sst2-p0.1-dpo", "judge.fa_mode 'vote': expected one of score, generate"),
    (["--opening-tokens", "0"], "sst2-p0.1-dpo", "judge.opening_tokens = 0: expected a positive integer"),
])
def test_answering_bad_input(cell_fixture, extra, cell, message):  # noqa: F811
    fx = cell_fixture
    out = fx["root"] / "bad-answering"
    args = _judge_args(fx, out) + extra
    args[args.index("--cell") + 1] = cell
    code, _, err = run_cli(args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("setting, shown", [("on", True), ("off", False)])
def test_progress_switch(cell_fixture, monkeypatch, one_torch_thread, setting, shown):  # noqa: F811
    fx = cell_fixture
    monkeypatch.setenv("NLSR_PROGRESS", setting)
    # no cache: every answer is produced, so the bar has work to show
    args = _judge_args(fx, fx["root"] / f"progress-{setting}")
    args[args.index("--cache") + 1] = ""
    code, _, err = run_cli(args)
    assert code == 0, err
    assert ("answers:" in err) is shown


def test_answering_defaults_are_params_yaml():
    """One setting, one place: the command defaults (EvalSettings) equal params.yaml's judge section."""
    import dataclasses

    import yaml

    from nlsr_core.eval.settings import EvalSettings
    from tests.conftest import REPO

    judge = yaml.safe_load((REPO / "params.yaml").read_text())["judge"]
    for f in dataclasses.fields(EvalSettings):
        if f.name != "template":
            assert judge[f.name] == f.default, f.name
