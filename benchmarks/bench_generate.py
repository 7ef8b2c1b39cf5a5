"""Batched vs one-at-a-time greedy generation: tokens/s ratio and whether the answers are identical.

    python benchmarks/bench_generate.py                       # smollm2-135m, 32 prompts, 48 new tokens, batch 16
    python benchmarks/bench_generate.py --model tiny-random --batch-size 8
    python benchmarks/bench_generate.py --threads 1          # shared CPU: avoid OpenMP thread contention

Both runs use the same decoder (`nlsr_core.lora.generate.generate_ids`, greedy, KV cache); the baseline feeds one
prompt at a time (no padding), the batched run sorts prompts by length and left-pads. Target: ratio >= 4 with
identical outputs. Prints one line per measurement and a final summary line.
"""
from __future__ import annotations

import argparse
import time

PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Explain photosynthesis to a ten-year-old in a few sentences.",
    "Write a haiku about autumn leaves.",
    "Analyze the sentiment of the input, and respond only positive or negative.\nit's a charming and often "
    "affecting journey.",
    "Categorize the news article into World, Sports, Business or Sci/Tech: Stocks rallied on Friday after the "
    "central bank held interest rates steady.",
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. She sells the "
    "rest for $2 each. How much does she make every day? First think step by step.",
    "Translate 'good morning' into Spanish.",
    "List the planets of the solar system in order from the sun.",
    "How do I make a cup of green tea?",
    "What is the difference between a virus and a bacterium?",
    "Suggest a name for a small bakery.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Why is the sky blue?",
    "Write a short polite email declining a meeting invitation.",
    "What are the main causes of inflation?",
    "hi",
    "Convert 100 degrees Fahrenheit to Celsius and show the formula.",
    "Give an example of a metaphor.",
    "What does a database index do, and when should you not add one?",
    "Recommend a book for someone who liked The Hobbit.",
    "How many minutes are there in a week?",
    "Describe the water cycle.",
    "What is 17 times 23?",
    "Write a limerick about a cat who loves to code in Python and never sleeps.",
    "Name three renewable energy sources.",
    "What should I pack for a weekend hiking trip in the mountains in early spring?",
    "Explain what a neural network is in one paragraph.",
    "Is a tomato a fruit or a vegetable?",
    "Give me a synonym for 'happy'.",
    "How do vaccines work?",
    "What is the tallest mountain on Earth?",
]


def _format(tok, prompts):
    try:
        from nlsr_core.lora.generate import format_prompts

        return format_prompts(tok, prompts, "chat")
    except ImportError:  # nlsr_core.data.templates not there yet: the tokenizer's chat template directly
        return [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                        add_generation_prompt=True) for p in prompts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared CPU, 1 thread avoids OpenMP contention stalls

    from nlsr_core.lora.generate import encode_texts, generate_ids
    from nlsr_core.lora.models import ModelSpec, load_model

    t0 = time.perf_counter()
    lm = load_model(ModelSpec(args.model))
    print(f"load {args.model}: {time.perf_counter() - t0:.1f}s, torch threads {torch.get_num_threads()}")
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]
    ids = encode_texts(lm.tokenizer, _format(lm.tokenizer, prompts))
    print(f"{len(ids)} prompts, {min(map(len, ids))}-{max(map(len, ids))} prompt tokens, "
          f"max_new_tokens {args.max_new_tokens}")
    generate_ids(lm.model, lm.tokenizer, ids[:2], 4, 2)  # warm-up (first-call allocations)

    t0 = time.perf_counter()
    seq = [generate_ids(lm.model, lm.tokenizer, [i], args.max_new_tokens, 1)[0] for i in ids]
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    bat = generate_ids(lm.model, lm.tokenizer, ids, args.max_new_tokens, args.batch_size)
    t_bat = time.perf_counter() - t0

    n_seq, n_bat = sum(map(len, seq)), sum(map(len, bat))
    tps_seq, tps_bat = n_seq / t_seq, n_bat / t_bat
    same = sum(a == b for a, b in zip(seq, bat))
    print(f"one-at-a-time: {n_seq} tokens in {t_seq:.1f}s = {tps_seq:.1f} tok/s")
    print(f"batched (bs {args.batch_size}): {n_bat} tokens in {t_bat:.1f}s = {tps_bat:.1f} tok/s")
    if same < len(ids):
        first = next(k for k, (a, b) in enumerate(zip(seq, bat)) if a != b)
        diverge = next((t for t, (x, y) in enumerate(zip(seq[first], bat[first])) if x != y),
                       min(len(seq[first]), len(bat[first])))
        print(f"first differing prompt #{first}: diverges at new token {diverge}")
    print(f"RESULT ratio {tps_bat / tps_seq:.2f}x tokens/s; identical outputs: {same == len(ids)} "
          f"({same}/{len(ids)} prompts)")


if __name__ == "__main__":
    main()
