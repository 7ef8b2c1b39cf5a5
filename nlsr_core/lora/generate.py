"""Batched greedy generation (left padding, KV cache) and stack resolution from an adapter's lineage.

Greedy decoding is deterministic, so batching is only a speed-up: a prompt gets the same answer alone or in a
batch. Prompts are sorted by token length before batching (less padding: a batch of B prompts costs
B·max_len per step), generated in batches with left padding so every row's next token sits at the last
position, then put back in the caller's order.

    ids (B, L) left-padded, mask (B, L) -> model.generate(greedy, KV cache) -> (B, L + T) -> new ids (B, T)
    each row is cut at its first end-of-sequence token, decoded without special tokens and stripped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from nlsr_core.errors import NlsrError


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy decoding settings; recorded in judged.json so results say how answers were produced."""

    max_new_tokens: int = 48
    batch_size: int = 16
    template: str = "chat"      # chat | alpaca (nlsr_core.data.templates)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise NlsrError(f"max_new_tokens={self.max_new_tokens}: expected a positive integer")
        if self.batch_size < 1:
            raise NlsrError(f"batch_size={self.batch_size}: expected a positive integer")

    def record(self) -> dict:
        return {"decoding": "greedy", "max_new_tokens": self.max_new_tokens, "template": self.template}


# --------------------------------------------------------------------------------------------- prompts
def format_prompts(tokenizer, prompts: Sequence[str], template: str) -> list[str]:
    """Raw user prompts -> model input text ending where the assistant answer starts."""
    from nlsr_core.data.templates import format_prompt  # lazy: the data package is a sibling module

    return [format_prompt(tokenizer, p, template) for p in prompts]


def adds_special_tokens(tokenizer, text: str) -> bool:
    """Let the tokenizer add its BOS only when the text does not already carry it (chat templates such as
    Llama-3's write it themselves; a doubled BOS shifts the model's outputs)."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, special tokens as `adds_special_tokens` decides."""
    return [tokenizer(text, add_special_tokens=adds_special_tokens(tokenizer, text))["input_ids"] for text in texts]


def eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends an answer: the tokenizer's EOS plus the model's generation EOS ids
    (Llama-3-Instruct ends turns with <|eot_id|>, which is not the tokenizer's EOS)."""
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return sorted(ids)


# --------------------------------------------------------------------------------------------- generation
def generate_ids(model, tokenizer, prompt_ids: Sequence[list[int]], max_new_tokens: int,
                 batch_size: int, progress=None, batch_kwargs=None) -> list[list[int]]:
    """Greedy continuation token ids for each prompt (in input order), each cut before its first EOS.

    Prompts are sorted by length (longest first, so a memory problem shows in the first batch) and
    generated `batch_size` at a time with left padding and the KV cache. `batch_kwargs(rows)` (optional) gives
    extra `generate` arguments for the batch of those prompt indices (e.g. PEFT's per-row `adapter_names`).
    """
    import torch
    from transformers import GenerationConfig

    stop = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, use_cache=True,
                              pad_token_id=pad, eos_token_id=stop)
    order = sorted(range(len(prompt_ids)), key=lambda i: (-len(prompt_ids[i]), i))
    results: list[list[int]] = [[] for _ in prompt_ids]
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids, mask = _left_pad([prompt_ids[i] for i in rows], pad)
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 generation_config=config, **(batch_kwargs(rows) if batch_kwargs else {}))
        for i, seq in zip(rows, out[:, ids.shape[1]:].tolist()):
            results[i] = _cut_at_eos(seq, stop)
        if progress is not None:
            progress.update(len(rows))
    return results


