"""Several adapters in one pass (PEFT mixed-adapter batches, `adapter_names=`) against one adapter at a time.

Tracker issue 16 asks to adopt mixed batches in judge and the study stages only if this shows >= 1.3x with
identical answers. Both sides run on one M' (W0 merged) holding the same K LoRA adapters, with the same batch
size and greedy settings, interleaved over --reps repetitions:

    per-adapter  for each adapter: set_adapter, then length-sorted batches of its prompts (today's judge path)
    mixed        all (adapter, prompt) rows length-sorted together, each batch passing adapter_names= per row

    python benchmarks/bench_mixed_adapters.py [--adapters realigned finetuned safelora] [--prompts 32] [--reps 2]

Needs the pipeline's artifacts (`dvc repro`); the prompts are the first --prompts held-out harmful prompts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def mixed_generate(model, tokenizer, texts, names, max_new_tokens, batch_size):
    """Greedy answers of rows that each name their adapter: the judge's batched decoder (length-sorted batches),
    with PEFT's per-row `adapter_names` passed to each batch."""
    from nlsr_core.lora.generate import generate_texts

    return generate_texts(model, tokenizer, texts, max_new_tokens, batch_size,
                          batch_kwargs=lambda rows: {"adapter_names": [names[i] for i in rows]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", nargs="+", default=["realigned", "finetuned", "safelora"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    import yaml
    from peft import PeftModel

    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.lora.generate import format_prompts, generate_texts, plan_stack
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    grid = params["grid"]
    cell = f"{grid['tasks'][0]}-p{grid['poison_ratios'][0]}-{grid['align_methods'][0]}"
    paths = {name: REPO / f"adapters/{name}/{cell}" for name in args.adapters}
    plan = plan_stack(next(iter(paths.values())), params["model"]["name"])
    stack = load_stack(ModelSpec(plan.model, seed=params["model"]["seed"]), weak=plan.weak)
    model = None
    for name, path in paths.items():
        if model is None:
            model = PeftModel.from_pretrained(stack.model, str(path), adapter_name=name)
        else:
            model.load_adapter(str(path), adapter_name=name)
    model.eval()
    tok = stack.tokenizer
    prompts = [r["prompt"] for r in read_jsonl(REPO / "data/prepared/eval/harmful.jsonl")[:args.prompts]]
    texts = format_prompts(tok, prompts, params["data"]["template"])

    seconds = {"per-adapter": 0.0, "mixed": 0.0}
    answers = {}
    for _ in range(args.reps):
        start = time.perf_counter()
        per = {}
        for name in paths:
            model.set_adapter(name)
            per[name] = generate_texts(model, tok, texts, args.max_new_tokens, args.batch_size)
        seconds["per-adapter"] += time.perf_counter() - start
        start = time.perf_counter()
        rows = [(name, t) for name in paths for t in texts]
        flat = mixed_generate(model, tok, [t for _, t in rows], [n for n, _ in rows], args.max_new_tokens,
                              args.batch_size)
        seconds["mixed"] += time.perf_counter() - start
        mixed = {name: flat[i * len(texts):(i + 1) * len(texts)] for i, name in enumerate(paths)}
        answers = {"per-adapter": per, "mixed": mixed}
    same = sum(a == b for name in paths for a, b in zip(answers["per-adapter"][name], answers["mixed"][name]))
    total = len(paths) * len(texts)
    ratio = seconds["per-adapter"] / seconds["mixed"]
    print(f"{len(paths)} adapters x {len(texts)} prompts, {args.max_new_tokens} new tokens, batch {args.batch_size}, "
          f"{args.reps} reps: per-adapter {seconds['per-adapter']:.1f} s, mixed {seconds['mixed']:.1f} s "
          f"-> mixed is {ratio:.2f}x; identical answers {same}/{total}")
    verdict = "adopt" if ratio >= 1.3 and same == total else "do not adopt"
    print(f"criterion >= 1.3x with identical answers: {verdict}")
    print(json.dumps({"bench": "mixed_adapters", "seconds": seconds, "ratio": ratio, "identical": same,
                      "total": total}))


if __name__ == "__main__":
    main()
