"""Write a prepared data suite and its poisoned fine-tuning mixes to disk (the `prepare-data` stage's core).

Layout under `out_dir` (JSONL, one row per line, canonical JSON with sorted keys):

    align/sft.jsonl  align/preference.jsonl  identify/safety.jsonl  eval/harmful.jsonl  eval/benign.jsonl
    tasks/<task>/train.jsonl  tasks/<task>/test.jsonl  poison/pool.jsonl  mixes/<task>-p<p>.jsonl
    calib/harmful.jsonl  tasks/<task>/calib.jsonl      only when sizes.calib_harmful / sizes.task_calib > 0
    eval/benign_sensitive.jsonl   file-backed sources: the synthetic benign-sensitive over-refusal probes
    heldout/pairs.jsonl  refusal/compliance pairs on prompts no training file holds (judge-free safety score);
                         only when the source has such pairs
    manifest.json   source, seed, sizes, tasks, mixes (n, p, n_poison, poison_rows), counts, sha256 per file

Everything (suite and every mix) is built and checked before anything is written, and the directory is
written atomically, so bad input leaves no output at all. Same spec ⇒ byte-identical files.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from nlsr_core.data.base import DataError, DataSpec, Suite, mix_key, norm_text, rng_for, take, with_ids
from nlsr_core.data.sources import build_suite
from nlsr_core.data.mixing import mix_poison
from nlsr_core.data.transfer import transfer_rows
from nlsr_core.io.fileio import write_json, write_jsonl
from nlsr_core.io.lineage import sha256_file
from nlsr_core.io.outputs import claim, replace

MANIFEST = "manifest.json"

# Suite split -> file in the layout (task files are added per task).
SPLIT_FILES: dict[str, str] = {
    "sft": "align/sft.jsonl",
    "preference": "align/preference.jsonl",
    "identify": "identify/safety.jsonl",
    "eval_harmful": "eval/harmful.jsonl",
    "eval_benign": "eval/benign.jsonl",
    "poison_pool": "poison/pool.jsonl",
}


BENIGN_SENSITIVE = "eval/benign_sensitive.jsonl"


def mix_file(task: str, p: float) -> str:
    return f"mixes/{mix_key(task, p)}.jsonl"


def suite_files(suite: Suite, tasks: tuple[str, ...]) -> dict[str, list[dict]]:
    """Relative path -> rows for every split file of the layout."""
    files = {rel: getattr(suite, split) for split, rel in SPLIT_FILES.items()}
    if suite.eval_benign_sensitive:
        files[BENIGN_SENSITIVE] = suite.eval_benign_sensitive
    for task in tasks:
        files[f"tasks/{task}/train.jsonl"] = suite.task_train[task]
        files[f"tasks/{task}/test.jsonl"] = suite.task_test[task]
    return files


CALIB_HARMFUL = "calib/harmful.jsonl"


def calib_task_file(task: str) -> str:
    return f"tasks/{task}/calib.jsonl"


def calibration_files(suite: Suite, spec: DataSpec, taken: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The calibration split (`nlsr calibrate`): rows drawn from the source's leftover pools after removing every
    prompt any file in `taken` holds, so it is disjoint from the test split (and from training) by construction."""
    sizes, files = spec.sizes, {}
    seen = {norm_text(r["prompt"]) for rows in taken.values() for r in rows}

    def draw(pool: list[dict], n: int, stream: str, prefix: str) -> list[dict]:
        fresh, kept = [], set(seen)
        for r in pool:  # drop prompts of other splits and duplicates inside the pool
            key = norm_text(r["prompt"])
            if key not in kept:
                kept.add(key)
                fresh.append(r)
        return with_ids(take(fresh, n, rng_for(spec.seed, stream), f"data source {spec.source!r} {prefix} "
                                                                      f"(rows unused by every other split)"), prefix)

    if sizes.calib_harmful:
        files[CALIB_HARMFUL] = [{"id": r["id"], "prompt": r["prompt"]} for r in
                                draw(suite.calib_pool_harmful, sizes.calib_harmful, "calib-harmful", "calib-harmful")]
    if sizes.task_calib:
        for task in spec.tasks:
            files[calib_task_file(task)] = draw(suite.calib_pool_task.get(task, []), sizes.task_calib,
                                                f"calib-{task}", f"{task}-calib")
    return files


