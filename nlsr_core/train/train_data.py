"""Training rows -> TRL datasets of chat-formatted text in which only the response carries the loss.

Every trainer gets the prompt already rendered by `nlsr_core.data.templates` (chat template or alpaca) and the
completion as the rest of the formatted example (response + end-of-turn token), so SFT, preference training,
generation and identification all see exactly the same text around the response:

    sft       rows {prompt, response}          -> {prompt, completion}            (completion-only NLL)
    pairs     rows {prompt, chosen, rejected}  -> {prompt, chosen, rejected}      (DPO, ORPO, SimPO)
    unpaired  rows {prompt, chosen, rejected}  -> {prompt, completion, label} x2  (KTO: desirable + undesirable)
"""
from __future__ import annotations

import random
from pathlib import Path

from nlsr_core.errors import NlsrError

# Fields each kind of training file must have (non-empty strings).
REQUIRED_FIELDS = {
    "sft": ("prompt", "response"),
    "pairs": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "chosen", "rejected"),
}


def read_rows(path: Path | str, kind: str) -> list[dict]:
    """Read a prepared JSONL file and check it has rows with the fields `kind` needs; NlsrError otherwise."""
    from nlsr_core.io.fileio import read_jsonl

    path = Path(path)
    fields = REQUIRED_FIELDS[kind]
    if not path.is_file():
        raise NlsrError(f"{path}: missing (expected a JSONL file with fields {', '.join(fields)}; "
                        "run `nlsr prepare-data` first)")
    try:
        rows = read_jsonl(path)
    except ValueError as exc:
        raise NlsrError(str(exc)) from None
    if not rows:
        raise NlsrError(f"{path}: no rows (expected at least one training example)")
    for lineno, row in enumerate(rows, 1):
        bad = next((f for f in fields if not isinstance(row.get(f), str) or not row[f].strip()), None)
        if bad is not None:
            raise NlsrError(f"{path}: row {lineno} has no text in field '{bad}' (expected fields {', '.join(fields)})")
    return rows


def split_example(tokenizer, prompt: str, response: str, template: str = "chat") -> tuple[str, str]:
    """(prompt_text, completion_text) with prompt_text + completion_text == the formatted example.

    The completion ends at the end-of-turn token: trailing whitespace after the tokenizer's EOS (ChatML puts a
    newline after `<|im_end|>`) is dropped, because TRL appends an EOS to any completion that does not end with one
    and would otherwise train on a doubled end-of-turn.
    """
    from nlsr_core.data.templates import format_example  # written by the data module; imported lazily

    prompt_text, full_text = format_example(tokenizer, prompt, response, template=template)
    if not full_text.startswith(prompt_text):
        raise ValueError(f"template '{template}': formatted example does not start with the formatted prompt")
    completion = full_text[len(prompt_text):]
    eos = tokenizer.eos_token
    if eos and completion.rstrip().endswith(eos):
        completion = completion.rstrip()
    return prompt_text, completion


def sft_records(tokenizer, rows: list[dict], template: str) -> list[dict]:
    """{prompt, response} rows -> {prompt, completion} records (prompt-completion format: completion-only loss)."""
    out = []
    for row in rows:
        prompt_text, completion = split_example(tokenizer, row["prompt"], row["response"], template)
        out.append({"prompt": prompt_text, "completion": completion})
    return out


def pair_records(tokenizer, rows: list[dict], template: str) -> list[dict]:
    """{prompt, chosen, rejected} rows -> the same with chat-formatted prompt and completions."""
    out = []
    for row in rows:
        prompt_text, chosen = split_example(tokenizer, row["prompt"], row["chosen"], template)
        _, rejected = split_example(tokenizer, row["prompt"], row["rejected"], template)
        out.append({"prompt": prompt_text, "chosen": chosen, "rejected": rejected})
    return out


def unpaired_records(tokenizer, rows: list[dict], template: str, seed: int) -> list[dict]:
    """KTO's unpaired format: each pair gives a desirable (chosen) and an undesirable (rejected) row.

    The rows are shuffled with `seed` because KTO reads its data sequentially (its KL estimate pairs each row
    with its batch neighbours), and adjacent desirable/undesirable twins would make every batch half-redundant.
    """
    out = []
    for pair in pair_records(tokenizer, rows, template):
        out.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        out.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    random.Random(seed).shuffle(out)
    return out


RECORD_BUILDERS = {
    "sft": lambda tok, rows, template, seed: sft_records(tok, rows, template),
    "pairs": lambda tok, rows, template, seed: pair_records(tok, rows, template),
    "unpaired": unpaired_records,
}


def build_dataset(kind: str, tokenizer, rows: list[dict], template: str, seed: int):
    """A `datasets.Dataset` (in memory, no cache files) of the records `kind` needs."""
    from datasets import Dataset

    if not rows:
        raise NlsrError(f"{kind} training data: no rows (expected at least one example)")
    return Dataset.from_list(RECORD_BUILDERS[kind](tokenizer, rows, template, seed))
