"""The `local` source: the paper's own data files in `spec.local_dir` (layout: shared/data/paper/README.md).

    alignment/safety_short_refusals.csv   harmful prompt ([INST] ... [/INST]) + refusal: SFT, X̂, eval_harmful
    alignment/benign_helpful_805.json     {instruction, output}: SFT benign share + eval_benign
    alignment/pku_saferlhf_pairs_5k.json  {prompt, response: [chosen, rejected]}: preference (all pairs, or only
                                          refusal/compliance pairs of `refusal_pairs`:
                                          data.preference_pairs); data.sizes.heldout_pairs refusal/compliance
                                          pairs are held out first (judge-free safety score), Wa draws from the rest
    <task>/train_n1000_p*.json            Alpaca-wrapped rows, flag "finetune" (task train) | "unsafe" (poison)
    sst2/val.json, agnews/test.json, gsm8k/test.json   task test

Held-out splits are drawn before the training splits they could overlap (the judge-free pairs before Wa's pairs,
the over-refusal probes before W0's benign rows and Wa's contrast rows), so a recipe that asks for more training rows
changes no held-out split: asking for more than remain is a DataError naming the size, the rows asked and the rows
available.

The safety CSV has 1015 rows but only 361 distinct prompts (several refusals per prompt), so splits are
allocated by prompt: eval_harmful and identify get whole prompts first, SFT takes rows of the remaining
prompts (one per prompt before any second one). eval_harmful also avoids every preference and poison prompt.
Subsampling is deterministic in `spec.seed`; a missing file or malformed row is a DataError naming both.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from nlsr_core.data.base import (assemble_suite, DataError, DataSpec, Suite, join_prompt, dedupe, norm_text, rng_for,
                                 take, with_ids)
from nlsr_core.data.tasks import GSM8K_ANSWER, TASKS

SAFETY_CSV = "alignment/safety_short_refusals.csv"
BENIGN_JSON = "alignment/benign_helpful_805.json"
PREFERENCE_JSON = "alignment/pku_saferlhf_pairs_5k.json"
TASK_TEST = {"sst2": "sst2/val.json", "agnews": "agnews/test.json", "gsm8k": "gsm8k/test.json"}
TRAIN_GLOB = "train_n1000_p*.json"

# The paper bakes the Alpaca prompt (with or without an input section) into `instruction`; undo it.
ALPACA_RE = re.compile(
    r"Below is an instruction that describes a task(?:, paired with an input that provides further context)?\. "
    r"Write a response that appropriately completes the request\.\n\n### Instruction:\n(?P<instruction>.*?)"
    r"(?:\n\n### Input:\n(?P<input>.*?))?\n\n### Response:\s*", re.S)
INST_RE = re.compile(r"\s*\[INST\](?P<prompt>.*?)\[/INST\]\s*", re.S)
ANSWER_RE = re.compile(re.escape(GSM8K_ANSWER) + r"\s*\$?(?P<n>-?[\d,]*\.?\d+)")


def _path(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise DataError(f"{path}: file not found (data.local_dir should hold the paper's data files)")
    return path


def read_json_rows(path: Path) -> list[dict]:
    """A JSON list of objects; anything else is a DataError naming the file (and the row)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty JSON list of objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
    return rows


def field(row: dict, key: str, path: Path, i: int, allow_empty: bool = False) -> str:
    value = row.get(key, "" if allow_empty else None)  # an optional field (Alpaca `input`) may be absent
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise DataError(f"{path}: row {i}: expected a non-empty string field {key!r}")
    return value


def unwrap_alpaca(text: str, path: Path, i: int) -> str:
    """`### Instruction: ... ### Input: ... ### Response:` → raw prompt (instruction + blank line + input)."""
    m = ALPACA_RE.fullmatch(text)
    if m is None:
        raise DataError(f"{path}: row {i}: 'instruction' is not the paper's Alpaca-wrapped prompt")
    return join_prompt(m.group("instruction"), m.group("input") or "")


def task_label(task: str, output: str, path: Path, i: int) -> str:
    """sst2/agnews: the output itself; gsm8k: the number after "The final answer is:" (commas dropped)."""
    if task == "gsm8k":
        m = ANSWER_RE.search(output)
        if m is None:
            raise DataError(f"{path}: row {i}: gsm8k output has no '{GSM8K_ANSWER} N'")
        return m.group("n").replace(",", "")
    label = output.strip()
    if label not in TASKS[task].labels:
        raise DataError(f"{path}: row {i}: {task} label {label!r} not in {list(TASKS[task].labels)}")
    return label