HELDOUT_PAIRS = "heldout/pairs.jsonl"
TRANSFER_HARMFUL = "eval/transfer.jsonl"    # data.transfer's harmful set (nlsr_core.data.transfer), when asked for
# Files whose prompts a model was trained on (or may be): the held-out pairs avoid all of them.
TRAINING_PREFIXES = ("align/", "identify/", "poison/", "mixes/")


def heldout_pair_file(suite: Suite, taken: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """{HELDOUT_PAIRS: rows} of the suite's held-out pairs whose prompt no training file in `taken` holds
    ({} when none are left)."""
    trained = {norm_text(r["prompt"]) for rel, rows in taken.items()
               if rel.startswith(TRAINING_PREFIXES) or rel.endswith("/train.jsonl") for r in rows}
    rows = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in suite.heldout_pairs if norm_text(r["prompt"]) not in trained]
    return {HELDOUT_PAIRS: with_ids(rows, "heldout-pair")} if rows else {}


def build_mixes(suite: Suite, spec: DataSpec, mixes: list[tuple[str, float]],
                finetune_n: int) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """(relative path -> rows, mix key -> manifest entry) for each (task, p); checks every mix first."""
    if not mixes:
        raise DataError("mixes: expected at least one (task, p) poisoned mix (grid.tasks × grid.poison_ratios)")
    files, entries = {}, {}
    for task, p in mixes:
        if task not in spec.tasks:
            raise DataError(f"mix task {task!r}: not among the prepared tasks {list(spec.tasks)}")
        key = mix_key(task, p)
        if key in entries:
            raise DataError(f"mixes: duplicate mix {key}")
        rows, info = mix_poison(suite.task_train[task], suite.poison_pool, finetune_n, p, spec.seed)
        files[mix_file(task, p)], entries[key] = rows, {"task": task, **info}
    return files, entries


def written_by_prepare(path: Path) -> str | None:
    """nlsr_core.io.outputs recogniser: `path` is a prepared suite when its manifest lists every file in it, so
    prepare-data replaces its own output and never a directory holding anything else."""
    try:
        listed = set(json.loads((path / MANIFEST).read_text(encoding="utf-8"))["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"it has no {MANIFEST} of prepare-data"
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir())
    other = next((f for f in files if f not in listed and f != MANIFEST), None)
    return f"it holds {other}, which its {MANIFEST} does not list" if other else None


def prepare(spec: DataSpec, mixes: list[tuple[str, float]], finetune_n: int, out_dir: Path,
            finalize: Callable[[Path], None] | None = None, inputs: list | None = None) -> dict:
    """Build the suite and mixes for `spec`, write them atomically to `out_dir`, return the manifest.

    `out_dir` is claimed first (nlsr_core.io.outputs; `inputs` are (option, path) pairs it must keep clear of).
    `finalize(tmp_dir)` (optional) runs inside the temporary directory before it is renamed into place, so a
    caller can add e.g. its `lineage.json` atomically with the data.
    """
    with claim(out_dir, "prepare-data", inputs=inputs or [], recognise=written_by_prepare) as output:
        suite = build_suite(spec)
        files = suite_files(suite, spec.tasks)
        mix_rows, mix_entries = build_mixes(suite, spec, list(mixes), finetune_n)
        files.update(mix_rows)
        files.update(calibration_files(suite, spec, files))
        files.update(heldout_pair_file(suite, files))
        transfer, transfer_record = transfer_rows(spec, files)
        if transfer:
            files[TRANSFER_HARMFUL] = transfer
        with replace(output) as tmp:
            for rel, rows in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                write_jsonl(tmp / rel, rows)
            manifest = {
                "source": spec.source,
                "seed": spec.seed,
                "preference_pairs": spec.preference_pairs,
                # only when set, so a suite built before the lever keeps its manifest bytes (readers default to generic)
                **({"contrast_refusals": spec.contrast_refusals} if spec.contrast_refusals != "generic" else {}),
                **({"sft_refusals": spec.sft_refusals} if spec.sft_refusals != "safety-file" else {}),
                **({"transfer": transfer_record} if transfer_record else {}),
                "sizes": asdict(spec.sizes),
                "tasks": list(spec.tasks),
                "finetune_n": finetune_n,
                "mixes": mix_entries,
                "counts": {rel: len(rows) for rel, rows in sorted(files.items())},
                "sha256": {rel: sha256_file(tmp / rel) for rel in sorted(files)},
            }
            write_json(tmp / MANIFEST, manifest)
            if finalize is not None:
                finalize(tmp)
        return manifest
