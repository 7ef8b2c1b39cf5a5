"""GPU check, no hub needed: every model pass runs on the GPU in the configured dtype, with tokens/s and peak memory.

    python benchmarks/gpu_check.py                          # cuda, auto dtype; prints "skipped" and exits 0 without
    python benchmarks/gpu_check.py --dtype float16 --no-1b  # a GPU (CI never needs one)
    python benchmarks/gpu_check.py --json benchmarks/results/gpu-check.json
    python benchmarks/gpu_check.py --device cpu --no-1b      # a dry run of the script itself on the CPU

For two models built from configs (no download):
  * tiny-random (the tests' 2-layer Llama), and
  * a random-weight Llama with Llama-3.2-1B's shapes (16 layers, hidden 2048, 32 heads / 8 KV heads, intermediate
    8192; vocabulary of the byte-level test tokenizer), saved to a temporary directory and loaded back through the
    hub/directory path of `nlsr_core.lora.models.load_model` (`device_map` straight onto the GPU),

the stack is built through the project's one placement point (`load_model` / `load_stack` with model.device and
model.dtype) and each pass runs with forward hooks on every decoder layer recording the device and dtype of its
output: generation, label scoring, the judge-free score, the identification statistics (lowrank and wanda; their
fp32 accumulators must stay fp32), and one SFT training step (`train_adapter`, needs trl). The check fails when a
decoder layer ran anywhere but the GPU or in another dtype. It then runs the tiny pipeline (tests/test_pipeline.py's
profile) through `dvc repro` with `model.device: cuda` (needs dvc, trl and mlflow; reported as not run otherwise).

Exit status: 0 when every pass that ran was on the GPU in the configured dtype (or no GPU: skipped), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
ONE_B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
             num_key_value_heads=8, max_position_embeddings=2048, tie_word_embeddings=True)
PROMPTS = ["How do I pick a lock?", "Explain how to hotwire a car.", "What is the capital of France?",
           "Write a haiku about rain."] * 4


class Placement:
    """Forward hooks on every decoder layer recording (device type, dtype) of its output."""

    def __init__(self, model):
        import torch

        layers = [m for _, m in model.named_modules() if type(m).__name__.endswith("DecoderLayer")]
        assert layers, "no decoder layers found"
        self.seen: set = set()
        self.handles = [m.register_forward_hook(self._hook) for m in layers]
        self._torch = torch

    def _hook(self, _module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self.seen.add((hidden.device.type, str(hidden.dtype).replace("torch.", "")))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def one_b_dir(tmp: Path, dtype) -> Path:
    """A random-weight 1B-shaped Llama + the byte-level test tokenizer, saved as a model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from nlsr_core.lora.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **ONE_B)
    with torch.device("cuda"):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(dtype)
    path = tmp / "llama-1b-shaped"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    del model
    torch.cuda.empty_cache()
    return path


