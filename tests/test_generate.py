"""Batched greedy generation equals one-at-a-time greedy decoding; `nlsr generate` builds the right stack."""
from __future__ import annotations

import json

import pytest


pytestmark = pytest.mark.usefixtures("one_torch_thread")
import torch

from tests.conftest import make_tiny_adapter, run_cli
from nlsr_core.lora.generate import (GenerationSettings, StackPlan, _cut_at_eos, encode_texts, generate_ids,
                                generate_responses, plan_stack)

PROMPTS = [
    "hi",
    "What is the capital of France?",
    "Tell me a long story about dragons and knights in a kingdom far, far away, with a twist at the end.",
    "ok",
    "2+2=?",
    "Classify the sentiment: a charming and often affecting journey.",
    "Summarise: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    "a b c",
    "Why is the sky blue? Explain it to a five-year-old.",
    "List three fruits.",
]


def _chat(tok, prompts, template="chat"):
    return [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts]


def naive_greedy(model, ids: list[int], steps: int, stop: set[int]) -> list[int]:
    """Oracle: full forward pass per step, no cache, no padding, argmax of the last position."""
    seq, new = list(ids), []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            if nxt in stop:
                break
            seq.append(nxt)
            new.append(nxt)
    return new


@pytest.mark.parametrize("batch_size", [3, 4, 16])
def test_batched_equals_sequential(tiny, batch_size):
    ids = encode_texts(tiny.tokenizer, _chat(tiny.tokenizer, PROMPTS))
    assert len({len(i) for i in ids}) >= 8                          # lengths differ: real left padding
    batched = generate_ids(tiny.model, tiny.tokenizer, ids, 10, batch_size)
    sequential = [generate_ids(tiny.model, tiny.tokenizer, [i], 10, 1)[0] for i in ids]
    assert batched == sequential
    assert len({tuple(b) for b in batched}) > 1                     # prompts get different answers
    stop = {tiny.tokenizer.eos_token_id}
    for k in (0, 2, 5):                                             # and the cached decoder matches the oracle
        assert batched[k] == naive_greedy(tiny.model, ids[k], 10, stop)


def test_right_padding_would_be_caught(tiny):
    """Sanity of the test above: feeding right-padded prompts changes answers, so equality is not vacuous."""
    ids = encode_texts(tiny.tokenizer, _chat(tiny.tokenizer, PROMPTS[:4]))
    width = max(map(len, ids))
    pad = tiny.tokenizer.pad_token_id
    right = torch.tensor([i + [pad] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    with torch.no_grad():
        out = tiny.model.generate(input_ids=right, attention_mask=mask, max_new_tokens=6, do_sample=False)
    wrong = out[:, width:].tolist()
    good = generate_ids(tiny.model, tiny.tokenizer, ids, 6, 4)
    assert wrong != good


@pytest.mark.parametrize("seq, stop, expected", [
    ([5, 6, 7], [9], [5, 6, 7]),
    ([5, 9, 7, 9], [9], [5]),
    ([9, 5], [9], []),
    ([5, 8, 9], [9, 8], [5]),
])
def test_cut_at_eos(seq, stop, expected):
    assert _cut_at_eos(seq, stop) == expected


def test_generate_responses_keeps_order_and_decodes(tiny):
    settings = GenerationSettings(max_new_tokens=5, batch_size=4)
    out = generate_responses(tiny.model, tiny.tokenizer, PROMPTS, settings)
    one_by_one = [generate_responses(tiny.model, tiny.tokenizer, [p], settings)[0] for p in PROMPTS[:3]]
    assert len(out) == len(PROMPTS) and out[:3] == one_by_one
    assert all(isinstance(o, str) and "<|im_end|>" not in o for o in out)
    assert generate_responses(tiny.model, tiny.tokenizer, [], settings) == []


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 0}, {"batch_size": 0}])
def test_settings_validation(kwargs):
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError):
        GenerationSettings(**kwargs)


# --------------------------------------------------------------------------------------------- stacks / CLI
def make_adapter(out, seed, lineage):
    return make_tiny_adapter(out, seed, lineage)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    weak = make_adapter(root / "weak", 1, {"model": {"name": "tiny-random"}})
    top = make_adapter(root / "top", 2, {"model": {"name": "tiny-random"}, "weak": str(weak)})
    bare = make_adapter(root / "bare", 3, None)
    return {"root": root, "weak": weak, "top": top, "bare": bare}


def test_plan_stack_reads_lineage(adapters):
    from nlsr_core.errors import NlsrError

    assert plan_stack(adapters["top"], None) == StackPlan("tiny-random", adapters["weak"], adapters["top"])
    assert plan_stack(None, "tiny-random") == StackPlan("tiny-random", None, None)
    assert plan_stack(adapters["bare"], "tiny-random") == StackPlan("tiny-random", None, adapters["bare"])
    for adapter, model, message in [(adapters["bare"], None, "pass --model"),
                                    (adapters["top"], "smollm2-135m", "built on model 'tiny-random'"),
                                    (None, None, "--adapter DIR or --model NAME")]:
        with pytest.raises(NlsrError, match=message):
            plan_stack(adapter, model)


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_generate_cli_uses_lineage_stack(adapters, fmt, tmp_path):
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack

    prompts = PROMPTS[:5]
    src = tmp_path / f"prompts.{fmt}"
    if fmt == "txt":
        src.write_text("\n".join(prompts) + "\n\n")
    else:
        src.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    out = tmp_path / "answers.jsonl"
    code, stdout, err = run_cli(["generate", "--adapter", adapters["top"], "--prompts", src, "--out", out,
                                 "--max-new-tokens", 6, "--batch-size", 2])
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts
    assert [r["id"] for r in rows] == (list(range(5)) if fmt == "txt" else [f"q{i}" for i in range(5)])
    stack = load_stack(ModelSpec("tiny-random"), weak=adapters["weak"], adapter=adapters["top"])
    expected = generate_responses(stack.model, stack.tokenizer, prompts, GenerationSettings(6, 2))
    assert [r["response"] for r in rows] == expected
    base = load_stack(ModelSpec("tiny-random"))
    assert expected != generate_responses(base.model, base.tokenizer, prompts, GenerationSettings(6, 2))


@pytest.mark.parametrize("content, message", [
    ("", "no prompts"),
    ('{"prompt": "a"}\n{"text": "b"}\n', ":2: expected an object with a string 'prompt'"),
    ('{"prompt": "a"}\n\n{bad\n', ":3: not valid JSON"),
])
def test_generate_cli_bad_prompts(tmp_path, content, message):
    src = tmp_path / "p.jsonl"
    src.write_text(content)
    code, _, err = run_cli(["generate", "--model", "tiny-random", "--prompts", src, "--out", tmp_path / "o.jsonl"])
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()
