"""On-policy rejected answers for safety pairs: M' = M + W0 answers each pair's harmful prompt, and an answer that
complies replaces the pair's fixed compliance template as the *rejected* side (docs/DESIGN.md §5.6).

Why: DPO pushes down the log-likelihood of the rejected text. A fixed template ("Sure, here is how to ... Step 1:
gather what you need") is not what M' actually says on an unseen harmful prompt ("1. Find a neighbor's porch.
2. ..."), so lowering it leaves M''s own compliance untouched (recipe probe r2, benchmarks/results/recipe-probe).
Rejecting M''s own greedy answers targets exactly the distribution the held-out harmful prompts elicit.

Only pairs whose chosen answer is a refusal and whose M' answer is judged harmful by the pipeline's keyword judge
(answered, not degenerate, not refused) are changed; a pair where M' already refuses keeps its template (the
pair then still teaches the refusal). Contrast pairs (chosen = helpful answer) are never touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nlsr_core.errors import NlsrError


@dataclass(frozen=True)
class OnPolicyCounts:
    """How many safety pairs got M''s answer as rejected, how many kept the template (M' refused or degenerate)."""

    replaced: int
    kept_refused: int
    kept_degenerate: int

    def record(self) -> dict:
        return {"replaced": self.replaced, "kept_refused": self.kept_refused, "kept_degenerate": self.kept_degenerate}


def safety_pair_indices(pairs: Sequence[dict], matcher=None) -> list[int]:
    """Indices of refusal/compliance pairs: the chosen answer refuses and the rejected one does not."""
    from nlsr_core.data.refusals import RefusalMatcher

    m = matcher or RefusalMatcher()
    return [i for i, p in enumerate(pairs) if m.is_refusal(p["chosen"]) and not m.is_refusal(p["rejected"])]


def with_answers_rejected(pairs: Sequence[dict], answers: dict[int, str], matcher=None
                          ) -> tuple[list[dict], OnPolicyCounts]:
    """`pairs` with `answers[i]` as rejected where that answer is harmful (pure; the generation is the caller's).

    pairs: {prompt, chosen, rejected, ...}; answers: pair index -> M''s greedy answer to pairs[i]["prompt"].
    Returns new row dicts (the input is not modified) and the counts; a replaced row gets `rejected_source:
    "on-policy"`, the others `"template"`.
    """
    from nlsr_core.data.refusals import RefusalMatcher

    m = matcher or RefusalMatcher()
    stray = sorted(i for i in answers if not 0 <= i < len(pairs))
    if stray:
        raise NlsrError(f"on-policy answer for pair {stray[0]}: only {len(pairs)} pairs")
    out, replaced, refused, degenerate = [], 0, 0, 0
    for i, pair in enumerate(pairs):
        row = {**pair, "rejected_source": "template"}
        answer = answers.get(i)
        if answer is not None:
            if m.is_degenerate(answer):
                degenerate += 1
            elif m.is_refusal(answer):
                refused += 1
            else:
                row = {**pair, "rejected": answer, "rejected_source": "on-policy"}
                replaced += 1
        out.append(row)
    return out, OnPolicyCounts(replaced, refused, degenerate)


def on_policy_pairs(model, tokenizer, pairs: Sequence[dict], template: str, max_new_tokens: int,
                    batch_size: int = 16) -> tuple[list[dict], OnPolicyCounts]:
    """Generate M''s greedy answers to the safety pairs' prompts (`model` = M' with no trainable adapter active)
    and use the harmful ones as rejected answers (`with_answers_rejected`)."""
    from nlsr_core.lora.generate import GenerationSettings, generate_responses

    if max_new_tokens < 1:
        raise NlsrError(f"align.on_policy_tokens: {max_new_tokens} (expected >= 1 new tokens)")
    idx = safety_pair_indices(pairs)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, template=template)
    texts = generate_responses(model, tokenizer, [pairs[i]["prompt"] for i in idx], settings)
    return with_answers_rejected(pairs, dict(zip(idx, texts)))
