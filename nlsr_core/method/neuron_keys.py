"""What nlsr_core.method.neurons (scoring, masks) and nlsr_core.method.neurons_stats (the model pass) share: the error type and
the statistics file's keys, so neither module imports the other at load time."""
from __future__ import annotations

from nlsr_core.errors import NlsrError


class IdentifyError(NlsrError):
    """Bad identification input (sparsity, preset, method, stats); one line naming the param or file."""


def gram_key(module: str) -> str:
    """Key of module's Gram K = Σ z zᵀ in stats.safetensors."""
    return f"{module}.gram"
