"""LoRA training with TRL 1.x: SFT (weak adapter W0, poisoned fine-tuning) and preference methods (aligned Wa).

One dispatch table, `ALIGNERS`, maps a method name to (data kind, trainer builder):

    sft    SFTTrainer, completion-only NLL on {prompt, completion}       (W0; finetune continues Wa with it)
    dpo    DPOTrainer, {prompt, chosen, rejected}, reference = the frozen start adapter
    orpo   trl.experimental ORPOTrainer (beta = the odds-ratio weight λ), no reference model
    kto    KTOTrainer on unpaired rows (each pair -> desirable + undesirable), reference = the frozen start adapter
    simpo  trl.experimental CPOTrainer with loss_type="simpo", cpo_alpha=0 (SimPO is CPO without its NLL term)

The caller hands in a PeftModel whose "default" adapter is the one to train: a fresh LoRA (`add_lora`) on M or
M' (= M + W0 merged, `nlsr_core.lora.stack.load_stack`), or Wa loaded trainable for finetune, so Wt keeps
Wa's rank, targets and basis. The trained adapter comes back as fp32 tensors + a canonical PEFT config, ready for
`nlsr_core.lora.adapters.save_adapter` (deterministic bytes). Runs where `load_model` placed the base model, in its
precision (`_precision`): fp32 weights train in fp32; bf16/fp16 weights (model.dtype) train with the LoRA in fp32
under mixed precision (CUDA AMP, or bf16 autocast on the CPU). Single process, or under `torchrun` /
`accelerate launch` (data parallel; the trainer's Accelerator finds the process group itself).
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nlsr_core.errors import NlsrError
from nlsr_core.config import AlignConfig, LoraConfig

LossHook = Callable[[int, float], None]   # (optimizer step, train loss) -> None, e.g. Tracker.log_metric




@dataclass(frozen=True)
class TrainSettings:
    """One training phase: params.yaml `align.*` or `finetune.*` (defaults: `AlignConfig`'s) plus the template.
    `max_steps` > 0 caps optimizer steps (tests); -1 = run `epochs`."""

    lr: float = AlignConfig.lr
    epochs: float = AlignConfig.epochs
    batch_size: int = AlignConfig.batch_size
    max_length: int = AlignConfig.max_length
    seed: int = AlignConfig.seed
    beta: float = AlignConfig.beta     # DPO/KTO β, ORPO λ, SimPO β
    max_steps: int = -1
    template: str = "chat"
    gradient_checkpointing: bool = False  # launch.gradient_checkpointing (less memory; for 8B models)
    precompute_ref: bool = False       # DPO: reference log-probs computed once before training (TRL option)
    chosen_nll: float = 0.0            # DPO: weight of the chosen answer's NLL added to the loss (0 = plain DPO)

    def check(self, section: str = "align") -> None:
        from nlsr_core.data.templates import TEMPLATES

        rules = [
            ("lr", self.lr >= 0, "expected >= 0"),
            ("epochs", self.epochs > 0, "expected > 0"),
            ("batch_size", self.batch_size >= 1, "expected an integer >= 1"),
            ("max_length", self.max_length >= 8, "expected an integer >= 8 tokens"),
            ("beta", self.beta > 0, "expected > 0"),
            ("chosen_nll", self.chosen_nll >= 0, "expected >= 0 (0 = plain DPO)"),
            ("max_steps", self.max_steps == -1 or self.max_steps >= 1, "expected -1 (use epochs) or >= 1"),
            ("template", self.template in TEMPLATES, f"expected one of {', '.join(TEMPLATES)}"),
        ]
        for name, ok, expected in rules:
            if not ok:
                raise NlsrError(f"{section}.{name}: {getattr(self, name)} ({expected})")


@dataclass
class TrainResult:
    """A trained LoRA: PEFT config + fp32 tensors (keys `<module>.lora_A.weight` / `.lora_B.weight`)."""

    config: dict
    tensors: dict[str, Any]
    losses: list[tuple[int, float]] = field(default_factory=list)   # (step, loss) per logged step
    world_size: int = 1
    is_main: bool = True
    seconds: float = 0.0                                              # wall time of the optimizer loop

    def adapter(self):
        from nlsr_core.lora.adapters import Adapter

        return Adapter(self.config, self.tensors)

    def loss_summary(self) -> dict:
        """first/last/min/mean of the per-step train loss and the number of optimizer steps (lineage record)."""
        values = [v for _, v in self.losses]
        if not values:
            return {"steps": 0, "first": None, "last": None, "min": None, "mean": None}
        return {"steps": self.losses[-1][0], "first": values[0], "last": values[-1],
                "min": min(values), "mean": statistics.fmean(values)}


# --------------------------------------------------------------------------------------------- trainer builders
def _sft_trainer(model, tokenizer, dataset, common: dict, s: TrainSettings):
    from trl import SFTConfig, SFTTrainer

    # completion_only_loss: the prompt tokens (chat template + user turn) get label -100.
    args = SFTConfig(**common, max_length=s.max_length, completion_only_loss=True)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _dpo_trainer(model, tokenizer, dataset, common: dict, s: TrainSettings):
    from trl import DPOConfig, DPOTrainer

    # chosen_nll > 0 adds the NLL of the chosen answer (TRL loss "sft", weighted): DPO + NLL, as in RPO
    # (Pang et al. 2024); the preference term alone lowers both answers' likelihood (docs/DESIGN.md §5.6).
    losses = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, s.chosen_nll]) if s.chosen_nll else {}
    args = DPOConfig(**common, max_length=s.max_length, beta=s.beta, precompute_ref_log_probs=s.precompute_ref,
                     **losses)
    if args.world_size > 1:
        # TRL writes the precomputed columns into the dataset's cache on rank 0 and reads them back on every rank;
        # our in-memory datasets cache in a per-process temp dir, so the other ranks cannot find the file. The
        # option only moves the reference forward (same losses), so multi-process runs compute it per step.
        args.precompute_ref_log_probs = False
    return DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _kto_trainer(model, tokenizer, dataset, common: dict, s: TrainSettings):
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(**common, max_length=s.max_length, beta=s.beta)
    return KTOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _orpo_trainer(model, tokenizer, dataset, common: dict, s: TrainSettings):
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    # remove_unused_columns=False: these trainers' own collator needs the tokenized columns (TRL sets it anyway).
    args = ORPOConfig(**common, max_length=s.max_length, beta=s.beta, remove_unused_columns=False)
    return ORPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def _simpo_trainer(model, tokenizer, dataset, common: dict, s: TrainSettings):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = CPOConfig(**common, max_length=s.max_length, beta=s.beta, loss_type="simpo", cpo_alpha=0.0,
                     remove_unused_columns=False)
    return CPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


@dataclass(frozen=True)
class Aligner:
    """`data`: the row kind (`nlsr_core.train.train_data.REQUIRED_FIELDS`); `build`: (model, tok, ds, common, s) -> Trainer."""

    data: str
    build: Callable


ALIGNERS: dict[str, Aligner] = {
    "sft": Aligner("sft", _sft_trainer),
    "dpo": Aligner("pairs", _dpo_trainer),
    "orpo": Aligner("pairs", _orpo_trainer),
    "kto": Aligner("unpaired", _kto_trainer),
    "simpo": Aligner("pairs", _simpo_trainer),
}


def aligner(method: str) -> Aligner:
    if method not in ALIGNERS:
        raise NlsrError(f"align method '{method}': unknown (expected one of {', '.join(ALIGNERS)})")
    return ALIGNERS[method]


# --------------------------------------------------------------------------------------------- LoRA in and out
def add_lora(model, lora: LoraConfig, seed: int):
    """Wrap `model` (M or M') with a fresh trainable LoRA "default" adapter: B = 0, A ~ kaiming(seed)."""
    import torch
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    lora.check()
    config = PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.targets), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(seed)  # A's initialisation is the only randomness here
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise NlsrError(f"lora.targets {list(lora.targets)}: do not fit the model "
                        f"({str(exc).splitlines()[0]})") from None


def adapter_state(peft_model, base_name: str) -> tuple[dict, dict]:
    """(canonical PEFT config dict, fp32 CPU tensors) of the "default" adapter, independent of training state."""
    import torch
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model, adapter_name="default")
    tensors = {k: v.detach().to("cpu", torch.float32).clone() for k, v in state.items()}
    config = {}
    for key, value in peft_model.peft_config["default"].to_dict().items():
        if isinstance(value, set):
            value = sorted(value)          # PEFT keeps target_modules as a set: sort for stable bytes
        config[key] = getattr(value, "value", value)   # enums (peft_type, task_type) -> their string
    # Name the base by registry name, not a machine-specific path, and mark the adapter frozen (as PEFT saves it).
    config.update(base_model_name_or_path=base_name, inference_mode=True)
    return config, tensors


