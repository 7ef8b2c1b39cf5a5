"""Shared test fixtures: everything offline and tiny."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

    from nlsr_core.lora.adapters import Adapter

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "paper"

# Tests never reach a hub and never write to a user's MLflow store.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("NLSR_TRACKING", "off")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The paper's real data beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


def local_paper_profile() -> dict:
    """profiles/local-paper.yaml, parsed."""
    import yaml

    return yaml.safe_load((REPO / "profiles" / "local-paper.yaml").read_text())


def local_paper_spec(local_dir: Path):
    """The DataSpec the local-paper profile prepares (its seed, tasks, sizes and pair settings) on `local_dir`."""
    from nlsr_core.data import DataSpec, SizesConfig

    profile = local_paper_profile()
    data, grid = profile["data"], profile["grid"]
    return DataSpec(source="local", local_dir=str(local_dir), seed=data["seed"], tasks=tuple(grid["tasks"]),
                    sizes=SizesConfig(**data["sizes"]), preference_pairs=data["preference_pairs"],
                    contrast_refusals=data["contrast_refusals"], sft_refusals=data["sft_refusals"])


@pytest.fixture(scope="session")
def tiny():
    """The tiny-random model, loaded once per session (do not mutate it; load_model again for that)."""
    from nlsr_core.lora.models import ModelSpec, load_model

    return load_model(ModelSpec("tiny-random", dtype="float32"))  # exactness tests compare with fp64 oracles


def run_cli(args: list[str]):
    """Run `nlsr ARGS` in-process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from stages.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matmuls on a CPU shared with other jobs: 2 OpenMP threads stall ~100x (measured 2.3 s vs 0.02 s
    per tiny generate call under load); one thread is faster for these sizes. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tiny_adapter(out: Path, seed: int, lineage: dict | None, targets=("q_proj", "up_proj")) -> Path:
    """A tiny-random LoRA adapter (r=4) with random non-zero A and B, so it changes answers; optional lineage."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model

    from nlsr_core.lora.models import ModelSpec, load_model

    peft = get_peft_model(load_model(ModelSpec("tiny-random")).model,
                          LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    peft.save_pretrained(out)
    if lineage is not None:
        (out / "lineage.json").write_text(json.dumps(lineage))
    return out


# --------------------------------------------------------------------------------------------- adapter factory
# Tiny-random's projections as (d_in, d_out): lora_A is (r, d_in), lora_B is (d_out, r).
TINY_SHAPES = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (64, 32), "self_attn.v_proj": (64, 32),
               "self_attn.o_proj": (64, 64), "mlp.gate_proj": (64, 128), "mlp.up_proj": (64, 128),
               "mlp.down_proj": (128, 64)}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TINY_MODEL = {"name": "tiny-random", "source": "in-process", "digest": "tiny-random-seed0"}


def random_adapter(seed: int, rank: int = 4, layers: int = 2, alpha: float = 8.0, shapes=None,
                   targets=None) -> Adapter:
    """The tests' one LoRA factory: tiny-random's module names, shapes (d_in, d_out) per module, every entry ~ N(0, 1)
    from `seed` (A then B, layer by layer, module by module)."""
    import torch

    from nlsr_core.lora.adapters import Adapter

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for name, (d_in, d_out) in (shapes or TINY_SHAPES).items():
            prefix = f"base_model.model.model.layers.{layer}.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, d_in, generator=gen)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(d_out, rank, generator=gen)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
              "target_modules": targets or TARGETS, "bias": "none", "base_model_name_or_path": None,
              "fan_in_fan_out": False, "inference_mode": True}
    return Adapter(config, tensors)


def write_adapter(path: Path, adapter: Adapter, lineage: dict | None = None) -> Path:
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.fileio import write_json
    from nlsr_core.io.lineage import LINEAGE_FILE

    save_adapter(adapter, path)
    if lineage is not None:
        write_json(path / LINEAGE_FILE, lineage)
    return path


def random_masks(adapter: Adapter, seed: int, density: float = 0.5) -> dict[str, torch.Tensor]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {k: torch.rand(t.shape, generator=gen) < density for k, t in sorted(adapter.tensors.items())}
