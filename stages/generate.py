"""`nlsr generate`: answer prompts with any produced adapter (or the base model), greedy and batched.

    nlsr generate --adapter adapters/realigned/sst2-p0.1-dpo --prompts prompts.txt --out answers.jsonl
    nlsr generate --model smollm2-135m --prompts data/prepared/eval/harmful.jsonl --out base.jsonl

The stack comes from the adapter's lineage.json: base `model`, `weak` W0 merged, then the adapter.
Prompt files: plain text (one prompt per line) or JSONL ({"prompt": ...} or {"id": ..., "prompt": ...}).
Output: JSONL {id, prompt, response} in input order. `--out` may replace only such a file (an earlier answer
file), never an input of the call or a file of the stack it loads (the adapter, W0, a base model directory).
"""
from __future__ import annotations

import click

from stages.options import compute_options


@click.command("generate")
@click.option("--adapter", type=click.Path(), default=None, help="adapter directory (stack from its lineage)")
@click.option("--model", "model_name", default=None,
              help="base model (required without --adapter or for an adapter without lineage)")
@click.option("--seed", type=int, default=0, show_default=True, help="model seed (tiny-random only)")
@click.option("--prompts", "prompts_file", type=click.Path(), required=True, help="prompts: .txt lines or JSONL")
@click.option("--out", "out_file", type=click.Path(), required=True, help="output JSONL")
@click.option("--max-new-tokens", "--max_new_tokens", "max_new_tokens", type=int, default=48, show_default=True)
@click.option("--batch-size", "--batch_size", "batch_size", type=int, default=16, show_default=True)
@click.option("--template", default="chat", show_default=True, help="chat | alpaca")
@compute_options
def command(adapter, model_name, seed, prompts_file, out_file, max_new_tokens, batch_size, template, compute):
    """Answer every prompt of PROMPTS greedily and write {id, prompt, response} rows to OUT."""
    from pathlib import Path

    from nlsr_core.io.fileio import write_jsonl
    from nlsr_core.lora.generate import (GenerationSettings, answer_file, generate_responses, load_plan, plan_inputs,
                                    plan_stack)
    from nlsr_core.io.outputs import claim_file, replace_file

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, template=template)
    plan = plan_stack(Path(adapter) if adapter else None, model_name)
    output = claim_file(out_file, "generate", "--out", recognise=answer_file,
                        inputs=[("--prompts", prompts_file), ("--adapter", adapter), *plan_inputs(plan)])
    rows = read_prompts(Path(prompts_file))
    stack = load_plan(plan, seed=seed, compute=compute)
    answers = generate_responses(stack.model, stack.tokenizer, [r["prompt"] for r in rows], settings)
    with replace_file(output) as tmp:
        write_jsonl(tmp, [{**r, "response": a} for r, a in zip(rows, answers)])
    click.echo(f"generate: {len(rows)} answers from {plan.adapter or plan.model} -> {out_file}")


def read_prompts(path) -> list[dict]:
    """[{id, prompt}] from a JSONL file (lines starting with '{') or a text file (one prompt per line)."""
    import json

    from nlsr_core.errors import NlsrError

    if not path.is_file():
        raise NlsrError(f"--prompts {path}: no such file")
    lines = [(n, ln) for n, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ln.strip()]
    if not lines:
        raise NlsrError(f"--prompts {path}: no prompts (expected one per line or JSONL rows with 'prompt')")
    if not lines[0][1].lstrip().startswith("{"):
        return [{"id": i, "prompt": ln} for i, (_, ln) in enumerate(lines)]
    rows = []
    for i, (n, ln) in enumerate(lines):
        try:
            obj = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise NlsrError(f"--prompts {path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise NlsrError(f"--prompts {path}:{n}: expected an object with a string 'prompt'")
        rows.append({"id": obj.get("id", i), "prompt": obj["prompt"]})
    return rows
