"""The align stage's training: W0 (SFT LoRA on M) and Wa (preference LoRA on M' = M + W0), docs/DESIGN.md §3.

The trainers and the method table (`ALIGNERS`) are nlsr_core.train.trainers's; this module chains the two phases.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Callable

from nlsr_core.config import LoraConfig
from nlsr_core.errors import NlsrError
from nlsr_core.train.trainers import LossHook, TrainResult, TrainSettings, add_lora, aligner, train_adapter


# --------------------------------------------------------------------------------------------- the two stages
@dataclass
class AlignResult:
    weak: TrainResult       # W0: SFT LoRA on M
    aligned: TrainResult    # Wa: preference LoRA on M' = M + W0 (the same object as `weak` for method sft)
    on_policy: dict | None = None   # nlsr_core.train.on_policy counts when the rejected side came from M''s answers


def align(spec, method: str, sft_rows: list[dict], pref_rows: list[dict] | None, lora: LoraConfig,
          settings: TrainSettings, on_loss: Callable[[str, int, float], None] | None = None,
          pref_settings: TrainSettings | None = None, on_policy_tokens: int = 0) -> AlignResult:
    """W0 = SFT LoRA on M (`settings`); for preference methods M' = M + W0 merged (`load_stack`) and Wa = a new
    LoRA on M' (`pref_settings`, default `settings`).

    `on_policy_tokens` > 0: before Wa trains, M' answers every safety pair's prompt (greedy, that many tokens) and
    its harmful answers replace the rejected side (nlsr_core.train.on_policy). `on_loss(phase, step, loss)` gets phase
    "weak" or "aligned". Both LoRAs start from `settings.seed`.
    """
    import dataclasses
    from pathlib import Path

    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.lora.models import load_model
    from nlsr_core.lora.stack import load_stack

    aligner(method)
    lora.check()
    settings.check("align")
    if pref_settings is not None:
        pref_settings.check("align")
    if on_policy_tokens < 0:
        raise NlsrError(f"align.on_policy_tokens: {on_policy_tokens} (expected >= 0; 0 = off)")
    loaded = load_model(spec)
    weak_model = add_lora(loaded.model, lora, settings.seed)
    weak = train_adapter("sft", weak_model, loaded.tokenizer, sft_rows, settings, spec.name, _phase(on_loss, "weak"))
    if method == "sft":
        return AlignResult(weak, weak)
    if not pref_rows:
        raise NlsrError(f"align method '{method}': no preference rows (expected at least one pair)")
    # Reuse the loaded base (LoRA layers removed) and build M' exactly as every later stage does: from the saved
    # fp32 W0 through load_stack. Every process writes its own scratch copy (no shared file under torchrun).
    base = dataclasses.replace(loaded, model=weak_model.unload())
    with tempfile.TemporaryDirectory(prefix="nlsr-w0-") as scratch:
        save_adapter(weak.adapter(), scratch)
        stack = load_stack(spec, weak=Path(scratch), base=base)
    pref_settings = pref_settings or settings
    on_policy = None
    if on_policy_tokens:
        from nlsr_core.train.on_policy import on_policy_pairs

        pref_rows, counts = on_policy_pairs(stack.model, stack.tokenizer, pref_rows, pref_settings.template,
                                            on_policy_tokens)
        on_policy = counts.record()
    aligned_model = add_lora(stack.model, lora, settings.seed)
    aligned = train_adapter(method, aligned_model, stack.tokenizer, pref_rows, pref_settings, spec.name,
                            _phase(on_loss, "aligned"))
    return AlignResult(weak, aligned, on_policy)


def _phase(on_loss, phase: str) -> LossHook | None:
    return None if on_loss is None else (lambda step, loss: on_loss(phase, step, loss))