def continuation_logliks(model, prefixes: Sequence[list[int]], continuations: Sequence[list[int]], batch_size: int,
                         keep: int | None = None, on_batch=None) -> tuple[list[float], list[int]]:
    """Σ_k log p(continuation_i[k] | prefix_i, continuation_i[:k]) for each i, and the greedy token after prefix_i.

    prefixes, continuations: N token lists each (continuations non-empty). The sequences run longest first,
    `batch_size` per forward pass: (B, T) ids -> (B, K, V) logits, K = `keep` when given (callers that want the
    same K in every batch), else the batch's longest continuation + 1; log-softmax in fp32 whatever the compute
    dtype. The token at T-m+k (k < m) is predicted at logits row K-m+k-1. `on_batch(n)` is called after each
    batch of n sequences. Used by label scoring (FA) and the judge-free preference score.
    """
    import torch

    order = sorted(range(len(prefixes)), key=lambda i: (-(len(prefixes[i]) + len(continuations[i])), i))
    sums, first = [0.0] * len(prefixes), [0] * len(prefixes)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        k = keep if keep is not None else max(len(continuations[i]) for i in chunk) + 1
        ids, mask = _left_pad([list(prefixes[i]) + list(continuations[i]) for i in chunk], pad=0)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), logits_to_keep=k).logits
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, K, V): positions T-K .. T-1
        for b, i in enumerate(chunk):
            m = len(continuations[i])
            rows = torch.arange(k - m - 1, k - 1)   # the rows predicting the continuation's m tokens
            sums[i] = float(logp[b, rows, torch.tensor(list(continuations[i]))].sum())
            first[i] = int(logp[b, rows[0]].argmax())  # the prediction after the prefix's last token
        if on_batch is not None:
            on_batch(len(chunk))
    return sums, first


def _left_pad(rows: Sequence[list[int]], pad: int):
    """(B, L) ids padded on the left with `pad` and the (B, L) attention mask (0 on padding)."""
    import torch

    width = max(len(r) for r in rows)
    if width == 0:
        raise NlsrError("generate: a prompt encodes to zero tokens; expected non-empty prompts")
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        if r:
            ids[j, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[j, width - len(r):] = 1
    return ids, mask


def _cut_at_eos(seq: list[int], stop: list[int]) -> list[int]:
    stops = set(stop)
    for k, tok in enumerate(seq):
        if tok in stops:
            return seq[:k]
    return seq


def generate_texts(model, tokenizer, texts: Sequence[str], max_new_tokens: int, batch_size: int,
                   progress=None, batch_kwargs=None) -> list[str]:
    """Already-formatted model inputs -> decoded greedy answers (special tokens removed, stripped).
    `progress`: an optional bar (nlsr_core.io.progress.bar) advanced by the answers of each batch;
    `batch_kwargs`: as in `generate_ids`."""
    new = generate_ids(model, tokenizer, encode_texts(tokenizer, texts), max_new_tokens, batch_size, progress,
                       batch_kwargs)
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new]


def generate_responses(model, tokenizer, prompts: Sequence[str], settings: GenerationSettings,
                       progress=None) -> list[str]:
    """Raw user prompts -> greedy answers, through the prompt template named in `settings`."""
    if not prompts:
        return []
    texts = format_prompts(tokenizer, prompts, settings.template)
    return generate_texts(model, tokenizer, texts, settings.max_new_tokens, settings.batch_size, progress)


# --------------------------------------------------------------------------------------------- stacks
@dataclass(frozen=True)
class StackPlan:
    """How to build M' + adapter: base model name, W0 path (None: no weak adapter) and the adapter."""

    model: str
    weak: Path | None
    adapter: Path | None


def plan_stack(adapter: Path | None, model: str | None) -> StackPlan:
    """Read `adapter`'s lineage.json for the base model (`model.name`) and W0 (`weak`).

    `model` is required when there is no adapter or the adapter has no lineage; when both exist they must
    name the same base model.
    """
    from nlsr_core.io.lineage import LINEAGE_FILE, read_lineage

    if adapter is None:
        if not model:
            raise NlsrError("generate: give --adapter DIR or --model NAME")
        return StackPlan(model, None, None)
    adapter = Path(adapter)
    if not adapter.is_dir():
        raise NlsrError(f"{adapter}: not an adapter directory")
    if not (adapter / LINEAGE_FILE).is_file():
        if not model:
            raise NlsrError(f"{adapter}: no {LINEAGE_FILE}; pass --model NAME for its base model")
        return StackPlan(model, None, adapter)
    record = read_lineage(adapter)
    recorded = _lineage_model_name(record)
    if recorded and model and recorded != model:
        raise NlsrError(f"{adapter}/{LINEAGE_FILE}: adapter was built on model '{recorded}', "
                        f"but --model is '{model}'")
    name = recorded or model
    if not name:
        raise NlsrError(f"{adapter}/{LINEAGE_FILE}: no 'model' entry; pass --model NAME")
    weak = record.get("weak")
    if weak is not None:
        weak = Path(weak)
        if not weak.is_dir():
            raise NlsrError(f"{adapter}/{LINEAGE_FILE}: weak adapter {weak} not found "
                            "(paths are relative to the repository root)")
    return StackPlan(name, weak, adapter)


