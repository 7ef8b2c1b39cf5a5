"""Seconds per adapter of every registered repair method, side by side in one run, at SmolLM2 and Llama-3-8B shapes.

Every method of the repair registry (nlsr_core.repair.registry.REPAIRS: a method registered later is timed with no
edit here) repairs the same in-memory inputs through the public API, `nlsr_core.api.repair(method, Wt,
reference=We, aligned=Wa, masks=M, norms=N)`, at its default knobs (params.yaml); the API hands each method only
the inputs it reads (`Repair.needs_for`). Only that call is timed: no file is read or written, so the figures are the
repairs' own arithmetic and copies. `benchmarks/bench_paper_shapes.py` measures `nlsr realign` end to end
(start-up, loading, checks, lineage hashing, the atomic write) on files.

Shapes (the seven projections q, k, v, o, gate, up, down of every block, LoRA alpha = 2r):

    smollm2     SmolLM2-135M: 30 blocks, hidden 576, intermediate 1536, 9 heads / 3 KV heads of dim 64, r = 16
    llama3-8b   Llama-3-8B: 32 blocks, hidden 4096, intermediate 14336, 32 heads / 8 KV heads of dim 128, r = 128
                (1.34 GB per fp32 adapter: Wt, We, Wa and the masks hold 4.4 GB, and a result up to 2.7 GB more,
                since safety-vector and safemerge return rank 2r)

Inputs: seeded fp32 adapters Wt, We and Wa (A ~ N(0, 1/d_in), B ~ N(0, 0.02²), bench_paper_shapes.lora_tensors)
and NLSR's masks made the way the pipeline makes them: seeded PSD r×r lowrank Grams (the identification statistics
`nlsr identify` writes, bench_paper_shapes.lowrank_grams) turned into masks of We by `masks_from_stats` at P_SR =
--sparsity (identify.sparsity, 0.35) with the params' preset, so the masks have the identified kept fraction and
layout. Antidote's realignment norms N (Σ x² per input feature of every factor) are seeded positive values of
the right shapes: the model pass over the realignment set that makes them is an identification-style forward pass
(`nlsr identify`'s cost, benchmarks/bench_paper_shapes.py), not part of the repair. Making the inputs is not
timed (they are `nlsr realign`'s first step, not a repair).

Rounds are interleaved (every method once per round, the order rotated by one each round, so no method always runs
first or right after the same neighbour) and the best round counts, since the machine may be shared. Torch runs
with the threads it starts with (recorded); `--threads default,1` also times every method with
torch.set_num_threads(1) in the same rounds. That matters on a shared machine: two OpenMP threads beside a busy
process stall the small per-module products these repairs are made of (SmolLM2 shapes on a loaded 2-core machine:
NLSR 6.7 s at 2 threads vs 0.07 s at 1, see nlsr_core.method.neurons.one_thread). The ratio is a method's best time
over NLSR's best time at the same shape and thread count in the same run.

    python benchmarks/bench_repairs.py --shapes smollm2 --rounds 1 --out /tmp/repairs.json   # smoke, seconds
    python benchmarks/bench_repairs.py --threads default,1  # both shapes, 2 rounds -> benchmarks/results/repairs.json
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from bench_paper_shapes import (LLAMA3_8B, Shapes, adapter_config, lora_tensors, lowrank_grams, machine,  # noqa: E402
                                trim_heap)

SMOLLM2 = Shapes("SmolLM2-135M", 30, 576, 3 * 64, 1536, heads=9, kv_heads=3, vocab=49152)
SHAPES = {"smollm2": (SMOLLM2, 16), "llama3-8b": (LLAMA3_8B, 128)}   # name -> (shapes, LoRA rank)
DEFAULT_OUT = REPO / "benchmarks" / "results" / "repairs.json"
BASELINE = "nlsr"


def fail(message: str) -> None:
    print(f"bench_repairs: {message}", file=sys.stderr)
    sys.exit(1)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors become one line, exit 1, as the other benchmarks do
        fail(message)


def inputs(shapes: Shapes, rank: int, sparsity: float, seed: int) -> dict:
    """{"finetuned": Wt, "reference": We, "aligned": Wa, "masks": M, "norms": N}: seeded adapters, NLSR's masks of
    We and seeded realignment norms of Wt (Antidote's Wanda score)."""
    import torch

    from nlsr_core.config import default
    from nlsr_core.lora.adapters import Adapter
    from nlsr_core.method.neurons import masks_from_stats

    config = adapter_config(rank)
    adapters = {role: Adapter(config, lora_tensors(shapes, shapes.layers, rank, seed + i))
                for i, role in enumerate(("finetuned", "reference", "aligned"))}
    ref = adapters["reference"]
    grams = lowrank_grams(ref.modules, rank, torch.Generator().manual_seed(seed + 3))
    masks = masks_from_stats(ref, grams, sparsity, default("nlsr", "preset"), "lowrank")
    gen = torch.Generator().manual_seed(seed + 4)
    ft = adapters["finetuned"]
    norms = {f"{m}.lora_{w}.input_sq": torch.rand(ft.tensors[f"{m}.lora_{w}.weight"].shape[1], generator=gen) + 0.01
             for m in ft.modules for w in "AB"}
    return {**adapters, "masks": masks, "norms": norms}


def rotated(methods: list[str], round_: int) -> list[str]:
    k = round_ % len(methods)
    return methods[k:] + methods[:k]


def bench_shape(name: str, args) -> tuple[dict, list[dict]]:
    """(the shape's inputs, one row per thread setting and method)."""
    import torch

    import nlsr_core.api as nlsr
    from nlsr_core.errors import NlsrError
    from nlsr_core.repair.registry import REPAIRS

    shapes, rank = SHAPES[name]
    t = time.perf_counter()
    given = inputs(shapes, rank, args.sparsity, args.seed)
    setup_s = time.perf_counter() - t
    ft, masks = given["finetuned"], given["masks"]
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    adapter_bytes = sum(x.numel() * x.element_size() for x in ft.tensors.values())
    print(f"{name}: {shapes.name} shapes, {shapes.layers} blocks x 7 = {len(ft.modules)} modules, rank {rank}, "
          f"adapter {adapter_bytes / 1e6:.0f} MB fp32; masks at P_SR {args.sparsity} keep {kept:.3f}; inputs made "
          f"in {setup_s:.1f} s", flush=True)

    methods = list(REPAIRS)
    default_threads = torch.get_num_threads()
    counts = {label: default_threads if label == "default" else int(label) for label in args.thread_settings}
    times: dict[tuple[str, str], list[float]] = {(th, m): [] for th in counts for m in methods}
    info: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for round_ in range(args.rounds):
        for label, threads in counts.items():   # every thread setting in every round: both see the same load
            torch.set_num_threads(threads)
            for method in rotated(methods, round_):
                if method in failed:
                    continue
                gc.collect()
                start = time.perf_counter()
                try:
                    result = nlsr.repair(method, ft, reference=given["reference"], aligned=given["aligned"],
                                         masks=masks, norms=given["norms"])
                except (NlsrError, RuntimeError, ValueError) as exc:   # one failure must not hide the others
                    failed[method] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                    print(f"  round {round_ + 1} {label:>7}: {method:>14}: FAILED ({failed[method]})", flush=True)
                    continue
                seconds = time.perf_counter() - start
                times[label, method].append(seconds)
                if method not in info:
                    info[method] = {"settings": result.record,
                                    "needs": list(REPAIRS[method].needs_for(result.settings)),
                                    **result.summary(), "rank_out": result.adapter.rank}
                del result
                trim_heap()
                print(f"  round {round_ + 1} {label:>7}: {method:>14}: {seconds:8.3f} s", flush=True)
    torch.set_num_threads(default_threads)

    rows = []
    for label, threads in counts.items():
        base = min(times[label, BASELINE]) if times.get((label, BASELINE)) else None
        for method in methods:
            row = {"shape": name, "threads": label, "torch_threads": threads, "method": method}
            if method in failed:
                rows.append({**row, "failed": failed[method]})
                continue
            best = min(times[label, method])
            rows.append({**row, "seconds": round(best, 4), "ratio_to_nlsr": round(best / base, 3) if base else None,
                         "rounds_s": [round(x, 4) for x in times[label, method]], **info[method]})
    shape = {"shapes": {**shapes.__dict__, "rank": rank, "lora_alpha": adapter_config(rank)["lora_alpha"]},
             "modules": len(ft.modules), "adapter_bytes": adapter_bytes, "sparsity": args.sparsity,
             "masks_kept_fraction": round(kept, 6), "inputs_s": round(setup_s, 2)}
    del given, ft, masks
    gc.collect()
    trim_heap()
    return shape, rows


def print_table(results: dict) -> None:
    m = results["machine"]
    print(f"\nseconds per adapter, best of {results['rounds']} interleaved round(s); x nlsr = method / nlsr at the "
          f"same shape and threads (torch {m['torch']}, {m['cpu_count']} CPUs, {m['cpu']})")
    print(f"  {'shape':>10}  {'threads':>7}  {'method':>14}  {'seconds':>9}  {'x nlsr':>7}  {'patched':>9}")
    for row in results["rows"]:
        head = f"  {row['shape']:>10}  {row['torch_threads']:>7}  {row['method']:>14}"
        if "failed" in row:
            print(f"{head}  FAILED: {row['failed']}")
            continue
        ratio = f"{row['ratio_to_nlsr']:6.2f}x" if row["ratio_to_nlsr"] is not None else f"{'-':>7}"
        patched = f"{row['patched_count']}/{row['module_count']}"
        print(f"{head}  {row['seconds']:9.3f}  {ratio}  {patched:>9}")


def parse(argv) -> argparse.Namespace:
    from nlsr_core.config import default

    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {', '.join(SHAPES)}")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best counts")
    ap.add_argument("--sparsity", type=float, default=default("identify", "sparsity"), help="P_SR of the masks")
    ap.add_argument("--threads", default="default",
                    help="comma list of torch thread counts, each timed in every round (default: as torch starts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="the results JSON")
    args = ap.parse_args(argv)
    args.shape_names = [x for x in args.shapes.split(",") if x]
    if not args.shape_names or any(x not in SHAPES for x in args.shape_names):
        fail(f"--shapes {args.shapes}: expected a comma list of {', '.join(SHAPES)}")
    args.thread_settings = list(dict.fromkeys(x for x in args.threads.split(",") if x))
    if not args.thread_settings or any(x != "default" and not (x.isdigit() and int(x) >= 1)
                                       for x in args.thread_settings):
        fail(f"--threads {args.threads}: expected a comma list of default and positive integers")
    if not 1 <= args.rounds <= 100:
        fail(f"--rounds {args.rounds}: expected 1..100")
    if not 0.0 <= args.sparsity < 1.0:
        fail(f"--sparsity {args.sparsity}: expected a value in [0, 1)")
    if not Path(args.out).parent.is_dir():
        fail(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    from nlsr_core.io.progress import set_enabled

    set_enabled(False)
    results: dict = {"machine": machine(), "argv": sys.argv[1:] if argv is None else list(argv),
                     "rounds": args.rounds, "timed": "nlsr_core.api.repair(method, Wt, reference=We, aligned=Wa, "
                     "masks=M) in memory, default knobs; no file I/O", "masks": "masks_from_stats(We, seeded "
                     "lowrank Grams, P_SR, params preset)", "shapes": {}, "rows": []}
    for name in args.shape_names:
        results["shapes"][name], rows = bench_shape(name, args)
        results["rows"] += rows
        Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print_table(results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
