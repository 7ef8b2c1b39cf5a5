"""The transfer set (the paper's Table 6, HarmBench there): harmful prompts from another source than the suite's,
from which no split was drawn, so HS on it asks whether a repair holds beyond the harmful distribution it was
identified and measured on.

    data.transfer  paper      the BeaverTails unsafe prompts of the paper's poisoned task files in data.local_dir
                              (the paper's own harmful distribution); skipped, with the reason in the manifest,
                              when that folder is absent, so a profile that asks for it still runs without it
                   synthetic  the synthetic suite's held-out harmful topics and phrasings (for a file-backed suite)
                   none       no transfer set

Prompts any prepared split holds (poison rows included) are removed before the seeded draw of
data.sizes.transfer_harmful prompts; asking for more than remain is a one-line error.
"""
from __future__ import annotations

from pathlib import Path

from nlsr_core.data.base import DataError, DataSpec, dedupe, norm_text, rng_for, with_ids

TRANSFER_SOURCES = ("none", "paper", "synthetic")


def paper_prompts(root: Path) -> list[str]:
    """Every distinct unsafe prompt of the paper's poisoned task files under `root`, in task then file order."""
    from nlsr_core.data.local import load_task_train
    from nlsr_core.data.tasks import TASKS

    return [r["prompt"] for task in TASKS for r in load_task_train(root, task, required=False)[1]]


def synthetic_prompts(seed: int) -> list[str]:
    """Every held-out synthetic harmful prompt (the evaluation half of topics, templates and fillers)."""
    from nlsr_core.data import synthetic_safety as safety

    split = safety.harmful_split(rng_for(seed, "harmful-split"))   # the synthetic suite's own split
    return [p for _, p in safety.harmful_prompts(split.eval_topics, split.eval_templates, split.eval_prefixes,
                                                 split.eval_suffixes)]


def check_transfer(spec: DataSpec) -> None:
    """data.transfer must name a source other than the suite's own."""
    if spec.transfer not in TRANSFER_SOURCES:
        raise DataError(f"data.transfer: unknown {spec.transfer!r}; expected one of {list(TRANSFER_SOURCES)}")
    if spec.transfer == "synthetic" and spec.source == "synthetic":
        raise DataError("data.transfer: 'synthetic' is the suite's own source; expected paper or none for source "
                        "synthetic")


def transfer_rows(spec: DataSpec, taken: dict[str, list[dict]]) -> tuple[list[dict], dict]:
    """(rows {id, prompt}, the manifest's record of them) for data.transfer; `taken` = every file prepared so far
    (rel path -> rows), whose prompts the set must not hold."""
    if spec.transfer == "none" or spec.sizes.transfer_harmful == 0:
        return [], {}
    if spec.transfer == "paper":
        root = Path(spec.local_dir) if spec.local_dir else None
        if root is None or not root.is_dir():
            return [], {"source": "paper", "rows": 0, "skipped": f"no paper data folder at {spec.local_dir}"}
        prompts = paper_prompts(root)
    else:
        prompts = synthetic_prompts(spec.seed)
    held = {norm_text(r["prompt"]) for rows in taken.values() for r in rows if isinstance(r.get("prompt"), str)}
    pool = dedupe([{"prompt": p} for p in prompts if norm_text(p) not in held])
    k = spec.sizes.transfer_harmful
    if k > len(pool):
        raise DataError(f"data.sizes.transfer_harmful: asks for {k} prompts but the {spec.transfer} transfer source "
                        f"holds {len(pool)} that no split holds; expected at most {len(pool)}")
    rows = with_ids(rng_for(spec.seed, "transfer").sample(pool, k), "transfer")
    return rows, {"source": spec.transfer, "rows": len(rows)}
