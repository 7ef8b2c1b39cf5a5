"""Model stacks: base M, M' = M + W0 merged in memory, then one LoRA adapter on top (docs/DESIGN.md §3.1).

    M'            = load_stack(spec, weak=W0)                    (W0 merged, never stored as a full model)
    M' + Wa       = load_stack(spec, weak=W0, adapter=Wa)
    M' + Wa (train) = load_stack(spec, weak=W0, adapter=Wa, trainable=True)   -> finetune continues Wa
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlsr_core.lora.adapters import AdapterError, load_adapter
from nlsr_core.lora.models import LoadedModel, ModelSpec, load_model


@dataclass
class Stack:
    model: Any            # the base (with W0 merged) or a PeftModel wrapping it
    tokenizer: Any
    base: LoadedModel     # registry result (identity, default LoRA targets)


def load_stack(spec: ModelSpec, weak: Path | None = None, adapter: Path | None = None,
               trainable: bool = False, base: LoadedModel | None = None) -> Stack:
    """Build M (+ W0 merged) (+ adapter). Pass `base` to reuse an already loaded base model.

    Adapters are checked (safetensors only, finite values) before PEFT reads them.
    """
    from peft import PeftModel

    loaded = base or load_model(spec)
    model = loaded.model
    if weak is not None:
        load_adapter(weak)  # validates files and values; PEFT then loads the same safetensors
        model = PeftModel.from_pretrained(model, str(weak)).merge_and_unload()
    if adapter is not None:
        load_adapter(adapter)
        try:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        except (RuntimeError, ValueError) as exc:
            raise AdapterError(f"{adapter}: does not fit model '{spec.name}' ({str(exc).splitlines()[0]})") from None
    if not trainable:
        # PEFT keeps adapter weights in fp32 over a bf16/fp16 base (autocast_adapter_dtype) and casts every
        # projection's input to fp32 for the LoRA path: 1.7x slower answering on the CPU (docs/DESIGN.md §5.7).
        # An inference stack computes the adapter in the compute dtype like the rest of the model; training
        # keeps fp32 LoRA weights under mixed precision (nlsr_core/train/trainers.py).
        model.to(dtype=loaded.compute.torch_dtype)
        model.eval()
    return Stack(model, loaded.tokenizer, loaded)