def load_safety(root: Path) -> dict[str, list[dict]]:
    """Refusal rows grouped by normalised prompt (insertion order = file order)."""
    path = _path(root, SAFETY_CSV)
    groups: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            m = INST_RE.fullmatch(field(row, "prompt", path, i))
            prompt = (m.group("prompt") if m else row["prompt"]).strip()
            response = field(row, "response", path, i).strip()
            if not prompt:
                raise DataError(f"{path}: row {i}: empty prompt inside [INST] ... [/INST]")
            group = groups.setdefault(norm_text(prompt), [])
            if all(r["response"] != response for r in group):
                group.append({"prompt": prompt, "response": response})
    if not groups:
        raise DataError(f"{path}: no rows")
    return groups


def _preference_rows(root: Path) -> list[dict]:
    """Every pair of the preference file ({prompt, chosen, rejected}; several per prompt), in file order."""
    path = _path(root, PREFERENCE_JSON)
    rows = []
    for i, row in enumerate(read_json_rows(path)):
        pair = row.get("response")
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)):
            raise DataError(f"{path}: row {i}: expected 'response' = [chosen, rejected] strings")
        rows.append({"prompt": field(row, "prompt", path, i).strip(), "chosen": pair[0].strip(),
                     "rejected": pair[1].strip()})
    return rows


def raw_and_refusal_pairs(root: Path, groups: dict[str, list[dict]]) -> tuple[list[dict], list[dict]]:
    """(the paper's raw pairs: the first pair of each prompt, `refusal_pairs`) from one read of the preference
    file; `groups` = `load_safety` (its refusal opening)."""
    rows = _preference_rows(root)
    return dedupe(rows), refusal_pairs(rows, refusal_opening(groups))


def refusal_opening(groups: dict[str, list[dict]]) -> str:
    """The first sentence most safety-file prompts' refusals open with ("I cannot fulfill your request." opens
    the refusals of 353 of its 361 prompts): a refusal that names no topic, so it fits any harmful prompt."""
    prompts_per_opening: dict[str, set[str]] = {}
    for key, rows in groups.items():
        for row in rows:
            opening = re.split(r"(?<=[.!?])\s", row["response"].strip(), maxsplit=1)[0]
            prompts_per_opening.setdefault(opening, set()).add(key)
    return max(sorted(prompts_per_opening), key=lambda o: len(prompts_per_opening[o]))


def refusal_pairs(rows: list[dict], opening: str) -> list[dict]:
    """Refusal/compliance pairs on the preference file's prompts (`data.preference_pairs: refusal`): per prompt,
    the first pair whose rejected answer complies (no refusal phrase); its chosen answer is kept when it refuses,
    else replaced by the safety file's refusal `opening`. Only 57 of the file's 930 prompts have a chosen answer
    that refuses (the rest are cautious answers the keyword judge counts as compliance), so the raw pairs cannot
    teach a refusal."""
    from nlsr_core.data.refusals import RefusalMatcher

    matcher = RefusalMatcher()
    rows = [r for r in rows if not matcher.is_refusal(r["rejected"])]
    return [{**r, "chosen": r["chosen"] if matcher.is_refusal(r["chosen"]) else opening} for r in dedupe(rows)]


def load_benign(root: Path) -> list[dict]:
    path = _path(root, BENIGN_JSON)
    rows = [{"prompt": join_prompt(field(r, "instruction", path, i), field(r, "input", path, i, allow_empty=True)),
             "response": field(r, "output", path, i).strip()} for i, r in enumerate(read_json_rows(path))]
    return dedupe(rows)


def load_task_train(root: Path, task: str, required: bool = True) -> tuple[list[dict], list[dict]]:
    """(task rows, unsafe rows) over every `<task>/train_n1000_p*.json`, deduplicated by prompt."""
    files = sorted((root / task).glob(TRAIN_GLOB))
    if not files:
        if required:
            raise DataError(f"{root / task}: no {TRAIN_GLOB} file (data.local_dir should hold the paper's data)")
        return [], []
    task_rows, unsafe = [], []
    for path in files:
        for i, row in enumerate(read_json_rows(path)):
            prompt = join_prompt(unwrap_alpaca(field(row, "instruction", path, i), path, i),
                                 field(row, "input", path, i, allow_empty=True))
            output, flag = field(row, "output", path, i).strip(), row.get("flag")
            if flag == "finetune":
                task_rows.append({"prompt": prompt, "response": output, "label": task_label(task, output, path, i)})
            elif flag == "unsafe":
                unsafe.append({"prompt": prompt, "response": output})
            else:
                raise DataError(f"{path}: row {i}: flag {flag!r} is neither 'finetune' nor 'unsafe'")
    return dedupe(task_rows), dedupe(unsafe)


