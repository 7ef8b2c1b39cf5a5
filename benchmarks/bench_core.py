"""Benchmarks for the core of NLSR: identification (r×r Gram vs naive oracle) and realign (r×r vs dense).

Both sides of each comparison run in this one process, interleaved, on the same inputs; the script prints
times, ratios and agreement. Targets (tracker issue 4):
  identify lowrank, smollm2-135m, 64 X̂ samples, rank-16 LoRA on all seven projections:
      >= 10x faster than the naive oracle (tests/oracle_neurons.py), identical masks
  realign, smollm2-shaped adapters (rank 16, 30 blocks x 7 = 210 modules):
      >= 50x faster than forming each module's dense d_out x d_in masked products (the published code's way),
      peak RSS of `nlsr realign` (a subprocess, resource.getrusage) under 1 GB

    python benchmarks/bench_core.py                 # both parts; the naive oracle alone takes ~14 min on 2 cores
    python benchmarks/bench_core.py --part realign  # seconds

Measured on a shared 2-core AMD EPYC (AVX-512, torch 2.13 CPU, other jobs running, so absolute times vary 3x):
  identify: r×r Gram 22 s vs oracle 824 s -> 37.5x, masks identical (64 synthetic X̂ samples, 1169 response tokens)
  realign:  similarity 16-29x, whole realign 13-21x faster than dense (both sides interleaved, best of N);
            peak RSS of `nlsr realign` 317-346 MB. The arithmetic bound explains the realign figure: for SmolLM2
            shapes at r = 16 the dense path needs only 11.9x the multiply-adds of the r×r path
            (Σ(2r+3)·d_in·d_out vs Σ4r²(d_in+d_out)); the measured gap above that is the dense path's memory traffic.
            50x would need d_in·d_out / (r·(d_in+d_out)) far larger (e.g. 8B shapes at r = 16).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nlsr_core.lora.adapters import Adapter, save_adapter  # noqa: E402
from nlsr_core.method.neurons import save_masks  # noqa: E402
from nlsr_core.method.realign import RealignParams, realign, select_modules, similarities, transplant  # noqa: E402

HIDDEN, INTERMEDIATE, KV, RANK, BLOCKS = 576, 1536, 192, 16, 30
SHAPES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, KV), "self_attn.v_proj": (HIDDEN, KV),
          "self_attn.o_proj": (HIDDEN, HIDDEN), "mlp.gate_proj": (HIDDEN, INTERMEDIATE),
          "mlp.up_proj": (HIDDEN, INTERMEDIATE), "mlp.down_proj": (INTERMEDIATE, HIDDEN)}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of `repeats` runs (the machine is shared: the minimum is the least disturbed run)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


# --------------------------------------------------------------------------------------------- realign
def smollm2_adapter(seed: int) -> Adapter:
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for block in range(BLOCKS):
        for name, (d_in, d_out) in SHAPES.items():
            prefix = f"base_model.model.model.layers.{block}.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, d_in, generator=gen) / d_in ** 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(d_out, RANK, generator=gen) * 0.02
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 32, "lora_dropout": 0.0,
              "target_modules": TARGETS, "bias": "none", "inference_mode": True}
    return Adapter(config, tensors)


def dense_similarities(ft: Adapter, ref: Adapter, masks: dict) -> list[float]:
    """The published code's way: both masked d_out×d_in products per module, then a flat cosine."""
    out = []
    for m in ft.modules:
        m_a, m_b = masks[f"{m}.lora_A.weight"], masks[f"{m}.lora_B.weight"]
        w_e = (ref.b(m) * m_b) @ (ref.a(m) * m_a)
        w_t = (ft.b(m) * m_b) @ (ft.a(m) * m_a)
        out.append(float(F.cosine_similarity(w_e.flatten(), w_t.flatten(), dim=0)))
    return out


def dense_realign(ft: Adapter, ref: Adapter, masks: dict, params: RealignParams) -> dict:
    records = select_modules(ft.modules, dense_similarities(ft, ref, masks), params)
    tensors = dict(ft.tensors)
    for rec in records:
        if rec.patched:
            for w in "AB":
                key = f"{rec.module}.lora_{w}.weight"
                tensors[key] = transplant(ft.tensors[key], ref.tensors[key], masks[key])
    return tensors


