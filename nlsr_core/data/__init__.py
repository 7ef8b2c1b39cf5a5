"""Data suite for NLSR: alignment, identification, evaluation, task and poison splits (docs/DESIGN.md §3, §5).

Re-exports only: the definitions live in `nlsr_core.data.base`, the source dispatch in `nlsr_core.data.sources`.
"""
from nlsr_core.data.base import (
    AGNEWS_INSTRUCTION, AGNEWS_LABELS, DataError, DataSpec, GSM8K_ANSWER, GSM8K_SUFFIX, ROW_KEYS,
    SST2_INSTRUCTION, SizesConfig, Suite, TASKS, check_suite, dedupe, gsm8k_prompt, join_prompt,
    mix_key, norm_text, rng_for, take, with_ids,
)
from nlsr_core.data.sources import SOURCES, build_suite, check_spec

__all__ = [
    "DataError", "DataSpec", "SizesConfig", "Suite", "SOURCES", "TASKS", "ROW_KEYS", "build_suite", "mix_key",
    "check_spec", "check_suite", "join_prompt", "gsm8k_prompt", "rng_for", "norm_text", "take", "dedupe",
    "with_ids", "SST2_INSTRUCTION", "AGNEWS_INSTRUCTION", "AGNEWS_LABELS", "GSM8K_SUFFIX", "GSM8K_ANSWER",
]