def load_task_test(root: Path, task: str) -> list[dict]:
    path = _path(root, TASK_TEST[task])
    rows = []
    for i, row in enumerate(read_json_rows(path)):
        output = field(row, "output", path, i).strip()
        rows.append({"prompt": join_prompt(field(row, "instruction", path, i),
                                           field(row, "input", path, i, allow_empty=True)),
                     "response": output, "label": task_label(task, output, path, i)})
    return dedupe(rows)


def _tasks(root: Path, spec: DataSpec) -> tuple[dict, dict, list[dict]]:
    """Task train/test per requested task, and the poison pool candidates from every task's files present.

    The poison pool is task-independent (the paper's files all draw BeaverTails unsafe pairs), so it pools
    the unsafe rows of all three tasks' files that exist; only the requested tasks' files are required.
    """
    sizes, train, test, unsafe, calib = spec.sizes, {}, {}, [], {}
    for task in TASKS:
        rows, bad = load_task_train(root, task, required=task in spec.tasks)
        unsafe += bad
        if task not in spec.tasks:
            continue
        test_rows = load_task_test(root, task)
        held_out = {norm_text(r["prompt"]) for r in test_rows}
        rows = [r for r in rows if norm_text(r["prompt"]) not in held_out]  # test ∩ train = ∅
        rng = rng_for(spec.seed, f"task-{task}")
        test[task] = with_ids(take(test_rows, sizes.task_test, rng, f"{root / TASK_TEST[task]} task_test"),
                              f"{task}-test")
        train[task] = with_ids(take(rows, sizes.task_train, rng, f"{root / task}/{TRAIN_GLOB} task_train"),
                               f"{task}-train")
        chosen = {norm_text(r["prompt"]) for r in test[task]}
        calib[task] = [r for r in test_rows if norm_text(r["prompt"]) not in chosen]  # held-out rows left over
    return train, test, dedupe(unsafe), calib


def _split_safety(root: Path, spec: DataSpec, groups: dict[str, list[dict]],
                  avoid: set[str]) -> tuple[list[dict], ...]:
    """(sft refusals, identify, eval_harmful, unused) from the safety CSV with disjoint prompts (see module doc);
    `unused` holds the eligible prompts no split took (the calibration pool)."""
    sizes, rng = spec.sizes, rng_for(spec.seed, "safety")
    keys = sorted(groups)
    rng.shuffle(keys)
    eligible = [k for k in keys if k not in avoid]
    eval_keys = take(eligible, sizes.eval_harmful, rng, f"{root / SAFETY_CSV} eval_harmful prompts")
    eval_set = set(eval_keys)
    rest = [k for k in keys if k not in eval_set]
    ident_keys = take(rest, sizes.identify, rng, f"{root / SAFETY_CSV} identify prompts")
    ident_set = set(ident_keys)
    sft_groups = [rng.sample(groups[k], len(groups[k])) for k in rest if k not in ident_set]
    # Round-robin over prompts: every remaining prompt once before any prompt twice.
    depth = max((len(g) for g in sft_groups), default=0)
    sft_pool = [g[d] for d in range(depth) for g in sft_groups if d < len(g)]
    # the paper's W0 takes its refusal rows from Wa's pairs instead (assemble_suite), none from this file
    n_sft = 0 if spec.sft_refusals == "preference-chosen" else sizes.sft_refusal
    if n_sft > len(sft_pool):
        raise DataError(f"{root / SAFETY_CSV}: sft_refusal needs {n_sft} rows but only "
                        f"{len(sft_pool)} remain after eval_harmful and identify (lower data.sizes)")
    sft = [{**r, "kind": "refusal"} for r in sft_pool[:n_sft]]
    identify = [rng.choice(groups[k]) for k in ident_keys]
    eval_harmful = [{"prompt": groups[k][0]["prompt"]} for k in eval_keys]
    used = eval_set | ident_set | {norm_text(r["prompt"]) for r in sft}
    unused = [{"prompt": groups[k][0]["prompt"]} for k in eligible if k not in used]
    return sft, identify, eval_harmful, unused


