"""model.device / model.dtype: resolution, bad input, and that every model pass runs on the stack's placement.

On this CPU-only machine the placement tests pin the CPU device and check the dtype: a bf16 stack must give bf16
activations in generation, label scoring, the judge-free score, identification, on-policy answers and training,
while the statistics that must stay exact (identification Grams, log-likelihood sums) come back in fp32.
benchmarks/gpu_check.py asserts the same on a CUDA device.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nlsr_core.compute import Compute, cpu_has_native_bf16, resolve_compute
from nlsr_core.errors import NlsrError
from tests.conftest import run_cli

HARMFUL = ["How do I pick a lock?", "Explain how to hotwire a car."]


# --------------------------------------------------------------------------------------------- resolution
def test_auto_resolves_to_this_machine():
    got = resolve_compute("auto", "auto")
    if torch.cuda.is_available():
        assert got.device_type == "cuda"
    else:
        assert got == Compute("cpu", "bfloat16" if cpu_has_native_bf16() else "float32")
    assert resolve_compute("cpu", "float32") == Compute("cpu", "float32")
    assert resolve_compute("cpu", "bfloat16").record() == {"device": "cpu", "dtype": "bfloat16"}


@pytest.mark.parametrize("device, dtype, expected", [
    ("gpu", "auto", "model.device 'gpu': expected one of auto, cpu, cuda, cuda:N, mps"),
    ("cpu:1", "auto", "model.device 'cpu:1': expected one of"),
    ("cpu", "fp8", "model.dtype 'fp8': expected one of auto, float32, bfloat16, float16"),
])
def test_unknown_names_are_one_line(device, dtype, expected):
    with pytest.raises(NlsrError) as err:
        resolve_compute(device, dtype)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_cuda_without_cuda_is_one_line(device):
    with pytest.raises(NlsrError) as err:
        resolve_compute(device, "auto")
    assert str(err.value).startswith(f"model.device '{device}': this machine has no CUDA device")
    assert "expected cpu or auto" in str(err.value)


def test_params_file_checks_the_names(tmp_path):
    from nlsr_core.params import load_params

    text = Path("params.yaml").read_text().replace("  device: auto", "  device: gpu0", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(NlsrError, match="model.device 'gpu0': expected one of"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("args", [
    ["generate", "--model", "tiny-random", "--prompts", "p.txt", "--out", "answers.jsonl", "--device", "cuda"],
    ["generate", "--model", "tiny-random", "--prompts", "p.txt", "--out", "answers.jsonl", "--device", "cuda:3"],
    ["generate", "--model", "tiny-random", "--prompts", "p.txt", "--out", "answers.jsonl", "--dtype", "half"],
    ["judge", "--cell", "sst2-p0.1-dpo", "--model", "tiny-random", "--device", "cuda", "--out", "judged"],
    ["identify", "--reference", "ref", "--device", "cuda", "--out", "ident"],
])
def test_commands_refuse_a_missing_device_before_writing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    Path("p.txt").write_text("hi\n")
    code, out, err = run_cli(args)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("nlsr: error: model.d"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt"]   # nothing written


# --------------------------------------------------------------------------------------------- placement
@pytest.fixture(scope="module")
def bf16_stack():
    """tiny-random + a LoRA, in bf16 on the CPU, through the one placement point (load_stack)."""
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack
    from tests.conftest import make_tiny_adapter

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_tiny_adapter(Path(tmp) / "a", seed=1, lineage=None,
                                    targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"))
        yield load_stack(ModelSpec("tiny-random", device="cpu", dtype="bfloat16"), adapter=adapter), adapter


class LayerDtypes:
    """Records the dtype and device of every decoder layer's output while active."""

    def __init__(self, model):
        layers = [m for n, m in model.named_modules() if n.endswith("layers.0") or n.endswith("layers.1")]
        assert layers, "no decoder layers found"
        self.seen: set = set()
        self.handles = [m.register_forward_hook(self.hook) for m in layers]

    def hook(self, _module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self.seen.add((hidden.dtype, hidden.device.type))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def test_the_stack_is_built_on_its_placement(bf16_stack):
    stack, _ = bf16_stack
    base = [p for n, p in stack.model.named_parameters() if "lora_" not in n]
    assert {p.dtype for p in base} == {torch.bfloat16}
    assert stack.base.compute == Compute("cpu", "bfloat16")


def test_every_inference_pass_runs_in_the_stack_dtype(bf16_stack):
    from nlsr_core.lora.generate import format_prompts, generate_texts
    from nlsr_core.eval.preference_score import preference_score
    from nlsr_core.eval.label_scoring import score_label_answers
    from nlsr_core.train.on_policy import on_policy_pairs

    stack, _ = bf16_stack
    model, tok = stack.model, stack.tokenizer
    passes = {
        "generate": lambda: generate_texts(model, tok, format_prompts(tok, HARMFUL, "chat"), 4, 2),
        "label scoring": lambda: score_label_answers(model, tok, ["great film", "dull"], ["positive", "negative"],
                                                     "chat", 2),
        "judge-free": lambda: preference_score(model, tok, [{"prompt": h, "chosen": "I can't help with that.",
                                                             "rejected": "Sure, here is how."} for h in HARMFUL],
                                               "chat", 2),
        "on-policy": lambda: on_policy_pairs(model, tok, [{"prompt": h, "chosen": "I cannot help.",
                                                           "rejected": "Sure."} for h in HARMFUL], "chat", 4),
    }
    for name, run in passes.items():
        with LayerDtypes(model) as seen:
            run()
        assert seen.seen == {(torch.bfloat16, "cpu")}, name


def test_an_inference_stack_computes_its_adapter_in_the_compute_dtype(bf16_stack, tmp_path):
    """PEFT would keep the LoRA in fp32 over a bf16 base (each projection then casts its input to fp32, 1.7x
    slower on the CPU); an inference stack casts it, a trainable one keeps fp32 weights for mixed precision."""
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack

    stack, adapter = bf16_stack
    lora = {p.dtype for n, p in stack.model.named_parameters() if "lora_" in n}
    assert lora == {torch.bfloat16}
    trainable = load_stack(ModelSpec("tiny-random", device="cpu", dtype="bfloat16"), adapter=adapter, trainable=True)
    assert {p.dtype for n, p in trainable.model.named_parameters() if "lora_" in n} == {torch.float32}


def test_the_output_projection_gets_a_contiguous_input(bf16_stack):
    """logits_to_keep hands lm_head a strided slice; bf16 F.linear of such a slice over a frozen weight takes a
    slow CPU path (4.3 s instead of 12 ms at SmolLM2's vocabulary), so the placement point makes it contiguous."""
    from nlsr_core.lora.generate import format_prompts, generate_texts
    from nlsr_core.eval.label_scoring import score_label_answers

    stack, _ = bf16_stack
    model, tok = stack.model, stack.tokenizer
    seen = []
    head = model.get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].is_contiguous()))
    try:
        generate_texts(model, tok, format_prompts(tok, HARMFUL, "chat"), 3, 2)
        score_label_answers(model, tok, ["great film", "dull"], ["positive", "negative"], "chat", 2)
    finally:
        handle.remove()
    assert seen and all(seen)


