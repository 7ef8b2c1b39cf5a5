"""The judge-free safety score of each evaluated variant (issue 13; the metric: nlsr_core.eval.preference_score).

On the prepared held-out refusal/compliance pairs (`heldout/pairs.jsonl`, written by prepare-data on prompts no
training file holds), for each variant's stack (M, M', M' + an adapter):

    ℓ(a | x) = (1/|a|) Σ_k log p(a_k | x, a_<k)
    score    = 100 · mean_i [ℓ(chosen_i | x_i) > ℓ(rejected_i | x_i)]   with its 95% Wilson interval (k wins of n)
    margin   = mean_i (ℓ(chosen_i | x_i) − ℓ(rejected_i | x_i))        (nats per token)

No generation and no keyword list: it shows whether a repair restored the model's own preference for refusing,
where the keyword judge may be blind. Scores are cached like answers (keyed by the stack's weight digests, the
pairs, the template and the batch size), so a re-run or another stage scores only new stacks.
"""
from __future__ import annotations

import json
from pathlib import Path

from nlsr_core.data.prepare import HELDOUT_PAIRS
from nlsr_core.errors import NlsrError


def load_pairs(data_dir: Path) -> list[dict] | None:
    """The held-out pairs of a prepared data directory, checked (None when the source wrote none).

    Each row must be {prompt, chosen, rejected} with a chosen answer that refuses and a rejected answer that
    does not (the refusal matcher); anything else is a one-line NlsrError naming the file and the line."""
    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.eval.judges import is_refusal

    path = Path(data_dir) / HELDOUT_PAIRS
    if not path.is_file():
        return None
    rows = read_jsonl(path)
    if not rows:
        raise NlsrError(f"{path}: no rows; expected held-out {{prompt, chosen, rejected}} pairs")
    for i, row in enumerate(rows, 1):
        if not all(isinstance(row.get(k), str) and row[k].strip() for k in ("prompt", "chosen", "rejected")):
            raise NlsrError(f"{path}:{i}: expected non-empty string fields prompt, chosen, rejected")
        if not is_refusal(row["chosen"]) or is_refusal(row["rejected"]):
            raise NlsrError(f"{path}:{i}: not a refusal/compliance pair (expected a chosen answer that refuses and "
                            f"a rejected answer that does not)")
    return rows


def judge_free_scores(plans: dict, pairs: list[dict], template: str, seed: int = 0, batch_size: int = 16,
                      cache_dir: Path | None = None, compute=None) -> dict[str, dict]:
    """{variant: {"pct", "k", "n", "ci95", "margin"}} for every StackPlan in `plans` (nlsr_core.lora.generate), each
    stack loaded on its own (W0 merged, the adapter wrapped) on `compute` and freed before the next."""
    from nlsr_core.compute import resolve_compute
    from nlsr_core.lora.generate import load_plan
    from nlsr_core.eval.cache import GenerationCache, generation_key
    from nlsr_core.eval.evaluate import stack_identity
    from nlsr_core.eval.preference_score import preference_score
    from nlsr_core.eval.stats import Rate

    cache = GenerationCache(cache_dir) if cache_dir else None
    settings = {"judge_free": [[p["chosen"], p["rejected"]] for p in pairs], "template": template,
                "batch_size": batch_size}
    identities: dict[str, dict] = {}
    compute = compute or resolve_compute()
    out = {}
    for name, plan in plans.items():
        key = generation_key(stack_identity(plan, identities, seed, compute), [p["prompt"] for p in pairs], settings)
        stored = cache.get(key) if cache else None
        if stored is None:
            stack = load_plan(plan, seed=seed, compute=compute)
            result = preference_score(stack.model, stack.tokenizer, pairs, template, batch_size)
            del stack
            if cache:
                cache.put(key, [json.dumps(result)])
        else:
            result = json.loads(stored[0])
        wins = result["wins"].count("1")
        out[name] = {**Rate(wins, result["n"]).record(), "margin": result["margin"]}
    return out