def _split_pairs(root: Path, spec: DataSpec, pairs: list[dict], refusal: list[dict],
                 unsafe: list[dict]) -> tuple[list[dict], list[dict]]:
    """(held-out refusal/compliance pairs, Wa's safety pairs): `sizes.heldout_pairs` of `refusal` first (none whose
    prompt is also a poison candidate in `unsafe`, which a mix could train on), then `sizes.preference` of the pool
    data.preference_pairs names (`pairs` or `refusal`) among the other prompts."""
    sizes = spec.sizes
    poison = {norm_text(r["prompt"]) for r in unsafe}
    heldout = take([r for r in refusal if norm_text(r["prompt"]) not in poison], sizes.heldout_pairs,
                   rng_for(spec.seed, "heldout-pairs"),
                   f"data.sizes.heldout_pairs (refusal/compliance pairs of {root / PREFERENCE_JSON} whose prompt "
                   f"no poison file holds)")
    held = {norm_text(r["prompt"]) for r in heldout}
    kind = "refusal/compliance pairs" if spec.preference_pairs == "refusal" else "pairs"
    pool = [r for r in (refusal if spec.preference_pairs == "refusal" else pairs) if norm_text(r["prompt"]) not in held]
    preference = take(pool, sizes.preference, rng_for(spec.seed, "preference"),
                      f"data.sizes.preference ({kind} of {root / PREFERENCE_JSON} after the {len(heldout)} "
                      f"held-out pairs of data.sizes.heldout_pairs)")
    return heldout, preference


def _split_benign(root: Path, spec: DataSpec) -> list[dict]:
    """The AlpacaEval rows as assemble_suite slices them (sft_benign, then eval_benign, then contrast_helpful rows),
    drawn probes first: the over-refusal probes are the first `eval_benign` rows of one seeded order, W0's benign
    rows and Wa's contrast rows come after them, so asking for more of those never moves a probe."""
    sizes, rows = spec.sizes, load_benign(root)
    order = take(rows, len(rows), rng_for(spec.seed, "benign"), f"{root / BENIGN_JSON}")
    if sizes.eval_benign > len(order):
        raise DataError(f"data.sizes.eval_benign: asks {sizes.eval_benign} rows of {root / BENIGN_JSON} but only "
                        f"{len(order)} are available (lower data.sizes)")
    probes, rest = order[:sizes.eval_benign], order[sizes.eval_benign:]
    need = sizes.sft_benign + sizes.contrast_helpful
    if need > len(rest):
        raise DataError(f"data.sizes.sft_benign + data.sizes.contrast_helpful: asks {need} rows of "
                        f"{root / BENIGN_JSON} but only {len(rest)} remain after the {len(probes)} over-refusal "
                        f"probes of data.sizes.eval_benign (lower data.sizes)")
    return rest[:sizes.sft_benign] + probes + rest[sizes.sft_benign:need]


def build_local(spec: DataSpec) -> Suite:
    """The suite from the paper's files under `spec.local_dir`."""
    if not spec.local_dir:
        raise DataError("data.local_dir: required for data.source 'local' (the paper's data folder)")
    root = Path(spec.local_dir)
    if not root.is_dir():
        raise DataError(f"data.local_dir: {root} is not a directory")
    sizes = spec.sizes
    task_train, task_test, unsafe, calib_task = _tasks(root, spec)
    poison = take(unsafe, sizes.poison_pool, rng_for(spec.seed, "poison"), f"{root}/*/{TRAIN_GLOB} poison_pool")
    groups = load_safety(root)
    pairs, refusal = raw_and_refusal_pairs(root, groups)
    heldout_pairs, preference = _split_pairs(root, spec, pairs, refusal, unsafe)
    avoid = {norm_text(r["prompt"]) for r in pairs + unsafe}
    sft_refusal, identify, eval_harmful, calib_harmful = _split_safety(root, spec, groups, avoid)
    benign = _split_benign(root, spec)
    return assemble_suite(spec.seed, sizes, sft_refusal, benign, preference, identify, eval_harmful, poison,
                          task_train, task_test, calib_harmful, calib_task, heldout_pairs, spec.contrast_refusals,
                          spec.sft_refusals)
