"""`build_suite(spec)`: the data suite from the source `spec.source` names, through the `SOURCES` table."""
from __future__ import annotations

from typing import Callable

from nlsr_core.data.contrast import CONTRAST_REFUSALS
from nlsr_core.data.base import DataError, DataSpec, SizesConfig, Suite, check_suite
from nlsr_core.data.hub import build_hub
from nlsr_core.data.local import build_local
from nlsr_core.data.synthetic import build_synthetic
from nlsr_core.data.tasks import TASKS
from nlsr_core.data.transfer import check_transfer

# all: the source's pairs as they are; refusal: refusal/compliance pairs (synthetic: the same pairs, every one
# already is; local: nlsr_core.data.local.refusal_pairs)
PREFERENCE_PAIRS = ("all", "refusal")
SFT_REFUSALS = ("safety-file", "preference-chosen")

SOURCES: dict[str, Callable[[DataSpec], Suite]] = {
    "synthetic": build_synthetic,
    "local": build_local,
    "hub": build_hub,
}


def build_suite(spec: DataSpec) -> Suite:
    """Build the whole suite for `spec` (deterministic in `spec`); bad input raises a one-line DataError."""
    check_spec(spec)
    suite = SOURCES[spec.source](spec)
    check_suite(suite, spec)
    return suite


def check_spec(spec: DataSpec) -> None:
    """Reject an unknown source/task or a malformed spec with a one-line DataError."""
    if spec.source not in SOURCES:
        raise DataError(f"data.source: unknown source {spec.source!r}; expected one of {sorted(SOURCES)}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int):
        raise DataError(f"data.seed: expected an integer, got {spec.seed!r}")
    if not isinstance(spec.sizes, SizesConfig):
        raise DataError(f"data.sizes: expected a SizesConfig object, got {type(spec.sizes).__name__}")
    if isinstance(spec.tasks, str) or not spec.tasks:
        raise DataError(f"grid.tasks: expected a non-empty list of tasks from {list(TASKS)}, got {spec.tasks!r}")
    for task in spec.tasks:
        if task not in TASKS:
            raise DataError(f"grid.tasks: unknown task {task!r}; expected one of {list(TASKS)}")
    if len(set(spec.tasks)) != len(spec.tasks):
        raise DataError(f"grid.tasks: duplicate task in {list(spec.tasks)}")
    if spec.preference_pairs not in PREFERENCE_PAIRS:
        raise DataError(f"data.preference_pairs: unknown {spec.preference_pairs!r}; expected one of "
                        f"{list(PREFERENCE_PAIRS)}")
    if spec.contrast_refusals not in CONTRAST_REFUSALS:
        raise DataError(f"data.contrast_refusals: unknown {spec.contrast_refusals!r}; expected one of "
                        f"{list(CONTRAST_REFUSALS)}")
    if spec.sft_refusals not in SFT_REFUSALS:
        raise DataError(f"data.sft_refusals: unknown {spec.sft_refusals!r}; expected one of {list(SFT_REFUSALS)}")
    check_transfer(spec)
    if spec.sft_refusals != "safety-file" and spec.source != "local":
        raise DataError(f"data.sft_refusals: {spec.sft_refusals!r} takes W0's rows from the paper's preference "
                        f"file of source 'local'; source {spec.source!r} supports safety-file (expected safety-file)")
    if spec.preference_pairs == "refusal" and spec.source == "hub":
        raise DataError("data.preference_pairs: 'refusal' builds its chosen answers from the safety refusals file of "
                        "source 'local'; source 'hub' supports 'all' (expected all)")
    if spec.source != "synthetic" and spec.sizes.contrast_sensitive:
        raise DataError(f"data.sizes.contrast_sensitive: {spec.sizes.contrast_sensitive} benign-sensitive contrast "
                        f"pairs, but source {spec.source!r} has no benign-sensitive prompts with answers (expected 0; "
                        f"use contrast_helpful)")