# --------------------------------------------------------------------------------------------- training loop
def train_adapter(method: str, peft_model, tokenizer, rows: list[dict], settings: TrainSettings,
                  base_name: str, on_loss: LossHook | None = None) -> TrainResult:
    """Train the "default" adapter of `peft_model` on `rows` with method `method`; return it and its loss curve.

    rows: {prompt, response} for sft, {prompt, chosen, rejected} otherwise (raw prompts; the chat template is
    applied here). Every process of a distributed launch calls this; `TrainResult.is_main` says who saves.
    """
    from nlsr_core.train.train_data import build_dataset

    spec = aligner(method)
    settings.check("train")
    _drop_gguf_flag(peft_model)
    dataset = build_dataset(spec.data, tokenizer, rows, settings.template, settings.seed)
    losses: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="nlsr-train-") as scratch:
        trainer = spec.build(peft_model, tokenizer, dataset,
                             {**_common_args(settings, scratch), **_precision(peft_model)}, settings)
        _install_callbacks(trainer, losses, on_loss)
        if len(trainer.train_dataset) == 0:   # e.g. every prompt alone fills max_length
            raise NlsrError(f"{method} training data: no batch survives max_length={settings.max_length}")
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        trainer.accelerator.wait_for_everyone()
    config, tensors = adapter_state(peft_model, base_name)
    return TrainResult(config, tensors, losses, trainer.args.world_size, trainer.is_world_process_zero(), seconds)


