"""Answering batch size: greedy answers and label scores of the judge's stacks at several `judge.batch_size`s.

The judge and the study stages answer every prompt of a split in length-sorted batches (nlsr_core.lora.generate);
on 2 CPU cores a larger batch keeps both cores busy through the decoding steps. This prints, per batch size,
the time of each side (interleaved stack by stack and repetition by repetition, so a noisy neighbour slows all
alike), the ratio to --baseline, and how many answers / label choices are identical to the baseline's (greedy
decoding is deterministic, so a batch size is only a speed-up when they all agree).

The prompts are the calibration split plus the identification prompts (the choice is never made on the test
split that reports results): harmful answers with `judge.opening_tokens`, task rows by `judge.fa_mode` score.

    python benchmarks/bench_batch.py [--sizes 16 32 48 64] [--reps 2] [--stacks finetuned realigned aligned]

Needs the pipeline's artifacts (`dvc repro`). Results: benchmarks/results/batch.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

STACKS = {"aligned": "adapters/aligned/dpo/aligned", "finetuned": "adapters/finetuned/sst2-p0.1-dpo",
          "realigned": "adapters/realigned/sst2-p0.1-dpo"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[16, 32, 48, 64])
    ap.add_argument("--baseline", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/batch.json")
    args = ap.parse_args()
    sizes = [args.baseline] + [s for s in args.sizes if s != args.baseline]

    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.lora.generate import GenerationSettings, generate_responses, load_plan, plan_stack
    from nlsr_core.eval.settings import LABEL_TASKS
    from nlsr_core.eval.label_scoring import score_label_answers

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    judge, template = params["judge"], params["data"]["template"]
    harmful = [r["prompt"] for name in ("calib/harmful.jsonl", "identify/safety.jsonl")
               for r in read_jsonl(REPO / "data/prepared" / name)]
    task = [r["prompt"] for r in read_jsonl(REPO / "data/prepared/tasks/sst2/calib.jsonl")]
    labels = LABEL_TASKS["sst2"]

    seconds = {s: 0.0 for s in sizes}
    same = {s: [0, 0] for s in sizes}   # [identical answers / label choices, total]
    reference: dict[str, list[str]] = {}
    for name in args.stacks:
        stack = load_plan(plan_stack(REPO / STACKS[name], params["model"]["name"]))
        for rep in range(args.reps):
            for size in (sizes if rep % 2 == 0 else sizes[::-1]):
                settings = GenerationSettings(max_new_tokens=judge["opening_tokens"], batch_size=size,
                                              template=template)
                start = time.perf_counter()
                answers = generate_responses(stack.model, stack.tokenizer, harmful, settings)
                answers += score_label_answers(stack.model, stack.tokenizer, task, labels, template, size)
                seconds[size] += time.perf_counter() - start
                if size == args.baseline and name not in reference:
                    reference[name] = answers
                if rep == args.reps - 1:
                    base = reference[name]
                    same[size][0] += sum(a == b for a, b in zip(answers, base))
                    same[size][1] += len(base)
        print(f"{name}: done", flush=True)
    result = {"prompts": {"harmful": len(harmful), "task": len(task)}, "stacks": args.stacks, "reps": args.reps,
              "opening_tokens": judge["opening_tokens"], "baseline": args.baseline,
              "sizes": {str(s): {"seconds": round(seconds[s], 2),
                                 "speedup_vs_baseline": round(seconds[args.baseline] / seconds[s], 3),
                                 "identical": f"{same[s][0]}/{same[s][1]}"} for s in sizes}}
    for s in sizes:
        r = result["sizes"][str(s)]
        print(f"batch {s:3d}: {r['seconds']:7.1f} s  x{r['speedup_vs_baseline']:.2f} vs {args.baseline}  "
              f"identical {r['identical']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
