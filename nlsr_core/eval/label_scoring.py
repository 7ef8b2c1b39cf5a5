"""Task accuracy by scoring the label strings instead of generating an answer (`judge.fa_mode: score`).

For a label task (sst2, agnews) the fine-tuned model was trained to answer with the label string and stop, so
one forward pass per (row, label) pair tells what it would answer:

    x = prompt_ids ++ label_ids ++ [eos]        (the training text of that label: response + end of turn)
    ll(label) = Σ_k log p(x_{P+k} | x_{<P+k})  over the label tokens and the eos      (P = len(prompt_ids))

The predicted label is argmax ll over the task's label strings, but only when the model would start its answer
with a label: its most likely first answer token (argmax of p(· | prompt)) must be the first token of one of the
label strings. Otherwise the row gets NO_LABEL, and the judge generates that row's answer instead
(nlsr_core.eval.evaluate.run_jobs), so "I'm sorry, ..." scores 0 and "The sentiment is positive" scores as in
generate mode; without this gate a refusing model would get a forced-choice accuracy near chance.

Batches are left-padded (like generation), position ids follow the attention mask (as `generate` computes them),
and only the last max(len(label)) + 1 positions are turned into logits, so the (B, T, V) logits tensor is
never built.
"""
from __future__ import annotations

from typing import Sequence

from nlsr_core.errors import NlsrError

NO_LABEL = ""  # the answer recorded for a row whose most likely first token starts no label


def label_candidates(tokenizer, labels: Sequence[str]) -> list[list[int]]:
    """Token ids of each label string followed by the end-of-turn token (how training wrote the answer)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise NlsrError("fa_mode score: the tokenizer has no eos token, so a label answer cannot end")
    out = []
    for label in labels:
        ids = tokenizer(label, add_special_tokens=False)["input_ids"]
        if not ids:
            raise NlsrError(f"fa_mode score: label {label!r} encodes to no tokens; expected a non-empty label")
        out.append(list(ids) + [eos])
    return out


def label_loglik(model, prompt_ids: Sequence[list[int]], candidates: list[list[int]], batch_size: int,
                 progress=None) -> tuple[list[list[float]], list[int]]:
    """Log-likelihood of every candidate after every prompt, and each prompt's greedy first token.

    prompt_ids: N token lists; candidates: L token lists. Returns (ll: N × L, first: N token ids).
    Each forward pass holds `batch_size` (prompt, candidate) sequences, i.e. (B, T) ids -> (B, K, V) logits
    with K = max candidate length + 1.
    """
    from nlsr_core.lora.generate import continuation_logliks

    pairs = [(i, j) for i in range(len(prompt_ids)) for j in range(len(candidates))]   # row-major: N × L
    L = len(candidates)

    def advance(n: int) -> None:   # the bar counts rows (answers): each row has one pair per candidate
        if progress is not None:
            progress.update(n / L)

    sums, greedy = continuation_logliks(model, [prompt_ids[i] for i, _ in pairs], [candidates[j] for _, j in pairs],
                                        batch_size, keep=max(len(c) for c in candidates) + 1, on_batch=advance)
    ll = [sums[i * L:(i + 1) * L] for i in range(len(prompt_ids))]
    # the greedy first token depends on the prompt only; it is read from the row's pair scored last (the
    # shortest candidate, the later one on a tie), as its batch composition decides the low bits
    last = max(range(L), key=lambda j: (-len(candidates[j]), j))
    first = [greedy[i * L + last] for i in range(len(prompt_ids))]
    return ll, first


def predict_labels(ll: list[list[float]], first: list[int], candidates: list[list[int]],
                   labels: Sequence[str]) -> list[str]:
    """The highest-likelihood label per row, or NO_LABEL when the greedy first token starts no label
    (ties go to the earlier label in `labels`)."""
    starts = {c[0] for c in candidates}
    out = []
    for scores, tok in zip(ll, first):
        if tok not in starts:
            out.append(NO_LABEL)
            continue
        out.append(labels[max(range(len(labels)), key=lambda j: (scores[j], -j))])
    return out


def score_label_answers(model, tokenizer, prompts: Sequence[str], labels: Sequence[str], template: str,
                        batch_size: int, progress=None) -> list[str]:
    """Raw task prompts -> the label the model would answer (or NO_LABEL), through the prompt template."""
    from nlsr_core.lora.generate import encode_texts, format_prompts

    if not prompts:
        return []
    candidates = label_candidates(tokenizer, labels)
    prompt_ids = encode_texts(tokenizer, format_prompts(tokenizer, prompts, template))
    ll, first = label_loglik(model, prompt_ids, candidates, batch_size, progress)
    return predict_labels(ll, first, candidates, labels)
