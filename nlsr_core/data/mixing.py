"""Poisoned fine-tuning cells: n rows of a task, a fraction p of them harmful (prompt, compliance) pairs.

This is the paper's fine-tuning threat model (§Experiments: n = 1000, p ∈ {0, 0.01, 0.05, 0.1, 0.2}; here n
and p come from params). round(n·p) rows come from the poison pool, the rest from the task's training rows,
both drawn without replacement, then shuffled together, all from one `random.Random(seed)`.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

from nlsr_core.data.base import DataError
from nlsr_core.io.lineage import sha256_text


def poison_digest(row: dict) -> str:
    """What the manifest records per poison row: sha256 of `prompt + "\\n" + response`."""
    return sha256_text(f"{row['prompt']}\n{row['response']}")


def _check_rows(rows: Sequence[dict], what: str) -> None:
    for i, row in enumerate(rows):
        if not all(isinstance(row.get(k), str) for k in ("id", "prompt", "response")):
            raise DataError(f"{what}: row {i} lacks a string id, prompt or response")


def mix_poison(task_rows: Sequence[dict], poison_pool: Sequence[dict], n: int, p: float,
               seed: int) -> tuple[list[dict], dict]:
    """Mix `n` rows with `k = round(n·p)` poison rows; returns (rows, info).

    rows: [{id, prompt, response, flag: "task" | "poison"}] in shuffled order, ids kept from the sources.
    info: {n, p, n_poison, poison_rows: [{id, sha256}]} with poison rows in the order they appear in `rows`.
    Bad input (p ∉ [0, 1], n < 1, too few task or poison rows) is a one-line DataError.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"finetune.n: expected an integer >= 1, got {n!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise DataError(f"poison ratio p: expected a number in [0, 1], got {p!r}")
    k = round(n * p)  # Python's round (half to even), the count every consumer of the manifest recomputes
    if k > len(poison_pool):
        raise DataError(f"poison ratio p={p:g} with n={n} needs {k} poison rows but the pool has "
                        f"{len(poison_pool)} (raise data.sizes.poison_pool or lower n/p)")
    if n - k > len(task_rows):
        raise DataError(f"n={n} with p={p:g} needs {n - k} task rows but the task split has {len(task_rows)} "
                        f"(raise data.sizes.task_train or lower finetune.n)")
    _check_rows(task_rows, "task rows")
    _check_rows(poison_pool, "poison pool")
    rng = random.Random(seed)
    rows = [{"id": r["id"], "prompt": r["prompt"], "response": r["response"], "flag": "task"}
            for r in rng.sample(list(task_rows), n - k)]
    rows += [{"id": r["id"], "prompt": r["prompt"], "response": r["response"], "flag": "poison"}
             for r in rng.sample(list(poison_pool), k)]
    rng.shuffle(rows)
    info = {"n": n, "p": float(p), "n_poison": k,
            "poison_rows": [{"id": r["id"], "sha256": poison_digest(r)} for r in rows if r["flag"] == "poison"]}
    return rows, info
