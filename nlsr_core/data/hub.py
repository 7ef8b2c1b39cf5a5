"""The `hub` source: the paper's public datasets through `datasets.load_dataset` (paper profile, docs/DESIGN.md §5.4).

    PKU-Alignment/PKU-SafeRLHF  train     pairs where the safer response is safe and the other unsafe:
                                          preference (chosen = safer), SFT refusals and X̂ (the safer response)
    PKU-Alignment/BeaverTails   30k_train unsafe rows → poison pool;  30k_test unsafe prompts → eval_harmful
    tatsu-lab/alpaca            train     benign instructions: SFT benign share + eval_benign (held out)
    nyu-mll/glue sst2, fancyzhx/ag_news, openai/gsm8k main   task train / test

The loader is injectable (`build_hub(spec, load=...)`): `load(path, name=config, split=split)` must return an
object with `column_names` and `select_columns(cols).to_dict()` or `__getitem__(column)` (a `datasets.Dataset`
does both), so tests run offline on small JSON fixtures. Each split is drawn in a fixed order from a seeded
shuffle; eval_harmful excludes every prompt seen in SafeRLHF or the BeaverTails training split.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from nlsr_core.data.base import (assemble_suite, DataError, DataSpec, Suite, dedupe, join_prompt, norm_text,
                                 rng_for, take, with_ids)
from nlsr_core.data.tasks import AGNEWS_LABELS, GSM8K_ANSWER, TASKS

# role -> (dataset path, config, split); names as on the Hub today (the un-namespaced aliases redirect there).
HUB_DATASETS: dict[str, tuple[str, str | None, str]] = {
    "saferlhf": ("PKU-Alignment/PKU-SafeRLHF", None, "train"),
    "beavertails_train": ("PKU-Alignment/BeaverTails", None, "30k_train"),
    "beavertails_test": ("PKU-Alignment/BeaverTails", None, "30k_test"),
    "benign": ("tatsu-lab/alpaca", None, "train"),
    "sst2_train": ("nyu-mll/glue", "sst2", "train"),
    "sst2_test": ("nyu-mll/glue", "sst2", "validation"),   # GLUE test labels are hidden (-1)
    "agnews_train": ("fancyzhx/ag_news", None, "train"),
    "agnews_test": ("fancyzhx/ag_news", None, "test"),
    "gsm8k_train": ("openai/gsm8k", "main", "train"),
    "gsm8k_test": ("openai/gsm8k", "main", "test"),
}
# Columns each role needs (checked before use, so a schema change is a one-line error, not a KeyError).
HUB_COLUMNS = {
    "saferlhf": ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
                 "safer_response_id"),
    "beavertails_train": ("prompt", "response", "is_safe"),
    "beavertails_test": ("prompt", "response", "is_safe"),
    "benign": ("instruction", "input", "output"),
    "sst2_train": ("sentence", "label"), "sst2_test": ("sentence", "label"),
    "agnews_train": ("text", "label"), "agnews_test": ("text", "label"),
    "gsm8k_train": ("question", "answer"), "gsm8k_test": ("question", "answer"),
}
SST2_NAMES = ("negative", "positive")        # glue/sst2 label ids 0, 1
GSM8K_HASH_RE = re.compile(r"\n?####\s*(?P<n>[^\n]+)\s*$")
Loader = Callable[..., Any]


def _records(load: Loader, role: str) -> list[dict]:
    """All rows of one hub split as dicts of the needed columns; missing columns / empty split → DataError."""
    path, config, split = HUB_DATASETS[role]
    where = f"{path}" + (f"/{config}" if config else "") + f" split {split}"
    ds = load(path, name=config, split=split)
    cols = HUB_COLUMNS[role]
    missing = [c for c in cols if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; has {list(ds.column_names)}")
    # Column-wise via Arrow (`select_columns().to_dict()` is ~100x faster than iterating `ds[col]` in datasets 5).
    table = ds.select_columns(list(cols)).to_dict() if hasattr(ds, "select_columns") else {c: ds[c] for c in cols}
    data = [list(table[c]) for c in cols]
    if not data[0]:
        raise DataError(f"{where}: split is empty")
    return [dict(zip(cols, values)) for values in zip(*data)]


def gsm8k_solution(answer: str) -> tuple[str, str]:
    """GSM8K `... #### 72` → (solution ending "The final answer is: 72", "72")."""
    m = GSM8K_HASH_RE.search(answer)
    if m is None:
        raise DataError("openai/gsm8k: an answer has no '#### N' line")
    label = m.group("n").strip().replace(",", "")
    return f"{answer[:m.start()].rstrip()}\n{GSM8K_ANSWER} {label}", label


def _task_example(task: str, row: dict) -> dict:
    if task == "sst2":
        label = SST2_NAMES[int(row["label"])]
        return {"prompt": TASKS["sst2"].prompt(row["sentence"]), "response": label, "label": label}
    if task == "agnews":
        label = AGNEWS_LABELS[int(row["label"])]
        return {"prompt": TASKS["agnews"].prompt(row["text"]), "response": label, "label": label}
    solution, label = gsm8k_solution(row["answer"])
    return {"prompt": TASKS["gsm8k"].prompt(row["question"]), "response": solution, "label": label}


def _tasks(spec: DataSpec, load: Loader) -> tuple[dict, dict, dict]:
    """(train, test, calibration pool) per task; the pool is the evaluation rows the test draw left."""
    train, test, calib = {}, {}, {}
    for task in spec.tasks:
        rng = rng_for(spec.seed, f"task-{task}")
        all_test = dedupe([_task_example(task, r) for r in _records(load, f"{task}_test")
                           if int(r.get("label", 0)) >= 0])
        test_rows = take(all_test, spec.sizes.task_test, rng, f"hub {task} task_test")
        held_out = {norm_text(r["prompt"]) for r in test_rows}
        calib[task] = [r for r in all_test if norm_text(r["prompt"]) not in held_out]
        train_rows = dedupe([_task_example(task, r) for r in _records(load, f"{task}_train")])
        train_rows = [r for r in train_rows if norm_text(r["prompt"]) not in held_out]
        train[task] = with_ids(take(train_rows, spec.sizes.task_train, rng, f"hub {task} task_train"), f"{task}-train")
        test[task] = with_ids(test_rows, f"{task}-test")
    return train, test, calib


def _saferlhf(spec: DataSpec, load: Loader) -> tuple[list[dict], list[dict], list[dict], set[str]]:
    """(preference, sft refusals, identify) on disjoint prompts, and every SafeRLHF prompt (for exclusion)."""
    rows = _records(load, "saferlhf")
    contrast = []
    for r in rows:
        safer = r["safer_response_id"]
        if safer not in (0, 1):  # a few rows carry no safety preference
            continue
        if r[f"is_response_{safer}_safe"] is True and r[f"is_response_{1 - safer}_safe"] is False:
            contrast.append({"prompt": r["prompt"].strip(), "chosen": r[f"response_{safer}"].strip(),
                             "rejected": r[f"response_{1 - safer}"].strip()})
    sizes = spec.sizes
    counts = (sizes.preference, sizes.sft_refusal, sizes.identify)
    drawn = take(dedupe(contrast), sum(counts), rng_for(spec.seed, "saferlhf"),
                 "PKU-Alignment/PKU-SafeRLHF safe-vs-unsafe pairs (preference + sft_refusal + identify)")
    pref, sft, ident = drawn[:counts[0]], drawn[counts[0]:counts[0] + counts[1]], drawn[counts[0] + counts[1]:]
    return (pref,
            [{"prompt": r["prompt"], "response": r["chosen"], "kind": "refusal"} for r in sft],
            [{"prompt": r["prompt"], "response": r["chosen"]} for r in ident],
            {norm_text(r["prompt"]) for r in rows})


def _beavertails(spec: DataSpec, load: Loader, avoid: set[str]) -> tuple[list[dict], list[dict]]:
    """(poison pool from 30k_train unsafe rows, eval_harmful from 30k_test unsafe prompts never trained on, the
    30k_test prompts left over as the calibration pool)."""
    train = [r for r in _records(load, "beavertails_train") if not r["is_safe"]]
    poison = take(dedupe([{"prompt": r["prompt"].strip(), "response": r["response"].strip()} for r in train]),
                  spec.sizes.poison_pool, rng_for(spec.seed, "poison"), "PKU-Alignment/BeaverTails 30k_train unsafe")
    seen = avoid | {norm_text(r["prompt"]) for r in train}
    test = dedupe([{"prompt": r["prompt"].strip()} for r in _records(load, "beavertails_test") if not r["is_safe"]])
    test = [r for r in test if norm_text(r["prompt"]) not in seen]
    eval_harmful = take(test, spec.sizes.eval_harmful, rng_for(spec.seed, "eval-harmful"),
                        "PKU-Alignment/BeaverTails 30k_test unsafe prompts not in any training split")
    chosen = {norm_text(r["prompt"]) for r in eval_harmful}
    return poison, eval_harmful, [r for r in test if norm_text(r["prompt"]) not in chosen]


def build_hub(spec: DataSpec, load: Loader | None = None) -> Suite:
    """The suite from the Hub datasets; `load` defaults to `datasets.load_dataset` (imported lazily)."""
    if load is None:
        from datasets import load_dataset as load
    sizes = spec.sizes
    preference, sft_refusal, identify, saferlhf_prompts = _saferlhf(spec, load)
    poison, eval_harmful, calib_harmful = _beavertails(spec, load, saferlhf_prompts)
    benign = dedupe([{"prompt": join_prompt(r["instruction"], r["input"] or ""), "response": r["output"].strip()}
                      for r in _records(load, "benign") if r["output"].strip()])
    benign = take(benign, sizes.sft_benign + sizes.eval_benign + sizes.contrast_helpful,
                  rng_for(spec.seed, "benign"),
                  "tatsu-lab/alpaca sft_benign + eval_benign + contrast_helpful")
    task_train, task_test, calib_task = _tasks(spec, load)
    return assemble_suite(spec.seed, sizes, sft_refusal, benign, preference, identify, eval_harmful, poison,
                          task_train, task_test, calib_harmful, calib_task)