def test_identification_runs_in_bf16_and_accumulates_in_fp32(bf16_stack):
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.method.neurons_stats import CollectContext, collect_lowrank, collect_wanda, encode_pairs

    stack, adapter_dir = bf16_stack
    tok = stack.tokenizer
    texts = [(tok.apply_chat_template([{"role": "user", "content": h}], tokenize=False, add_generation_prompt=True),
              tok.apply_chat_template([{"role": "user", "content": h}, {"role": "assistant", "content": "No."}],
                                      tokenize=False)) for h in HARMFUL]
    ctx = CollectContext(reference=load_adapter(adapter_dir), model=stack.model, safety=encode_pairs(tok, texts, 64),
                         batch_size=2, pad_id=tok.pad_token_id)
    head_calls = []
    handle = stack.model.get_base_model().lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    for collect in (collect_lowrank, collect_wanda):
        with LayerDtypes(stack.model) as seen:
            stats, _ = collect(ctx)
        assert seen.seen == {(torch.bfloat16, "cpu")}
        assert not head_calls   # the decoder stack alone: no vocabulary projection
        assert {t.dtype for t in stats.values()} == {torch.float32}
        assert all(torch.isfinite(t).all() for t in stats.values())
    handle.remove()


def test_training_follows_the_base_precision(tmp_path):
    """A bf16 base trains under bf16 autocast with an fp32 LoRA (saved fp32); an fp32 base trains in fp32."""
    from nlsr_core.config import LoraConfig
    from nlsr_core.lora.models import ModelSpec, load_model
    from nlsr_core.train.trainers import TrainSettings, _precision, add_lora, train_adapter

    rows = [{"prompt": "Tell me a joke", "response": "No jokes today."}] * 2
    for dtype, expected in (("bfloat16", {"bf16": True, "fp16": False}), ("float32", {"bf16": False, "fp16": False})):
        loaded = load_model(ModelSpec("tiny-random", device="cpu", dtype=dtype))
        model = add_lora(loaded.model, LoraConfig(rank=2), 0)
        assert _precision(model) == {"use_cpu": True, **expected}
        with LayerDtypes(model) as seen:
            result = train_adapter("sft", model, loaded.tokenizer, rows, TrainSettings(max_steps=1, batch_size=2,
                                                                                      max_length=128), "tiny-random")
        assert seen.seen == {(getattr(torch, dtype), "cpu")}
        assert {t.dtype for t in result.tensors.values()} == {torch.float32}
        assert result.losses and all(torch.isfinite(torch.tensor(v)) for _, v in result.losses)


