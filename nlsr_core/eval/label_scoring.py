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
    import torch

    from nlsr_core.lora.generate import _left_pad

    pairs = [(i, j) for i in range(len(prompt_ids)) for j in range(len(candidates))]
    # longest first, like generation: less padding per batch, and a memory problem shows at once
    pairs.sort(key=lambda ij: (-(len(prompt_ids[ij[0]]) + len(candidates[ij[1]])), ij))
    keep = max(len(c) for c in candidates) + 1
    # per candidate: its token ids and the logits rows that predict them (the token at T-m+k, k < m, is
    # predicted at T-m+k-1, i.e. logits row K-m+k-1 of the K kept)
    targets = [torch.tensor(c) for c in candidates]
    rows_of = [torch.arange(keep - len(c) - 1, keep - 1) for c in candidates]
    ll = [[0.0] * len(candidates) for _ in prompt_ids]
    first = [0] * len(prompt_ids)
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        ids, mask = _left_pad([list(prompt_ids[i]) + candidates[j] for i, j in chunk], pad=0)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), logits_to_keep=keep).logits
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, K, V): positions T-K .. T-1
        for b, (i, j) in enumerate(chunk):
            ll[i][j] = float(logp[b, rows_of[j], targets[j]].sum())
            first[i] = int(logp[b, rows_of[j][0]].argmax())  # the prediction after the prompt's last token
        if progress is not None:  # the bar counts rows (answers): each row has one pair per candidate
            progress.update(len(chunk) / len(candidates))
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