def check_plans(plans: dict[str, StackPlan]) -> None:
    """Load every adapter the plans will stack (W0s and adapters) and check it before the first answer: its files
    and finite values (nlsr_core.lora.adapters.load_adapter), and that every module has one (d_out, d_in) across all
    of them, since they all sit on one base model. One-line AdapterError naming the adapter otherwise."""
    from nlsr_core.lora.adapters import AdapterError, load_adapter

    seen: dict[str, tuple[tuple[int, int], Path]] = {}
    paths = dict.fromkeys(p for plan in plans.values() for p in (plan.weak, plan.adapter) if p is not None)
    for path in paths:
        tensors = load_adapter(path).tensors
        for key, a in sorted(tensors.items()):
            if not key.endswith(".lora_A.weight"):
                continue
            module = key[:-len(".lora_A.weight")]
            b = tensors.get(f"{module}.lora_B.weight")
            if b is None or b.shape[1] != a.shape[0]:
                raise AdapterError(f"{path}: module {module} has no lora_B of rank {a.shape[0]}; expected lora_A "
                                   "(r, d_in) and lora_B (d_out, r) per module")
            shape = (int(b.shape[0]), int(a.shape[1]))
            first = seen.setdefault(module, (shape, path))
            if first[0] != shape:
                raise AdapterError(f"{path}: module {module} maps {shape[1]} -> {shape[0]} features, {first[1]} "
                                   f"maps {first[0][1]} -> {first[0][0]}; expected adapters of one base model")


def plan_inputs(plan: StackPlan) -> list[tuple[str, Path]]:
    """The files a stack loads besides the adapter, as (what, path) inputs for nlsr_core.io.outputs: W0 from the
    adapter's lineage, and the base model when it is a local directory or file."""
    found = [(f"W0 (the weak adapter {plan.adapter}/lineage.json names)", plan.weak)] if plan.weak else []
    if Path(plan.model).exists():
        found.append(("--model", Path(plan.model)))
    return found


ANSWER_KEYS = {"id", "prompt", "response"}


def answer_file(path: Path) -> str | None:
    """None when `path` is an answer file `nlsr generate` writes (JSONL rows with exactly id, prompt and
    response), else why not: the recogniser of its --out (nlsr_core.io.outputs.claim_file)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                row = json.loads(line) if line.strip() else None
                if row is not None and (not isinstance(row, dict) or set(row) != ANSWER_KEYS):
                    return f"line {lineno} is not an {{id, prompt, response}} row"
    except (UnicodeDecodeError, ValueError):
        return "it is not a JSONL file of {id, prompt, response} rows"
    return None


def _lineage_model_name(record: dict) -> str | None:
    model = record.get("model")
    if isinstance(model, dict):
        return model.get("name")
    return model if isinstance(model, str) else None


def load_plan(plan: StackPlan, seed: int = 0, trust_remote_code: bool = False, compute=None) -> Any:
    """Load the stack of `plan` (nlsr_core.lora.stack.load_stack) on `compute` (None: model.device / model.dtype's
    defaults); returns the Stack."""
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack

    spec = ModelSpec(plan.model, seed=seed, trust_remote_code=trust_remote_code)
    if compute is not None:
        spec = spec.placed(compute)
    return load_stack(spec, weak=plan.weak, adapter=plan.adapter)
