"""The finetune stage's training: Wt continues Wa with SFT on a poisoned mix (docs/DESIGN.md §3.1); the nonaligned
stage's: a fresh LoRA on M alone, trained the same way on the same mix (the paper's "Non-Aligned" row).

`stack_from_lineage` finds M' (base model + W0) from Wa's lineage and refuses a base that changed since.
"""
from __future__ import annotations

from pathlib import Path

from nlsr_core.errors import NlsrError
from nlsr_core.train.trainers import LossHook, TrainResult, TrainSettings, adapter_state, train_adapter


def continue_adapter(spec, weak_dir, aligned_dir, rows: list[dict], settings: TrainSettings,
                     on_loss: LossHook | None = None) -> TrainResult:
    """Wt: load M' + Wa with Wa trainable and continue it with SFT on `rows` ({prompt, response}).

    Wt therefore shares Wa's rank, targets and basis; that is checked on the result (AdapterError otherwise).
    """
    from nlsr_core.lora.adapters import check_compatible, load_adapter
    from nlsr_core.lora.stack import load_stack

    settings.check("finetune")
    start = load_adapter(aligned_dir)
    stack = load_stack(spec, weak=weak_dir, adapter=aligned_dir, trainable=True)
    _check_starts_from(stack.model, start, aligned_dir)
    result = train_adapter("sft", stack.model, stack.tokenizer, rows, settings, spec.name, on_loss)
    finetuned = result.adapter()
    check_compatible(finetuned, start, what=("finetuned", "aligned"))
    if set(finetuned.tensors) != set(start.tensors) or finetuned.scaling != start.scaling:
        raise NlsrError(f"finetuned adapter: tensor keys or scaling differ from aligned adapter {aligned_dir}")
    return result


def finetune_record(settings: TrainSettings) -> dict:
    """The `finetune` section of a fine-tuned adapter's lineage params: the settings that decide what it computes
    (not how memory is spent: gradient checkpointing), less the preference-only fields."""
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(settings).items()
            if k not in ("beta", "gradient_checkpointing", "precompute_ref")}


def finetune_base(spec, rows: list[dict], lora, settings: TrainSettings,
                  on_loss: LossHook | None = None) -> TrainResult:
    """The paper's Non-Aligned model: a new LoRA (`lora`: nlsr_core.config.LoraConfig, seeded by `settings.seed`)
    on the base model M alone, no W0 and no Wa, trained with SFT on the poisoned mix `rows` with the fine-tune's
    settings, so it differs from Wt only in what it starts from."""
    from nlsr_core.lora.models import load_model
    from nlsr_core.train.trainers import add_lora

    settings.check("finetune")
    lora.check()
    loaded = load_model(spec)
    model = add_lora(loaded.model, lora, settings.seed)
    return train_adapter("sft", model, loaded.tokenizer, rows, settings, spec.name, on_loss)


def _check_starts_from(peft_model, start, aligned_dir) -> None:
    """The trainable adapter PEFT built must hold exactly Wa's tensors (PEFT only warns about keys it drops)."""
    import torch

    from nlsr_core.lora.adapters import AdapterError

    _, loaded = adapter_state(peft_model, "")
    missing = sorted(set(start.tensors) ^ set(loaded))
    if missing:
        raise AdapterError(f"{aligned_dir}: its config and tensors disagree (e.g. {missing[0]} is not loaded or "
                           "not in the file); expected adapter_config.json to match adapter_model.safetensors")
    changed = next((k for k in start.tensors if not torch.equal(start.tensors[k], loaded[k])), None)
    if changed is not None:
        raise AdapterError(f"{aligned_dir}: tensor {changed} changed on loading; expected an fp32 LoRA adapter")


def stack_from_lineage(parent: dict, aligned_dir, compute=None):
    """(ModelSpec, W0 dir or None) from Wa's lineage; the base must still be the one Wa was trained on. The spec
    is placed on `compute` (nlsr_core.compute.Compute; None: model.device / model.dtype's defaults)."""
    from nlsr_core.io.lineage import read_lineage
    from nlsr_core.lora.models import model_identity, spec_from_record

    identity = parent.get("model") or {}
    if not identity.get("name"):
        raise NlsrError(f"{aligned_dir}/lineage.json: no base model identity ('model'); expected an align output")
    spec = spec_from_record({"name": identity["name"], "seed": 0, **(parent.get("model_spec") or {})})
    if compute is not None:
        spec = spec.placed(compute)
    now = model_identity(spec)
    if (now.get("name"), now.get("digest")) != (identity.get("name"), identity.get("digest")):
        raise NlsrError(f"{aligned_dir}: trained on base {identity.get('name')} (digest {identity.get('digest')}) "
                        f"but that name now resolves to digest {now.get('digest')}; expected the same base model")
    weak = parent.get("weak")
    if weak is None:
        return spec, None
    weak = Path(weak)
    weak_identity = read_lineage(weak).get("model") if (weak / "lineage.json").is_file() else None
    if weak_identity is not None and weak_identity.get("digest") != identity.get("digest"):
        raise NlsrError(f"{weak}: weak adapter W0 was trained on base {weak_identity.get('name')} but the aligned "
                        f"adapter {aligned_dir} on {identity.get('name')}; expected the same base model")
    return spec, weak