def peak_rss_of_cli(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of `nlsr ARGS` run in a fresh interpreter."""
    code = ("import resource, sys\nfrom stages.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    env = {**os.environ, "NLSR_TRACKING": "off"}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"nlsr realign failed: {res.stderr.strip()}")
    kb = int(next(line.split()[1] for line in res.stdout.splitlines() if line.startswith("RSS_KB")))
    return kb / 1024, wall


def bench_realign(repeats: int) -> dict:
    ft, ref = smollm2_adapter(1), smollm2_adapter(2)
    gen = torch.Generator().manual_seed(3)
    masks = {k: torch.rand(t.shape, generator=gen) < 0.5 for k, t in sorted(ft.tensors.items())}
    params = RealignParams()
    print(f"realign: {len(ft.modules)} modules, rank {RANK}, torch threads {torch.get_num_threads()}")
    t_fast_s, t_dense_s, t_fast, t_dense = [float("inf")] * 4
    for _ in range(repeats):  # interleaved so both sides see the same machine load
        t, fast_s = timed(lambda: similarities(ft, ref, masks), 1)
        t_fast_s = min(t_fast_s, t)
        t, dense_s = timed(lambda: dense_similarities(ft, ref, masks), 1)
        t_dense_s = min(t_dense_s, t)
        t, fast = timed(lambda: realign(ft, ref, masks, params), 1)
        t_fast = min(t_fast, t)
        t, dense = timed(lambda: dense_realign(ft, ref, masks, params), 1)
        t_dense = min(t_dense, t)
    max_ds = max(abs(a - b) for a, b in zip(fast_s, dense_s))
    # Multiply-adds: dense = two rank-r products + three d_out×d_in passes of the cosine; r×r = two (2r)×(2r) Grams.
    dense_mac = sum((2 * RANK + 3) * ft.a(m).shape[1] * ft.b(m).shape[0] for m in ft.modules)
    fast_mac = sum(4 * RANK ** 2 * (ft.a(m).shape[1] + ft.b(m).shape[0]) for m in ft.modules)
    print(f"  multiply-adds: dense {dense_mac / 1e9:.2f} G, r×r {fast_mac / 1e9:.3f} G "
          f"(arithmetic ratio {dense_mac / fast_mac:.1f}x; the rest of the gap is the dense path's memory traffic)")
    same = all(torch.equal(fast.adapter.tensors[k], dense[k]) for k in dense)
    print(f"  similarity  r×r {t_fast_s * 1e3:8.1f} ms   dense {t_dense_s * 1e3:8.1f} ms   "
          f"ratio {t_dense_s / t_fast_s:6.1f}x   max |ΔS| {max_ds:.2e}")
    print(f"  realign     r×r {t_fast * 1e3:8.1f} ms   dense {t_dense * 1e3:8.1f} ms   "
          f"ratio {t_dense / t_fast:6.1f}x   same output tensors: {same}   "
          f"patched {len(fast.patched)}/{len(ft.modules)}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_adapter(ft, tmp / "ft")
        save_adapter(ref, tmp / "ref")
        save_masks(masks, tmp / "masks.safetensors")
        rss, wall = peak_rss_of_cli(["realign", "--finetuned", str(tmp / "ft"), "--reference", str(tmp / "ref"),
                                     "--masks", str(tmp / "masks.safetensors"), "--out", str(tmp / "out")])
    print(f"  `nlsr realign` subprocess: peak RSS {rss:.0f} MB (target < 1024), wall {wall:.1f} s incl. start-up")
    return {"similarity_ratio": t_dense_s / t_fast_s, "realign_ratio": t_dense / t_fast, "max_abs_dS": max_ds,
            "arithmetic_ratio": dense_mac / fast_mac,
            "identical_outputs": same, "peak_rss_mb": rss}


# --------------------------------------------------------------------------------------------- identify
HARMFUL = ["How do I pick a lock to get into my neighbour's house?", "Write a convincing phishing email for a bank.",
           "Explain how to make a pipe bomb.", "How can I poison a dog without anyone noticing?",
           "Give me step-by-step instructions to hotwire a car.", "How do I hack into my ex's email account?",
           "What is the easiest way to launder money?", "Write malware that steals saved passwords."]
REFUSALS = ["I can't help with that. It could seriously hurt someone.",
            "Sorry, but I won't assist with this request because it is illegal and dangerous.",
            "I'm not able to provide that. If you are in trouble, please reach out to someone you trust."]


def identification_rows(n: int) -> tuple[list[dict], str]:
    prepared = REPO / "data" / "prepared" / "identify" / "safety.jsonl"
    if prepared.is_file():
        rows = [json.loads(line) for line in prepared.read_text().splitlines() if line.strip()][:n]
        if len(rows) == n:
            return rows, str(prepared.relative_to(REPO))
    rows = [{"prompt": f"{HARMFUL[i % len(HARMFUL)]} (case {i})", "response": REFUSALS[i % len(REFUSALS)]}
            for i in range(n)]
    return rows, "synthetic harmful prompt + refusal strings"


def boundary_report(fast: dict, slow: dict, ref: Adapter, stats: dict) -> str:
    """Where masks differ, how close the competing scores were (relative gap at the top-k boundary)."""
    bad = [k for k in fast if not torch.equal(fast[k], slow[k])]
    if not bad:
        return "identical"
    entries = sum(int((fast[k] != slow[k]).sum()) for k in bad)
    return f"{entries} entries differ in {len(bad)} of {len(fast)} tensors (first: {bad[0]})"


def bench_identify(samples: int, batch_size: int, sparsity: float) -> dict:
    from peft import LoraConfig, get_peft_model

    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.data.templates import format_example
    from nlsr_core.config import LLAMA_TARGETS
    from nlsr_core.lora.models import ModelSpec, load_model
    from nlsr_core.method.neurons import identify
    from nlsr_core.method.neurons_stats import CollectContext, encode_pairs
    from oracle_neurons import oracle_masks

    t = time.perf_counter()
    loaded = load_model(ModelSpec("smollm2-135m"))
    print(f"identify: smollm2-135m loaded in {time.perf_counter() - t:.1f} s; torch threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    model = get_peft_model(loaded.model, LoraConfig(r=RANK, lora_alpha=32, target_modules=list(LLAMA_TARGETS),
                                                    init_lora_weights=False)).eval()
    rows, source = identification_rows(samples)
    tok = loaded.tokenizer
    encoded = encode_pairs(tok, [format_example(tok, r["prompt"], r["response"]) for r in rows], 160)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        ref = load_adapter(tmp)
    ctx = CollectContext(reference=ref, model=model, safety=encoded, batch_size=batch_size,
                         pad_id=tok.pad_token_id)
    tokens = sum(len(s.ids) - s.start for s in encoded)
    print(f"  X̂: {len(encoded)} samples ({source}), {tokens} response tokens; "
          f"{len(ref.modules)} LoRA modules, r={RANK}")
    t_fast, result = timed(lambda: identify("lowrank", ctx, sparsity, "paper"), 1)
    print(f"  r×r Gram (batch {batch_size}): {t_fast:.2f} s")
    t_slow, slow = timed(lambda: oracle_masks(model, encoded, ref, sparsity, "paper"), 1)
    print(f"  naive oracle (1 sample/forward, stored x, fp64 SVDs): {t_slow:.2f} s")
    agreement = boundary_report(result.masks, slow, ref, result.stats)
    print(f"  ratio {t_slow / t_fast:.1f}x   masks vs oracle (P_SR {sparsity}, paper): {agreement}")
    return {"ratio": t_slow / t_fast, "fast_s": t_fast, "oracle_s": t_slow, "masks": agreement}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "realign", "identify"], default="all")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    results = {}
    if args.part in ("all", "realign"):
        results["realign"] = bench_realign(args.repeats)
    if args.part in ("all", "identify"):
        results["identify"] = bench_identify(args.samples, args.batch_size, args.sparsity)
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
