"""Shared test fixtures: everything offline and tiny."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tiny():
    """The tiny-random model, loaded once per session (do not mutate it; load_model again for that)."""
    from nlsr_core.models import ModelSpec, load_model

    return load_model(ModelSpec("tiny-random"))


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

    from nlsr_core.models import ModelSpec, load_model

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