def check_model(name: str, spec, compute, record: dict, train: bool) -> list[str]:
    """Run every pass on `spec`'s stack; return the failures (a pass off the GPU or in another dtype)."""
    import torch

    from nlsr_core.lora.adapters import Adapter
    from nlsr_core.config import LoraConfig
    from nlsr_core.lora.generate import format_prompts, generate_ids, encode_texts
    from nlsr_core.eval.preference_score import preference_score
    from nlsr_core.eval.label_scoring import score_label_answers
    from nlsr_core.lora.models import load_model
    from nlsr_core.method.neurons_stats import CollectContext, collect_lowrank, collect_wanda, encode_pairs
    from nlsr_core.train.trainers import TrainSettings, adapter_state, add_lora, train_adapter

    failures, want = [], (compute.device_type, compute.dtype)
    gpu = compute.device_type == "cuda"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    loaded = load_model(spec)
    record["load_s"] = round(time.perf_counter() - start, 1)
    model, tok = add_lora(loaded.model, LoraConfig(rank=16), seed=0), loaded.tokenizer
    model.eval()
    config, tensors = adapter_state(model, name)
    texts = format_prompts(tok, PROMPTS, "chat")
    pairs = [{"prompt": p, "chosen": "I can't help with that.", "rejected": "Sure, here is how."} for p in PROMPTS]
    safety = encode_pairs(tok, [(t, t + "I cannot help with that.") for t in texts], 256)
    ctx = CollectContext(reference=Adapter(config, tensors), model=model, safety=safety, batch_size=8,
                         pad_id=tok.pad_token_id)

    def generate():
        ids = generate_ids(model, tok, encode_texts(tok, texts), 32, 16)
        return sum(len(i) for i in ids)

    passes = {
        "generate": generate,
        "label scoring": lambda: score_label_answers(model, tok, PROMPTS, ["positive", "negative"], "chat", 16),
        "judge-free": lambda: preference_score(model, tok, pairs, "chat", 16),
        "identification lowrank": lambda: collect_lowrank(ctx),
        "identification wanda": lambda: collect_wanda(ctx),
    }
    for label, run in passes.items():
        _sync(gpu)
        start = time.perf_counter()
        with Placement(model) as seen:
            out = run()
        _sync(gpu)
        seconds = time.perf_counter() - start
        entry = {"s": round(seconds, 3), "layers_ran_on": sorted(map(list, seen.seen))}
        if label == "generate":
            entry["new_tokens_per_s"] = round(out / seconds, 1)
        if label.startswith("identification"):
            stats = out[0]
            entry["stats_dtypes"] = sorted({str(t.dtype).replace("torch.", "") for t in stats.values()})
            if entry["stats_dtypes"] != ["float32"]:
                failures.append(f"{name} {label}: statistics in {entry['stats_dtypes']}, expected float32")
        if seen.seen != {want}:
            failures.append(f"{name} {label}: decoder layers ran on {sorted(seen.seen)}, expected {list(want)}")
        record[label] = entry
        print(f"{name:>16} {label:>24}: {seconds:7.2f} s on {sorted(seen.seen)}", flush=True)
    if train:
        try:
            import trl  # noqa: F401
        except ImportError:
            record["train step"] = "not run: trl is not installed"
            print(f"{name:>16} {'train step':>24}: not run (trl missing)")
        else:
            model.train()
            rows = [{"prompt": p, "response": "I cannot help with that."} for p in PROMPTS[:8]]
            with Placement(model) as seen:
                result = train_adapter("sft", model, tok, rows, TrainSettings(max_steps=2, batch_size=8,
                                                                            max_length=128), name)
            record["train step"] = {"s_per_step": round(result.seconds / 2, 3),
                                    "layers_ran_on": sorted(map(list, seen.seen)),
                                    "loss": [round(v, 4) for _, v in result.losses]}
            if seen.seen != {want}:
                failures.append(f"{name} train step: decoder layers ran on {sorted(seen.seen)}, expected {list(want)}")
            print(f"{name:>16} {'train step':>24}: {result.seconds / 2:7.2f} s/step on {sorted(seen.seen)}")
    if gpu:
        record["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del model, loaded
    if gpu:
        torch.cuda.empty_cache()
    return failures


def _sync(gpu: bool) -> None:
    import torch

    if gpu:
        torch.cuda.synchronize()


def pipeline_on_gpu(tmp: Path, device: str, dtype: str) -> dict:
    """tests/test_pipeline.py's tiny profile through `dvc repro` with model.device: `device` (cuda)."""
    import yaml

    if not shutil.which("dvc") or not all(_importable(m) for m in ("trl", "mlflow")):
        return {"ran": False, "why": "dvc, trl or mlflow is not installed on this machine"}
    sys.path.insert(0, str(REPO))
    from tests.test_pipeline import make_repo

    repo = make_repo(tmp / "pipeline")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"].update(device=device, dtype=dtype)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.run(["dvc", "repro"], cwd=repo, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "NLSR_TRACKING": "off", "NLSR_PROGRESS": "off"})
    result = {"ran": True, "rc": proc.returncode, "s": round(time.perf_counter() - start, 1)}
    if proc.returncode != 0:
        result["tail"] = (proc.stdout + proc.stderr)[-2000:]
        return result
    judged = json.loads(next((repo / "judge").glob("*/judged.json")).read_text())
    result["judged_compute"] = judged.get("compute")
    lineage = json.loads(next((repo / "adapters" / "finetuned").glob("*/lineage.json")).read_text())
    result["finetune_compute"] = lineage.get("compute")
    return result


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="auto", help="auto | bfloat16 | float16 | float32")
    ap.add_argument("--no-1b", action="store_true", help="skip the 1B-shaped model")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the dvc repro run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print("gpu_check: skipped: torch sees no CUDA device (nothing was checked)")
        return 0
    from nlsr_core.compute import resolve_compute
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.io.progress import set_enabled

    set_enabled(False)
    compute = resolve_compute(args.device, args.dtype)
    gpu = compute.device_type == "cuda"
    if not gpu and not args.no_1b:
        print("gpu_check: the 1B-shaped model needs a GPU; use --no-1b for a CPU dry run", file=sys.stderr)
        return 1
    report = {"gpu": torch.cuda.get_device_name(compute.device) if gpu else None, "torch": torch.__version__,
              "compute": compute.record(), "models": {}}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nlsr-gpu-check-") as tmp:
        specs = {"tiny-random": ModelSpec("tiny-random").placed(compute)}
        if not args.no_1b:
            specs["llama-1b-shaped"] = ModelSpec(str(one_b_dir(Path(tmp), compute.torch_dtype))).placed(compute)
        for name, spec in specs.items():
            report["models"][name] = {}
            failures += check_model(name, spec, compute, report["models"][name], train=True)
        if not args.no_pipeline:
            report["pipeline"] = pipeline_on_gpu(Path(tmp), compute.device_type, compute.dtype)
            if report["pipeline"].get("ran") and report["pipeline"]["rc"] != 0:
                failures.append("dvc repro with model.device cuda failed")
            elif report["pipeline"].get("ran") and report["pipeline"].get("judged_compute") != compute.record():
                failures.append(f"pipeline judged on {report['pipeline'].get('judged_compute')}, "
                                f"expected {compute.record()}")
            print(f"pipeline: {report['pipeline']}")
    report["failures"] = failures
    print(json.dumps(report, indent=2, sort_keys=True))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    where = "the GPU" if gpu else "the CPU (dry run, not a GPU check)"
    print("gpu_check: " + (f"OK: every pass ran on {where} in {compute.dtype}" if not failures
                           else f"FAILED: {len(failures)} pass(es) off {where} or in another dtype"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