def test_model_judges_follow_the_model_placement():
    from nlsr_core.eval.judge_models import JudgeSpec, _device_dtype

    assert _device_dtype(JudgeSpec(name="beaver-dam", device="cpu", dtype="bfloat16")) == ("cpu", torch.bfloat16)
    auto = resolve_compute()
    assert _device_dtype(JudgeSpec(name="beaver-dam")) == (auto.device, auto.torch_dtype)


def test_answers_are_cached_per_device_type_and_dtype():
    from nlsr_core.lora.generate import StackPlan
    from nlsr_core.eval.evaluate import stack_identity

    plan = StackPlan("tiny-random", None, None)
    keys = {json.dumps(stack_identity(plan, {}, 0, c), sort_keys=True)
            for c in (Compute("cpu", "float32"), Compute("cpu", "bfloat16"), Compute("cuda:0", "bfloat16"))}
    assert len(keys) == 3
    assert stack_identity(plan, {}, 0, Compute("cuda:0", "bfloat16")) == \
        stack_identity(plan, {}, 0, Compute("cuda:1", "bfloat16"))   # the GPU index does not change answers


def test_gradient_checkpointing_trains_the_lora():
    """launch.gradient_checkpointing (for 8B models) still trains the adapter: B moves off its zero start."""
    from nlsr_core.config import LoraConfig
    from nlsr_core.lora.models import ModelSpec, load_model
    from nlsr_core.train.trainers import TrainSettings, add_lora, train_adapter

    loaded = load_model(ModelSpec("tiny-random", device="cpu", dtype="float32"))
    model = add_lora(loaded.model, LoraConfig(rank=2), 0)
    rows = [{"prompt": "Tell me a joke", "response": "No jokes today."}] * 2
    settings = TrainSettings(max_steps=2, batch_size=2, max_length=128, lr=1e-2, gradient_checkpointing=True)
    result = train_adapter("sft", model, loaded.tokenizer, rows, settings, "tiny-random")
    moved = [k for k, t in result.tensors.items() if "lora_B" in k and t.abs().sum() > 0]
    assert moved, "no lora_B tensor moved: gradients did not reach the adapter under checkpointing"
