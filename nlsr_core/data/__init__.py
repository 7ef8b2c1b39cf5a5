"""Data suite for NLSR: alignment, identification, evaluation, task and poison splits (docs/DESIGN.md §3, §5).

Re-exports only: the definitions live in `nlsr_core.data.base`, the source dispatch in `nlsr_core.data.sources`.
"""
from nlsr_core.data.base import (
    DataError, DataSpec, ROW_KEYS, SizesConfig, Suite, check_suite, dedupe, join_prompt, mix_key, norm_text, rng_for,
    take, with_ids,
)
from nlsr_core.data.sources import SOURCES, build_suite, check_spec
from nlsr_core.data.tasks import AGNEWS_LABELS, GSM8K_ANSWER, TASKS, Task, get_task

__all__ = [
    "DataError", "DataSpec", "SizesConfig", "Suite", "SOURCES", "TASKS", "ROW_KEYS", "build_suite", "mix_key",
    "check_spec", "check_suite", "join_prompt", "rng_for", "norm_text", "take", "dedupe", "with_ids", "Task",
    "get_task", "AGNEWS_LABELS", "GSM8K_ANSWER",
]
