"""Where and in what precision every model pass runs: `model.device` and `model.dtype` resolved once.

    model.device  auto | cpu | cuda | cuda:N | mps     auto: cuda when torch sees a GPU, else cpu
    model.dtype   auto | float32 | bfloat16 | float16  auto: bfloat16 on a CUDA device that supports it, else
                                                       float16; on the CPU bfloat16 where the CPU has native bf16
                                                       matmuls (AVX-512 BF16 / AMX through oneDNN), else float32

Why bf16 on such a CPU: `benchmarks/bench_dtype.py` measured the embedded model's passes side by side
(benchmarks/results/dtype.json, docs/DESIGN.md §5.7). A CPU without native bf16 emulates it and is slower than
fp32, so there `auto` stays float32.

The resolved `Compute` is what the stack is built on (`nlsr_core.lora.models.load_model`), what training's mixed
precision follows (`nlsr_core.train.trainers`), what lineage records (`record()`) and what the answer cache keys on: the
device *type* and the dtype, because CUDA bf16 and CPU bf16 kernels give different greedy answers, while two GPUs
of one machine give the same. Statistics that must stay exact (identification Grams, log-likelihood sums) are
accumulated in fp32 by their callers whatever the compute dtype.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from nlsr_core.errors import NlsrError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Compute:
    """A resolved placement: `device` as torch names it ("cpu", "cuda:0", "mps") and a concrete dtype name."""

    device: str = "cpu"
    dtype: str = "float32"

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def record(self) -> dict:
        """Lineage and answer-cache record: device type and dtype (the GPU index does not change answers)."""
        return {"device": self.device_type, "dtype": self.dtype}


def check_names(device: str, dtype: str) -> None:
    """The spelling of `model.device` / `model.dtype` (no torch import): one line naming the key otherwise."""
    found = _DEVICE.match(str(device))
    if not found or (found.group(2) is not None and found.group(1) != "cuda"):
        raise NlsrError(f"model.device '{device}': expected one of {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise NlsrError(f"model.dtype '{dtype}': expected one of {', '.join(DTYPES)}")


def resolve_compute(device: str = "auto", dtype: str = "auto") -> Compute:
    """`model.device` / `model.dtype` -> the Compute this machine runs them on.

    Bad input is one line naming the key, what was found and what is expected (an unknown name, `cuda` without
    CUDA, `cuda:3` on a machine with fewer GPUs, `mps` without MPS, a dtype the device cannot run); it is raised
    before any model is loaded, so commands call this first.
    """
    import torch

    check_names(device, dtype)
    kind, index = _DEVICE.match(device).groups()
    if kind == "auto":
        kind, index = ("cuda", None) if torch.cuda.is_available() else ("cpu", None)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise NlsrError(f"model.device '{device}': this machine has no CUDA device (torch {torch.__version__}"
                            f"{'' if torch.version.cuda else ', a CPU-only build'}); expected cpu or auto")
        count = torch.cuda.device_count()
        index = int(index or torch.cuda.current_device())
        if index >= count:
            raise NlsrError(f"model.device '{device}': this machine has {count} CUDA device(s) "
                            f"(cuda:0..cuda:{count - 1}); expected one of those, cuda or auto")
        resolved = f"cuda:{index}"
    elif kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise NlsrError(f"model.device '{device}': MPS is not available on this machine; expected cpu or auto")
        resolved = "mps"
    else:
        resolved = "cpu"
    return Compute(resolved, _resolve_dtype(dtype, resolved))


def _resolve_dtype(dtype: str, device: str) -> str:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        if device == "cpu":
            return "bfloat16" if cpu_has_native_bf16() else "float32"
        return "float16"  # mps: fp16 is its native half type
    if dtype == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise NlsrError(f"model.dtype 'bfloat16': {torch.cuda.get_device_name(device)} does not support bf16; "
                        "expected float16, float32 or auto")
    return dtype


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 matmuls natively (AVX-512 BF16 or AMX), the case bench_dtype measured."""
    import torch

    cpu = torch.cpu
    try:  # private probes of torch.cpu (torch >= 2.3); a torch without them gets the safe answer, fp32
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:
        return False
