"""Prompt templates: how a raw prompt (and response) becomes model text at train and generate time.

    chat    the tokenizer's own chat template with one user turn and the generation prompt
            (SmolLM2 / tiny-random: ChatML, `<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n`)
    alpaca  the paper's Alpaca prompt (`### Instruction:` ... `### Response:`), response appended directly

In both, the training text is `prompt_text + response + eos`, so the loss can be restricted to the tokens
after `prompt_text` (response + end-of-turn) and generation stops where training taught it to.
"""
from __future__ import annotations

from typing import Any, Callable

from nlsr_core.data.base import DataError

ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\n{prompt}\n\n### Response:")


def _chat(tokenizer: Any, prompt: str) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError("data.template 'chat': the tokenizer has no chat template (use template 'alpaca')")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def _alpaca(tokenizer: Any, prompt: str) -> str:
    return ALPACA_PROMPT.format(prompt=prompt)


TEMPLATES: dict[str, Callable[[Any, str], str]] = {"chat": _chat, "alpaca": _alpaca}


def _template(template: str) -> Callable[[Any, str], str]:
    if template not in TEMPLATES:
        raise DataError(f"data.template: unknown template {template!r}; expected one of {sorted(TEMPLATES)}")
    return TEMPLATES[template]


def format_prompt(tokenizer: Any, prompt: str, template: str = "chat") -> str:
    """Model text for `prompt`, ending exactly where the assistant's answer starts."""
    return _template(template)(tokenizer, prompt)


def format_example(tokenizer: Any, prompt: str, response: str, template: str = "chat") -> tuple[str, str]:
    """(prompt_text, full_text): full_text = prompt_text + response + the end-of-turn (eos) token."""
    prompt_text = format_prompt(tokenizer, prompt, template)
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise DataError("tokenizer: no eos_token, so a training example cannot mark the end of the answer")
    return prompt_text, prompt_text + response + eos