def _drop_gguf_flag(peft_model) -> None:
    """transformers de-quantises a GGUF checkpoint to plain fp32 tensors on load (smollm2-135m) but keeps its
    quantizer attached, and Trainer refuses to train "GGUF-quantized" models. The weights are ordinary
    nn.Linear tensors, so detach the stale quantizer (only for GGUF; real 4/8-bit quantizers are kept) with
    transformers' own `remove_quantization_config`."""
    base = peft_model.get_base_model()
    quantizer = getattr(base, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)).lower() == "gguf":
        quantizer.remove_quantization_config(base)


def _common_args(s: TrainSettings, output_dir: str) -> dict:
    """TrainingArguments shared by every method. Checkpoints off: the stage saves the adapter itself."""
    return dict(
        output_dir=output_dir, learning_rate=s.lr, num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size, seed=s.seed, data_seed=s.seed,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=False,
        activation_checkpointing=s.gradient_checkpointing, dataloader_num_workers=0,
    )


def _precision(peft_model) -> dict:
    """Device and mixed precision of training, from where `load_model` put the frozen base weights (the one
    placement point, model.device / model.dtype): on the CPU `use_cpu`, and bf16 / fp16 base weights train
    under autocast with the LoRA itself in fp32 (PEFT keeps adapter weights in fp32 on a half-precision base),
    so the optimizer state and the saved adapter stay fp32."""
    import torch

    weight = next(p for n, p in peft_model.named_parameters() if "lora_" not in n)
    return {"use_cpu": weight.device.type == "cpu", "bf16": weight.dtype == torch.bfloat16,
            "fp16": weight.dtype == torch.float16}


def _install_callbacks(trainer, losses: list, on_loss: LossHook | None) -> None:
    from transformers import ProgressCallback, TrainerCallback

    class LossRecorder(TrainerCallback):
        """Per-step train loss into the lineage summary and the tracker (logging_steps=1)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and math.isfinite(logs["loss"]):
                losses.append((state.global_step, float(logs["loss"])))
                if on_loss is not None and state.is_world_process_zero:
                    on_loss(state.global_step, float(logs["loss"]))

    class LossBar(ProgressCallback):
        """The default tqdm bar with the loss as a postfix, instead of one printed dict per step."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    trainer.add_callback(LossRecorder())
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(LossBar())
