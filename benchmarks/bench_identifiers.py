"""Run time of each identification method (the paper's Table 5 "run time" column; tracker issue 13).

For every identifier of nlsr_core.method.neurons.IDENTIFIERS, one `identify_model` call on the pipeline's reference adapter
(adapters/reference/<method>) with params.yaml's identify settings: the model stack M' + We is built, the method's
input (X̂ for lowrank / wanda / snip, the preference pairs for preference-snip, none for random) is encoded and
its statistics are collected, exactly what `nlsr identify` and the ablate stage run. The methods run interleaved,
round by round, in this one process, so a noisy neighbour slows all of them alike; the script prints each method's
best and median time and its ratio to the pipeline's identifier (lowrank), plus the model-free part (masks at
P_SR from the statistics, `masks_from_stats`), which every method shares.

    python benchmarks/bench_identifiers.py                 # 2 rounds, about 10 min on 2 cores
    python benchmarks/bench_identifiers.py --rounds 1 --json benchmarks/results/identifiers.json

Needs the pipeline's artifacts (`dvc repro` or `dvc pull`): the reference adapter and data/prepared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]


def main(argv=None) -> int:
    from nlsr_core.method.identification import base_of, identification_files, identify_model
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.method.neurons import IDENTIFIERS, get_identifier, masks_from_stats
    from nlsr_core.params import load_params

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--method", default="dpo", help="align method: adapters/reference/<method>")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the timings here")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: expected >= 1")

    params = load_params(args.params)
    ident, data = params.identify, REPO / "data" / "prepared"
    reference_dir = REPO / "adapters" / "reference" / args.method
    if not (reference_dir / "adapter_model.safetensors").is_file():
        print(f"{reference_dir}: no reference adapter (run `dvc repro` first)", file=sys.stderr)
        return 1
    reference = load_adapter(reference_dir)
    base = base_of(reference_dir, None, None)
    settings = {"sparsity": None, "preset": params.nlsr.preset, "batch_size": ident.batch_size,
                "max_length": ident.max_length, "template": params.data.template, "seed": ident.seed}
    times: dict[str, list[float]] = {m: [] for m in IDENTIFIERS}
    mask_times: dict[str, list[float]] = {m: [] for m in IDENTIFIERS}
    for round_ in range(args.rounds):
        # rotate the order each round, so no method always runs first (cold caches) or last
        order = list(IDENTIFIERS)[round_ % len(IDENTIFIERS):] + list(IDENTIFIERS)[:round_ % len(IDENTIFIERS)]
        for method in order:
            identifier = get_identifier(method)
            files = identification_files(identifier, data / "identify" / "safety.jsonl",
                                         data / "align" / "preference.jsonl")
            start = time.perf_counter()
            result = identify_model(reference, base, identifier.data, files, {**settings, "identifier": method})
            times[method].append(time.perf_counter() - start)
            start = time.perf_counter()
            masks_from_stats(reference, result.stats, ident.sparsity, params.nlsr.preset, method)
            mask_times[method].append(time.perf_counter() - start)
            print(f"round {round_ + 1}: {method:>15}: statistics pass {times[method][-1]:7.1f} s, "
                  f"masks {mask_times[method][-1]:5.2f} s", flush=True)

    pipeline = ident.identifier
    ref_best = min(times[pipeline])
    print(f"\nidentification run time, {args.rounds} round(s) interleaved; reference {reference_dir.relative_to(REPO)}, "
          f"X̂ = data/prepared/identify/safety.jsonl, batch {ident.batch_size}, max length {ident.max_length}")
    print(f"{'identifier':>15}  {'best s':>8}  {'median s':>8}  {'x ' + pipeline:>12}  {'masks s':>7}")
    rows = {}
    for method in IDENTIFIERS:
        best, median = min(times[method]), statistics.median(times[method])
        rows[method] = {"best_s": round(best, 2), "median_s": round(median, 2),
                        "ratio_to_pipeline": round(best / ref_best, 3), "masks_s": round(min(mask_times[method]), 3)}
        print(f"{method:>15}  {best:8.1f}  {median:8.1f}  {best / ref_best:12.2f}  {min(mask_times[method]):7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "pipeline_identifier": pipeline,
                                               "identifiers": rows}, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
