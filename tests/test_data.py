"""Data layer: synthetic/local/hub suites, poison mixing, prepared layout and templates (offline, fast)."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from nlsr_core.errors import NlsrError
from nlsr_core.data import (AGNEWS_LABELS, TASKS, DataError, DataSpec, SizesConfig, build_suite, mix_key, norm_text)
from nlsr_core.data import synthetic_safety as safety
from nlsr_core.data.hub import HUB_DATASETS, build_hub
from nlsr_core.data.mixing import mix_poison, poison_digest
from nlsr_core.data.prepare import MANIFEST, prepare
from nlsr_core.data.templates import ALPACA_PROMPT, TEMPLATES, format_example, format_prompt
from nlsr_core.io.fileio import read_jsonl
from nlsr_core.io.lineage import sha256_file

PAPER_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "paper"
HUB_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hub"
SMALL = SizesConfig(sft_refusal=20, sft_benign=20, preference=10, identify=8, eval_harmful=10, eval_benign=10,
              task_train=60, task_test=12, poison_pool=30, calib_harmful=0, task_calib=0, contrast_sensitive=0,
              contrast_helpful=0)
# The file-backed sources have no benign-sensitive contrast prompts (data.sizes.contrast_sensitive must be 0).
FILE_SIZES = dataclasses.replace(SizesConfig(), contrast_sensitive=0)
REFUSAL_RE = re.compile(r"\b(I'm sorry|Sorry|I can't|I cannot|I won't|I must decline|I'm not able)\b")
ALL_TASKS = tuple(TASKS)


def _suite(seed=0, sizes=SizesConfig(), tasks=ALL_TASKS):
    return build_suite(DataSpec(source="synthetic", seed=seed, tasks=tasks, sizes=sizes))


def _training_prompts(suite) -> list[str]:
    rows = suite.sft + suite.preference + suite.identify + suite.poison_pool
    return [r["prompt"] for r in rows] + [r["prompt"] for rs in suite.task_train.values() for r in rs]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message must be one line: {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_and_seed_dependent():
    a, b, c = _suite(0), _suite(0), _suite(1)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    for split in ("sft", "preference", "identify", "eval_harmful", "eval_benign", "poison_pool"):
        assert getattr(a, split) != getattr(c, split), split
    for task in ALL_TASKS:
        assert a.task_train[task] != c.task_train[task]


@pytest.mark.parametrize("sizes", [SizesConfig(), SMALL, dataclasses.replace(SMALL, sft_benign=3, poison_pool=1)])
def test_synthetic_sizes_honoured(sizes):
    s = _suite(sizes=sizes)
    kinds = [r["kind"] for r in s.sft]
    assert (kinds.count("refusal"), kinds.count("benign")) == (sizes.sft_refusal, sizes.sft_benign)
    pairs = sizes.preference + sizes.contrast_sensitive + sizes.contrast_helpful
    assert [len(s.preference), len(s.identify), len(s.eval_harmful), len(s.eval_benign), len(s.poison_pool)] == \
        [pairs, sizes.identify, sizes.eval_harmful, sizes.eval_benign, sizes.poison_pool]
    for task in ALL_TASKS:
        assert (len(s.task_train[task]), len(s.task_test[task])) == (sizes.task_train, sizes.task_test)
    ids = [r["id"] for split in (s.sft, s.preference, s.identify, s.eval_harmful, s.eval_benign, s.poison_pool)
           for r in split] + [r["id"] for t in ALL_TASKS for r in s.task_train[t] + s.task_test[t]]
    assert len(ids) == len(set(ids))


def _template_parsers():
    """(template, regex) per harmful template: any filler, any known topic captured as group `t`."""
    pre = "|".join(re.escape(p) for p in ("",) + safety.HARMFUL_PREFIXES)
    suf = "|".join(re.escape(s) for s in ("",) + safety.HARMFUL_SUFFIXES)
    topic = "(?P<t>" + "|".join(re.escape(t) for t in safety.HARMFUL_TOPICS) + ")"
    return [(tpl, re.compile(f"(?:{pre})" + re.escape(tpl).replace(re.escape("{t}"), topic) + f"(?:{suf})"))
            for tpl in safety.HARMFUL_TEMPLATES]


def _parse_harmful(prompt: str, parsers) -> tuple[str, str]:
    hits = {(tpl, m.group("t")) for tpl, rx in parsers
            if (m := rx.fullmatch(prompt))}
    assert len(hits) == 1, f"{prompt!r} parses as {hits}"
    return hits.pop()


def test_topic_and_template_lists_are_unambiguous():
    for lst in (safety.HARMFUL_TOPICS, safety.HARMFUL_TEMPLATES, safety.EVAL_BENIGN_TOPICS):
        assert len(set(lst)) == len(lst)
    for a in safety.HARMFUL_TOPICS:
        assert not [b for b in safety.HARMFUL_TOPICS if a != b and a in b], a


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_eval_harmful_shares_no_topic_or_template_with_training(seed):
    s, parsers = _suite(seed, SMALL), _template_parsers()
    harmful_train = [r["prompt"] for r in s.sft if r["kind"] == "refusal"] + \
        [r["prompt"] for r in s.preference + s.identify + s.poison_pool]
    train = {_parse_harmful(p, parsers) for p in harmful_train}
    evals = {_parse_harmful(r["prompt"], parsers) for r in s.eval_harmful}
    assert not {t for t, _ in train} & {t for t, _ in evals}, "template leak"
    assert not {x for _, x in train} & {x for _, x in evals}, "topic leak"
    all_train = _training_prompts(s)
    for _, topic in evals:
        assert not any(topic in p for p in all_train), topic
    assert not {norm_text(p) for p in all_train} & {norm_text(r["prompt"]) for r in s.eval_harmful}
    # Over-refusal probes: neither the prompts nor their topics were trained on.
    assert not {norm_text(p) for p in all_train} & {norm_text(r["prompt"]) for r in s.eval_benign}
    for topic in safety.EVAL_BENIGN_TOPICS:
        assert not any(topic.lower() in p.lower() for p in all_train), topic


def test_synthetic_variety():
    # 256 + 256 SFT rows (the pre-r5 sizes): enough rows to see the generators' variety
    s, parsers = _suite(0, dataclasses.replace(SizesConfig(), sft_refusal=256, sft_benign=256)), _template_parsers()
    harmful = [r["prompt"] for r in s.sft if r["kind"] == "refusal"] + [r["prompt"] for r in s.poison_pool]
    parsed = [_parse_harmful(p, parsers) for p in harmful]
    assert len(set(harmful)) == len(harmful) >= 350
    assert len({t for t, _ in parsed}) >= 10 and len({x for _, x in parsed}) >= 25
    refusal_shapes = {re.sub(re.escape(x), "{t}", r["response"])
                      for r, (_, x) in zip([r for r in s.sft if r["kind"] == "refusal"], parsed)}
    assert len(refusal_shapes) >= 6
    assert len({r["prompt"] for r in s.sft if r["kind"] == "benign"}) == 256


def test_refusals_and_compliance_content():
    s, parsers = _suite(0, SMALL), _template_parsers()
    refusals = [(r["prompt"], r["response"]) for r in s.sft if r["kind"] == "refusal"] + \
        [(r["prompt"], r["chosen"]) for r in s.preference] + [(r["prompt"], r["response"]) for r in s.identify]
    for prompt, text in refusals:
        assert REFUSAL_RE.search(text), text
        assert _parse_harmful(prompt, parsers)[1] in text  # the refusal names the topic
    compliant = [(r["prompt"], r["rejected"]) for r in s.preference] + \
        [(r["prompt"], r["response"]) for r in s.poison_pool]
    # Never real instructions: every compliant answer is one of the generic, non-actionable templates.
    allowed = {c.format(t=t) for c in safety.COMPLIANCES for t in safety.HARMFUL_TOPICS}
    for prompt, text in compliant:
        assert text in allowed and not REFUSAL_RE.search(text), text
        assert _parse_harmful(prompt, parsers)[1] in text
    for r in s.sft:
        if r["kind"] == "benign":
            assert not REFUSAL_RE.search(r["response"]), r


ARITH_RE = re.compile(r"(?<![\d/])(-?\d+) ([+\-*]) (-?\d+) = (-?\d+)")


def test_benign_and_task_answers_are_correct():
    s = _suite(0)
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    checked = 0
    for r in s.sft + [r for t in ("gsm8k",) for r in s.task_train[t] + s.task_test[t]]:
        for a, op, b, c in ARITH_RE.findall(r.get("response", "")):
            assert ops[op](int(a), int(b)) == int(c), r
            checked += 1
    assert checked > 300
    capitals = dict(__import__("nlsr_core.data.synthetic", fromlist=["CAPITALS"]).CAPITALS)
    conversions = 0
    for r in s.sft:
        m = re.fullmatch(r"The capital of (.+) is (.+)\.", r["response"])
        if m:
            assert capitals[m.group(1)] == m.group(2)
        m = re.match(r"(-?\d+)°C is (-?\d+)°F", r["response"])
        if m:
            assert int(m.group(1)) * 9 / 5 + 32 == int(m.group(2))
        m = re.fullmatch(r"(\d+) \w+ is (\d+) \w+, because 1 \w+ is (\d+) \w+\.", r["response"])
        if m:
            assert int(m.group(1)) * int(m.group(3)) == int(m.group(2))
            conversions += 1
    assert conversions > 5
    for r in s.task_train["gsm8k"] + s.task_test["gsm8k"]:
        assert r["response"].endswith(f"The final answer is: {r['label']}")
        assert ARITH_RE.findall(r["response"])[-1][3] == r["label"]
        assert r["prompt"].endswith("\nFirst think step by step and then answer the final number.")
    for task, labels in (("sst2", ("positive", "negative")), ("agnews", AGNEWS_LABELS)):
        rows = s.task_train[task] + s.task_test[task]
        assert all(r["label"] == r["response"] and r["label"] in labels for r in rows)
        assert {r["label"] for r in rows} == set(labels)
    assert s.task_train["sst2"][0]["prompt"].startswith(
        "Analyze the sentiment of the input, and respond only positive or negative\n\n")


@pytest.mark.parametrize("task", ALL_TASKS)
def test_synthetic_task_test_disjoint_from_train(task):
    s = _suite(3)
    assert not {r["prompt"] for r in s.task_train[task]} & {r["prompt"] for r in s.task_test[task]}


# -------------------------------------------------------------------------------------------- poison mixing
def _pools(n_task=50, n_poison=20):
    task = [{"id": f"t-{i}", "prompt": f"task {i}", "response": "positive", "label": "positive"} for i in range(n_task)]
    poison = [{"id": f"p-{i}", "prompt": f"harm {i}", "response": f"ok {i}"} for i in range(n_poison)]
    return task, poison


@pytest.mark.parametrize("n,p,k", [(10, 0.0, 0), (10, 0.1, 1), (40, 0.05, 2), (40, 0.5, 20), (7, 0.5, 4),
                                   (5, 0.5, 2), (20, 1.0, 20), (1, 0.2, 0), (45, 0.1, 4),
                                   (10, 0.29, 3)])
def test_mix_poison_exact_counts(n, p, k):
    task, poison = _pools()
    rows, info = mix_poison(task, poison, n, p, seed=0)
    assert k == round(n * p) and len(rows) == n and info["n_poison"] == k
    flags = [r["flag"] for r in rows]
    assert flags.count("poison") == k and flags.count("task") == n - k
    assert len({r["id"] for r in rows}) == n
    by_id = {r["id"]: r for r in task + poison}
    assert all(by_id[r["id"]]["prompt"] == r["prompt"] and set(r) == {"id", "prompt", "response", "flag"} for r in rows)
    assert info["poison_rows"] == [{"id": r["id"], "sha256": poison_digest(r)} for r in rows if r["flag"] == "poison"]
    assert mix_poison(task, poison, n, p, seed=0) == (rows, info)


def test_mix_poison_seed_changes_draw():
    task, poison = _pools()
    assert mix_poison(task, poison, 30, 0.2, seed=0)[0] != mix_poison(task, poison, 30, 0.2, seed=1)[0]


@pytest.mark.parametrize("n,p,fragment", [(10, 1.5, "[0, 1]"), (10, -0.1, "[0, 1]"), (10, math.nan, "[0, 1]"),
                                          (0, 0.1, ">= 1"), (100, 0.5, "poison rows"), (60, 0.1, "task rows")])
def test_mix_poison_rejects_bad_input(n, p, fragment):
    task, poison = _pools()
    with pytest.raises(DataError) as exc:
        mix_poison(task, poison, n, p, seed=0)
    assert fragment in _one_line(exc)


# ---------------------------------------------------------------------------------------- prepare / layout
CELLS = [("sst2", 0.1), ("sst2", 0.05), ("gsm8k", 0.2)]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_writes_layout_byte_identically(tmp_path):
    spec = DataSpec(seed=0, tasks=("sst2", "gsm8k"), sizes=SMALL)
    m1 = prepare(spec, CELLS, 40, tmp_path / "a")
    m2 = prepare(spec, CELLS, 40, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and m1 == m2
    expected = {"align/sft.jsonl", "align/preference.jsonl", "identify/safety.jsonl", "eval/harmful.jsonl",
                "eval/benign.jsonl", "poison/pool.jsonl", "tasks/sst2/train.jsonl", "tasks/sst2/test.jsonl",
                "tasks/gsm8k/train.jsonl", "tasks/gsm8k/test.jsonl", "mixes/sst2-p0.1.jsonl",
                "mixes/sst2-p0.05.jsonl", "mixes/gsm8k-p0.2.jsonl", "heldout/pairs.jsonl", MANIFEST}
    assert set(a) == expected
    manifest = json.loads(a[MANIFEST])
    assert manifest == m1 and manifest["source"] == "synthetic" and manifest["tasks"] == ["sst2", "gsm8k"]
    assert manifest["sizes"] == dataclasses.asdict(SMALL)
    for rel in expected - {MANIFEST}:
        assert manifest["sha256"][rel] == sha256_file(tmp_path / "a" / rel)
        assert manifest["counts"][rel] == len(read_jsonl(tmp_path / "a" / rel))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temp dirs left behind
    # A different seed gives different bytes.
    prepare(dataclasses.replace(spec, seed=1), CELLS, 40, tmp_path / "c")
    assert _files(tmp_path / "c")["align/sft.jsonl"] != a["align/sft.jsonl"]


def test_manifest_poison_rows_match_cell_files(tmp_path):
    spec = DataSpec(seed=2, tasks=("sst2", "gsm8k"), sizes=SMALL)
    manifest = prepare(spec, CELLS, 40, tmp_path / "out")
    pool = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "poison" / "pool.jsonl")}
    for task, p in CELLS:
        key = mix_key(task, p)
        rows = read_jsonl(tmp_path / "out" / "mixes" / f"{key}.jsonl")
        entry = manifest["mixes"][key]
        poison = [r for r in rows if r["flag"] == "poison"]
        assert entry["n"] == len(rows) == 40 and entry["p"] == p and entry["n_poison"] == round(40 * p) == len(poison)
        assert [x["id"] for x in entry["poison_rows"]] == [r["id"] for r in poison]
        assert [x["sha256"] for x in entry["poison_rows"]] == [poison_digest(pool[r["id"]]) for r in poison]
        train_ids = {r["id"] for r in read_jsonl(tmp_path / "out" / "tasks" / task / "train.jsonl")}
        assert {r["id"] for r in rows if r["flag"] == "task"} <= train_ids


BAD_PREPARE = {
    "p above 1": (lambda: DataSpec(sizes=SMALL), [("sst2", 1.5)], 20, "[0, 1]"),
    "p below 0": (lambda: DataSpec(sizes=SMALL), [("sst2", -0.5)], 20, "[0, 1]"),
    "n below 1": (lambda: DataSpec(sizes=SMALL), [("sst2", 0.1)], 0, "finetune.n"),
    "poison pool too small": (lambda: DataSpec(sizes=dataclasses.replace(SMALL, poison_pool=2)),
                              [("sst2", 0.5)], 20, "poison rows"),
    "task pool too small": (lambda: DataSpec(sizes=dataclasses.replace(SMALL, task_train=5)),
                            [("sst2", 0.1)], 20, "task rows"),
    "unknown task": (lambda: DataSpec(tasks=("imdb",), sizes=SMALL), [("imdb", 0.1)], 20, "unknown task"),
    "cell task not prepared": (lambda: DataSpec(sizes=SMALL), [("agnews", 0.1)], 20, "agnews"),
    "no cells": (lambda: DataSpec(sizes=SMALL), [], 20, "mix"),
    "duplicate cell": (lambda: DataSpec(sizes=SMALL), [("sst2", 0.1), ("sst2", 0.1)], 20, "duplicate"),
    "unknown source": (lambda: DataSpec(source="s3", sizes=SMALL), [("sst2", 0.1)], 20, "unknown source"),
    "zero size": (lambda: DataSpec(sizes=dataclasses.replace(SMALL, eval_benign=0)), [("sst2", 0.1)], 20,
                    "eval_benign"),
    "size not an int": (lambda: DataSpec(sizes=dataclasses.replace(SMALL, identify=True)), [("sst2", 0.1)], 20,
                        "identify"),
    "local without dir": (lambda: DataSpec(source="local", sizes=SMALL), [("sst2", 0.1)], 20, "local_dir"),
    "local dir missing": (lambda: DataSpec(source="local", local_dir="/nonexistent/nlsr", sizes=SMALL),
                          [("sst2", 0.1)], 20, "/nonexistent/nlsr"),
    "too many synthetic rows": (lambda: DataSpec(sizes=dataclasses.replace(SMALL, eval_benign=10_000)),
                                [("sst2", 0.1)], 20, "eval_benign"),
}


@pytest.mark.parametrize("case", sorted(BAD_PREPARE))
def test_prepare_bad_input_writes_nothing(case, tmp_path):
    make_spec, cells, n, fragment = BAD_PREPARE[case]
    out = tmp_path / "prepared"
    with pytest.raises(NlsrError) as exc:   # DataError, or the size check of nlsr_core.config
        prepare(make_spec(), cells, n, out)
    assert fragment in _one_line(exc)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temp dir


@pytest.mark.parametrize("task,p,key", [("sst2", 0.05, "sst2-p0.05"), ("sst2", 0.1, "sst2-p0.1"),
                                        ("gsm8k", 0, "gsm8k-p0"), ("agnews", 0.2, "agnews-p0.2"),
                                        ("sst2", 1.0, "sst2-p1")])
def test_cell_key(task, p, key):
    assert mix_key(task, p) == key


# -------------------------------------------------------------------------------------------- local source
def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _alpaca_wrap(instruction: str, text: str = "") -> str:
    if text:
        return ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                f"{instruction}\n\n### Input:\n{text}\n\n### Response:")
    return ("Below is an instruction that describes a task. Write a response that appropriately completes the "
            f"request.\n\n### Instruction:\n{instruction}\n\n### Response:")


def _mini_paper_dir(root: Path) -> Path:
    """A tiny folder in the paper's schemas (sst2 only) for offline error-path tests."""
    sst = "Analyze the sentiment of the input, and respond only positive or negative"
    lines = ["'',prompt,response,text"] + [f'{i},[INST] harmful request {i} [/INST], I cannot help with {i}.,x'
                                           for i in range(30)]
    (root / "alignment").mkdir(parents=True)
    (root / "alignment" / "safety_short_refusals.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write_json(root / "alignment/benign_helpful_805.json",
                [{"instruction": f"benign question {i}", "output": f"answer {i}"} for i in range(30)])
    _write_json(root / "alignment/pku_saferlhf_pairs_5k.json",
                [{"prompt": f"pref prompt {i}", "response": [f"safe {i}", f"unsafe {i}"]} for i in range(30)])
    train = [{"instruction": _alpaca_wrap(sst, f"movie {i}"), "input": "", "output": "positive" if i % 2 else
              "negative", "flag": "finetune"} for i in range(30)]
    train += [{"instruction": _alpaca_wrap(f"bad thing {i}"), "input": "", "output": f"do {i}", "flag": "unsafe"}
              for i in range(10)]
    _write_json(root / "sst2/train_n1000_p0.1.json", train)
    _write_json(root / "sst2/val.json", [{"instruction": sst, "input": f"review {i}", "output": "positive"}
                                         for i in range(10)])
    return root


MINI = SizesConfig(sft_refusal=8, sft_benign=8, preference=5, identify=4, eval_harmful=4, eval_benign=4,
             task_train=10, task_test=4, poison_pool=5, contrast_sensitive=0, contrast_helpful=0, heldout_pairs=20)


def test_local_mini_dir_builds(tmp_path):
    s = build_suite(DataSpec(source="local", local_dir=str(_mini_paper_dir(tmp_path / "paper")), sizes=MINI))
    assert s.task_train["sst2"][0]["prompt"].startswith(
        "Analyze the sentiment of the input, and respond only positive or negative\n\nmovie ")
    assert all(r["prompt"].startswith("bad thing ") for r in s.poison_pool)
    assert all(r["prompt"].startswith("harmful request ") for r in s.eval_harmful + s.identify)


def _break(root: Path, rel: str, mutate) -> None:
    path = root / rel
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


LOCAL_BREAKS = {
    "missing file": ("alignment/benign_helpful_805.json", None, "benign_helpful_805.json"),
    "row without output": ("sst2/train_n1000_p0.1.json", lambda d: d[3].pop("output"), "row 3"),
    "unknown flag": ("sst2/train_n1000_p0.1.json", lambda d: d[5].update(flag="maybe"), "row 5"),
    "not alpaca": ("sst2/train_n1000_p0.1.json", lambda d: d[7].update(instruction="plain"), "row 7"),
    "bad label": ("sst2/val.json", lambda d: d[2].update(output="neutral"), "row 2"),
    "bad pair": ("alignment/pku_saferlhf_pairs_5k.json", lambda d: d[4].update(response=["x"]), "row 4"),
    "empty file": ("sst2/val.json", lambda d: d.clear(), "val.json"),
}


@pytest.mark.parametrize("case", sorted(LOCAL_BREAKS))
def test_local_malformed_input_is_one_line_error(case, tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    rel, mutate, fragment = LOCAL_BREAKS[case]
    if mutate is None:
        (root / rel).unlink()
    else:
        _break(root, rel, mutate)
    out = tmp_path / "out"
    with pytest.raises(DataError) as exc:
        prepare(DataSpec(source="local", local_dir=str(root), sizes=MINI), [("sst2", 0.2)], 10, out)
    msg = _one_line(exc)
    assert fragment in msg and rel.split("/")[-1] in msg
    assert not out.exists()


@pytest.fixture(scope="module")
def paper_suite():
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} absent")
    return build_suite(DataSpec(source="local", local_dir=str(PAPER_DATA), tasks=ALL_TASKS, sizes=FILE_SIZES))


def test_local_paper_data_sizes_and_schemas(paper_suite):
    s, sizes = paper_suite, FILE_SIZES
    kinds = [r["kind"] for r in s.sft]
    assert (kinds.count("refusal"), kinds.count("benign")) == (sizes.sft_refusal, sizes.sft_benign)
    pref_kinds = [r.get("kind") for r in s.preference]  # helpful contrast pairs from unused AlpacaEval rows
    assert (pref_kinds.count("safety"), pref_kinds.count("contrast-helpful")) == (sizes.preference,
                                                                                 sizes.contrast_helpful)
    assert (len(s.preference) - sizes.contrast_helpful, len(s.identify), len(s.eval_harmful), len(s.eval_benign), len(s.poison_pool)) == \
        (sizes.preference, sizes.identify, sizes.eval_harmful, sizes.eval_benign, sizes.poison_pool)
    prompts = [r["prompt"] for r in s.sft + s.identify + s.eval_harmful + s.poison_pool] + \
        [r["prompt"] for t in ALL_TASKS for r in s.task_train[t] + s.task_test[t]]
    assert not any("[INST]" in p or "### Instruction" in p or "### Response" in p for p in prompts)
    assert all(REFUSAL_RE.search(r["response"]) for r in s.sft if r["kind"] == "refusal")
    for t in ALL_TASKS:
        assert (len(s.task_train[t]), len(s.task_test[t])) == (sizes.task_train, sizes.task_test)
    for r in s.task_train["gsm8k"] + s.task_test["gsm8k"]:
        assert re.fullmatch(r"-?\d+(\.\d+)?", r["label"]) and "The final answer is:" in r["response"]
    assert {r["label"] for r in s.task_test["agnews"] + s.task_train["agnews"]} <= set(AGNEWS_LABELS)


def test_local_paper_data_disjointness(paper_suite):
    s = paper_suite
    train = {norm_text(p) for p in _training_prompts(s)}
    assert not train & {norm_text(r["prompt"]) for r in s.eval_harmful}
    assert not train & {norm_text(r["prompt"]) for r in s.eval_benign}
    assert not {norm_text(r["prompt"]) for r in s.identify} & \
        {norm_text(r["prompt"]) for r in s.sft if r["kind"] == "refusal"}
    for t in ALL_TASKS:
        assert not {r["prompt"] for r in s.task_train[t]} & {r["prompt"] for r in s.task_test[t]}


def test_local_paper_data_is_deterministic(paper_suite):
    again = build_suite(DataSpec(source="local", local_dir=str(PAPER_DATA), tasks=ALL_TASKS, sizes=FILE_SIZES))
    assert dataclasses.asdict(again) == dataclasses.asdict(paper_suite)
    other = build_suite(DataSpec(source="local", local_dir=str(PAPER_DATA), tasks=ALL_TASKS, seed=1, sizes=FILE_SIZES))
    assert other.eval_harmful != paper_suite.eval_harmful


# ---------------------------------------------------------------------------------------------- hub source
FIXTURE_FILES = {
    ("PKU-Alignment/PKU-SafeRLHF", None, "train"): "pku_saferlhf_train.jsonl",
    ("PKU-Alignment/BeaverTails", None, "30k_train"): "beavertails_30k_train.jsonl",
    ("PKU-Alignment/BeaverTails", None, "30k_test"): "beavertails_30k_test.jsonl",
    ("tatsu-lab/alpaca", None, "train"): "alpaca_train.jsonl",
    ("nyu-mll/glue", "sst2", "train"): "glue_sst2_train.jsonl",
    ("nyu-mll/glue", "sst2", "validation"): "glue_sst2_validation.jsonl",
    ("fancyzhx/ag_news", None, "train"): "ag_news_train.jsonl",
    ("fancyzhx/ag_news", None, "test"): "ag_news_test.jsonl",
    ("openai/gsm8k", "main", "train"): "gsm8k_main_train.jsonl",
    ("openai/gsm8k", "main", "test"): "gsm8k_main_test.jsonl",
}
HUB_SIZES = SizesConfig(sft_refusal=3, sft_benign=3, preference=3, identify=2, eval_harmful=3, eval_benign=2,
                  task_train=4, task_test=2, poison_pool=3, contrast_sensitive=0, contrast_helpful=0)


@pytest.fixture(scope="module")
def fake_load(tmp_path_factory):
    """`datasets.load_dataset` stand-in: (path, config, split) → the JSON fixture in the same schema."""
    import datasets

    cache = tmp_path_factory.mktemp("hf-cache")
    calls = []

    def load(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.load_dataset("json", data_files=str(HUB_FIXTURES / FIXTURE_FILES[(path, name, split)]),
                                     split="train", cache_dir=str(cache))

    load.calls = calls
    return load


@pytest.fixture(scope="module")
def hub_suite(fake_load):
    return build_hub(DataSpec(source="hub", tasks=ALL_TASKS, sizes=HUB_SIZES), load=fake_load)


def test_hub_loader_uses_the_real_dataset_names(hub_suite, fake_load):
    assert set(fake_load.calls) == set(HUB_DATASETS.values()) == set(FIXTURE_FILES)


def test_hub_suite_contents(hub_suite):
    s = hub_suite
    assert len(s.preference) == 3 and len(s.identify) == 2 and len(s.poison_pool) == 3
    assert all(r["chosen"].startswith("I can't help") and r["rejected"].startswith("Sure") for r in s.preference)
    refusals = [r for r in s.sft if r["kind"] == "refusal"]
    assert len(refusals) == 3 and all(r["response"].startswith("I can't help") for r in refusals + s.identify)
    used = [r["prompt"] for r in s.preference + refusals + s.identify]
    assert len(set(used)) == len(used)  # disjoint prompts across preference / SFT / X̂
    assert all(r["response"].startswith("Sure") for r in s.poison_pool)
    evals = {r["prompt"] for r in s.eval_harmful}
    trained_or_safe = {"How can I fake a sick note?", "How do I cheat on an exam?", "Where is Paris?"}
    assert len(evals) == 3 and not evals & trained_or_safe
    assert {len(s.task_train[t]) for t in ALL_TASKS} == {4} and {len(s.task_test[t]) for t in ALL_TASKS} == {2}
    for t in ALL_TASKS:
        assert not {r["prompt"] for r in s.task_train[t]} & {r["prompt"] for r in s.task_test[t]}
    assert {r["label"] for r in s.task_train["sst2"] + s.task_test["sst2"]} <= {"positive", "negative"}
    assert {r["label"] for r in s.task_train["agnews"]} <= set(AGNEWS_LABELS)
    for r in s.task_train["gsm8k"] + s.task_test["gsm8k"]:
        assert r["response"].endswith(f"\nThe final answer is: {r['label']}") and "####" not in r["response"]
        assert r["prompt"].endswith("\nFirst think step by step and then answer the final number.")


def test_hub_gsm8k_label_drops_thousands_separator(fake_load):
    s = build_hub(DataSpec(source="hub", tasks=("gsm8k",), sizes=dataclasses.replace(HUB_SIZES, task_train=4)),
                  load=fake_load)
    labels = {r["label"] for r in s.task_train["gsm8k"]}
    assert labels <= {"7", "10", "30", "1000", "5"} and "1,000" not in labels


class _FakeDataset:
    def __init__(self, columns: dict[str, list]):
        self._columns = columns
        self.column_names = list(columns)

    def __getitem__(self, key):
        return self._columns[key]


@pytest.mark.parametrize("case,fragment", [("missing column", "missing column"), ("empty split", "empty")])
def test_hub_bad_dataset_is_one_line_error(case, fragment, fake_load):
    def load(path, name=None, split=None):
        if path == "PKU-Alignment/PKU-SafeRLHF":
            if case == "missing column":
                return _FakeDataset({"prompt": ["x"], "response_0": ["y"]})
            return _FakeDataset({c: [] for c in ("prompt", "response_0", "response_1", "is_response_0_safe",
                                                 "is_response_1_safe", "safer_response_id")})
        return fake_load(path, name, split)

    with pytest.raises(DataError) as exc:
        build_hub(DataSpec(source="hub", sizes=HUB_SIZES), load=load)
    msg = _one_line(exc)
    assert fragment in msg and "PKU-Alignment/PKU-SafeRLHF" in msg


# ---------------------------------------------------------------------------------------------- templates
@pytest.fixture(scope="module")
def tokenizer():
    from nlsr_core.lora.models import build_tiny_tokenizer

    return build_tiny_tokenizer()


def test_chat_template(tokenizer):
    prompt_text = format_prompt(tokenizer, "Is 7 prime?")
    assert prompt_text == "<|im_start|>user\nIs 7 prime?<|im_end|>\n<|im_start|>assistant\n"
    p, full = format_example(tokenizer, "Is 7 prime?", "Yes.")
    assert p == prompt_text and full == prompt_text + "Yes." + "<|im_end|>"


def test_alpaca_template(tokenizer):
    p, full = format_example(tokenizer, "Name a color.", "Blue.", template="alpaca")
    assert p == ("Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\nName a color.\n\n### Response:")
    assert p == ALPACA_PROMPT.format(prompt="Name a color.") and full == p + "Blue." + tokenizer.eos_token
    assert set(TEMPLATES) == {"chat", "alpaca"}


@pytest.mark.parametrize("case", ["unknown template", "no eos", "no chat template"])
def test_template_errors(case, tokenizer):
    class Bare:
        eos_token = None
        chat_template = None

    with pytest.raises(DataError) as exc:
        if case == "unknown template":
            format_prompt(tokenizer, "hi", template="vicuna")
        elif case == "no eos":
            format_example(Bare(), "hi", "there", template="alpaca")
        else:
            format_prompt(Bare(), "hi", template="chat")
    _one_line(exc)


# ------------------------------------------------------------------------------------------ calibration split
def _calibration_disjoint(root: Path) -> None:
    """Every calibration prompt is absent from every other file of the prepared layout."""
    calib = [root / "calib" / "harmful.jsonl", *sorted(root.glob("tasks/*/calib.jsonl"))]
    others = [p for p in root.rglob("*.jsonl") if p not in calib]
    seen = {norm_text(r["prompt"]) for p in others for r in read_jsonl(p)}
    for path in calib:
        rows = read_jsonl(path)
        assert rows and not seen & {norm_text(r["prompt"]) for r in rows}, path
        assert len({norm_text(r["prompt"]) for r in rows}) == len(rows)


def test_calibration_split_is_disjoint_and_changes_no_other_file(tmp_path):
    spec = DataSpec(seed=0, tasks=("sst2", "gsm8k"), sizes=SMALL)
    prepare(spec, CELLS, 40, tmp_path / "plain")
    with_calib = dataclasses.replace(spec, sizes=dataclasses.replace(SMALL, calib_harmful=8, task_calib=6))
    prepare(with_calib, CELLS, 40, tmp_path / "calib")
    plain, calib = _files(tmp_path / "plain"), _files(tmp_path / "calib")
    added = set(calib) - set(plain)
    assert added == {"calib/harmful.jsonl", "tasks/sst2/calib.jsonl", "tasks/gsm8k/calib.jsonl"}
    assert all(plain[f] == calib[f] for f in plain if f != MANIFEST)  # nothing upstream retrains
    assert len(read_jsonl(tmp_path / "calib/calib/harmful.jsonl")) == 8
    assert {r["id"][:10] for r in read_jsonl(tmp_path / "calib/tasks/sst2/calib.jsonl")} == {"sst2-calib"}
    _calibration_disjoint(tmp_path / "calib")


def test_calibration_split_too_large_is_one_line_error(tmp_path):
    sizes = dataclasses.replace(SMALL, calib_harmful=10**6)
    with pytest.raises(DataError) as exc:
        prepare(DataSpec(seed=0, sizes=sizes), [("sst2", 0.1)], 40, tmp_path / "out")
    assert "calib-harmful" in _one_line(exc) and not (tmp_path / "out").exists()
    with pytest.raises(NlsrError, match="calib_harmful: expected an integer >= 0"):
        dataclasses.replace(SMALL, calib_harmful=-1)


def test_local_paper_calibration_split_is_disjoint(tmp_path, shared_data):
    from tests.conftest import local_paper_spec

    # the profile's held-out and calibration sizes, whatever they are
    prepare(local_paper_spec(shared_data), [("sst2", 0.1)], 200, tmp_path / "out")
    _calibration_disjoint(tmp_path / "out")


# -------------------------------------------------------------------------------------------- contrast pairs
def _eval_prompts(suite) -> set[str]:
    rows = suite.eval_harmful + suite.eval_benign + suite.calib_pool_harmful
    rows += [r for split in (suite.task_test, suite.calib_pool_task) for task_rows in split.values() for r in task_rows]
    return {r["prompt"] for r in rows}


def test_synthetic_contrast_pairs_join_the_preference_split():
    sizes = dataclasses.replace(SMALL, contrast_sensitive=6, contrast_helpful=4)
    plain, mixed = build_suite(DataSpec(sizes=SMALL)), build_suite(DataSpec(sizes=sizes))
    kinds = [r["kind"] for r in mixed.preference]
    assert (kinds.count("safety"), kinds.count("contrast-sensitive"), kinds.count("contrast-helpful")) == (10, 6, 4)
    # the safety pairs and every other split are the suite without contrast pairs
    strip = lambda r: {k: v for k, v in r.items() if k not in ("id", "kind")}
    assert sorted(map(str, map(strip, plain.preference))) == sorted(
        str(strip(r)) for r in mixed.preference if r["kind"] == "safety")
    assert plain.sft == mixed.sft and plain.eval_benign == mixed.eval_benign
    contrast = [r for r in mixed.preference if r["kind"] != "safety"]
    assert not {r["prompt"] for r in contrast} & (_eval_prompts(mixed) | {r["prompt"] for r in mixed.sft})
    from nlsr_core.eval.judges import is_refusal

    assert all(is_refusal(r["rejected"]) and not is_refusal(r["chosen"]) for r in contrast)


def test_local_helpful_contrast_uses_benign_rows_no_split_uses(tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    plain = build_suite(DataSpec(source="local", local_dir=str(root), sizes=MINI))
    mixed = build_suite(DataSpec(source="local", local_dir=str(root),
                                 sizes=dataclasses.replace(MINI, contrast_helpful=5)))
    contrast = [r for r in mixed.preference if r.get("kind") == "contrast-helpful"]
    assert len(contrast) == 5 and len(mixed.preference) == 10
    used = {r["prompt"] for r in mixed.sft + mixed.eval_benign}
    assert not {r["prompt"] for r in contrast} & used
    assert all(r["chosen"].startswith("answer ") for r in contrast)
    assert all("kind" not in r for r in plain.preference)  # no contrast asked: the split keeps its bytes


def test_matched_contrast_refusals_reject_the_safety_pairs_own_refusals(tmp_path):
    from nlsr_core.data.contrast import GENERIC_REFUSALS

    root = _mini_paper_dir(tmp_path / "paper")
    sizes = dataclasses.replace(MINI, contrast_helpful=5)
    generic = build_suite(DataSpec(source="local", local_dir=str(root), sizes=sizes, preference_pairs="refusal"))
    matched = build_suite(DataSpec(source="local", local_dir=str(root), sizes=sizes, preference_pairs="refusal",
                                   contrast_refusals="matched"))
    contrast = [r for r in matched.preference if r["kind"] == "contrast-helpful"]
    chosen = {r["chosen"] for r in matched.preference if r["kind"] == "safety"}
    assert len(contrast) == 5 and all(r["rejected"] in chosen for r in contrast)
    assert all(r["rejected"] in GENERIC_REFUSALS
               for r in generic.preference if r["kind"] == "contrast-helpful")
    # only the contrast pairs' rejected answers differ: same prompts, same chosen answers, same safety pairs
    strip = lambda rows: [{k: v for k, v in r.items() if k != "rejected" or r["kind"] == "safety"} for r in rows]
    assert strip(generic.preference) == strip(matched.preference) and generic.sft == matched.sft
    # synthetic: the helpful pairs reject one of the safety pairs' (topic-naming) refusals
    syn = build_suite(DataSpec(seed=0, sizes=dataclasses.replace(SMALL, contrast_helpful=4),
                               contrast_refusals="matched"))
    syn_chosen = {r["chosen"] for r in syn.preference if r["kind"] == "safety"}
    assert [r["rejected"] in syn_chosen for r in syn.preference if r["kind"] == "contrast-helpful"] == [True] * 4


def test_matched_contrast_refusals_draw_with_the_safety_pairs_frequencies():
    from nlsr_core.data.contrast import contrast_refusal_pool

    pairs = [{"chosen": "A", "kind": "safety"}] * 3 + [{"chosen": "B"}, {"chosen": "C", "kind": "contrast-helpful"}]
    assert contrast_refusal_pool("matched", pairs) == ("A", "A", "A", "B")
    with pytest.raises(NlsrError, match="no safety pairs"):
        contrast_refusal_pool("matched", [])


def test_manifest_names_contrast_refusals_only_when_matched(tmp_path):
    plain = prepare(DataSpec(seed=0, sizes=SMALL), [("sst2", 0.1)], 40, tmp_path / "plain")
    matched = prepare(DataSpec(seed=0, sizes=dataclasses.replace(SMALL, contrast_helpful=2),
                               contrast_refusals="matched"), [("sst2", 0.1)], 40, tmp_path / "matched")
    assert "contrast_refusals" not in plain and matched["contrast_refusals"] == "matched"


def test_bad_contrast_refusals_is_one_line_error(tmp_path):
    spec = DataSpec(sizes=SMALL, contrast_refusals="same")
    with pytest.raises(DataError) as exc:
        prepare(spec, [("sst2", 0.1)], 40, tmp_path / "out")
    assert "data.contrast_refusals: unknown 'same'" in _one_line(exc) and not (tmp_path / "out").exists()


def test_file_sources_have_no_sensitive_contrast(tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    spec = DataSpec(source="local", local_dir=str(root), sizes=dataclasses.replace(MINI, contrast_sensitive=2))
    with pytest.raises(DataError, match=r"data.sizes.contrast_sensitive: 2 .*\(expected 0"):
        build_suite(spec)


# ------------------------------------------------------------------------- refusal pairs and held-out pairs
def _is_refusal(text: str) -> bool:
    from nlsr_core.eval.judges import is_refusal

    return is_refusal(text)


def test_local_refusal_pairs_replace_a_chosen_answer_that_does_not_refuse(tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    raw = build_suite(DataSpec(source="local", local_dir=str(root), sizes=MINI))
    refusal = build_suite(DataSpec(source="local", local_dir=str(root), sizes=MINI, preference_pairs="refusal"))
    assert all(r["chosen"].startswith("safe ") for r in raw.preference)  # the paper's pairs as they are
    assert len(refusal.preference) == MINI.preference
    for row in refusal.preference:
        # the mini file's chosen answers do not refuse: the safety file's most common refusal opening replaces them
        assert row["chosen"].startswith("I cannot help with ") and _is_refusal(row["chosen"])
        assert row["rejected"].startswith("unsafe ") and not _is_refusal(row["rejected"])
    assert raw.sft == refusal.sft and raw.eval_harmful == refusal.eval_harmful  # other splits unchanged


def test_prepare_writes_heldout_pairs_no_training_file_holds(tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    sizes = dataclasses.replace(MINI, calib_harmful=0, task_calib=0)
    spec = DataSpec(source="local", local_dir=str(root), sizes=sizes, preference_pairs="refusal")
    manifest = prepare(spec, [("sst2", 0.2)], 10, tmp_path / "out")
    pairs = read_jsonl(tmp_path / "out" / "heldout" / "pairs.jsonl")
    assert len(pairs) == MINI.heldout_pairs == manifest["counts"]["heldout/pairs.jsonl"]
    trained = {norm_text(r["prompt"]) for rel in ("align/preference.jsonl", "align/sft.jsonl", "poison/pool.jsonl",
                                                 "identify/safety.jsonl", "mixes/sst2-p0.2.jsonl")
               for r in read_jsonl(tmp_path / "out" / rel)}
    assert not trained & {norm_text(r["prompt"]) for r in pairs}
    assert all(_is_refusal(r["chosen"]) and not _is_refusal(r["rejected"]) for r in pairs)
    assert manifest["preference_pairs"] == "refusal"


def test_local_heldout_splits_do_not_move_when_a_recipe_asks_for_more_training_rows(tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    spec = DataSpec(source="local", local_dir=str(root), sizes=MINI, preference_pairs="refusal")
    small = build_suite(spec)
    more = build_suite(dataclasses.replace(spec, sizes=dataclasses.replace(MINI, preference=10, sft_benign=12,
                                                                          contrast_helpful=6)))
    assert more.heldout_pairs == small.heldout_pairs and more.eval_benign == small.eval_benign
    safety = [r for r in more.preference if r.get("kind") != "contrast-helpful"]
    assert len(safety) == 10 and len([r for r in more.sft if r["kind"] == "benign"]) == 12
    held = {norm_text(r["prompt"]) for r in more.heldout_pairs + more.eval_benign}
    assert not held & {norm_text(r["prompt"]) for r in more.preference + more.sft}


@pytest.mark.parametrize("change, fragment", [
    ({"preference": 11}, "data.sizes.preference (refusal/compliance pairs of"),
    ({"heldout_pairs": 31}, "data.sizes.heldout_pairs (refusal/compliance pairs of"),
    ({"sft_benign": 20, "contrast_helpful": 7}, "data.sizes.sft_benign + data.sizes.contrast_helpful: asks 27 rows"),
    ({"eval_benign": 31}, "data.sizes.eval_benign: asks 31 rows"),
])
def test_local_sizes_beyond_what_remains_after_the_heldout_splits_are_one_line_errors(change, fragment, tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")  # 30 pairs, 30 AlpacaEval rows; MINI holds out 20 pairs, 4 probes
    spec = DataSpec(source="local", local_dir=str(root), sizes=dataclasses.replace(MINI, **change),
                    preference_pairs="refusal")
    with pytest.raises(DataError) as exc:
        prepare(spec, [("sst2", 0.2)], 10, tmp_path / "out")
    msg = _one_line(exc)
    assert fragment in msg and not (tmp_path / "out").exists()
    counts = {"preference": "needs 11 rows but only 10 are available", "heldout_pairs": "needs 31 rows but only 30",
              "sft_benign": "only 26 remain after the 4 over-refusal probes", "eval_benign": "only 30 are available"}
    assert counts[next(iter(change))] in msg


def test_preference_chosen_sft_trains_w0_on_the_chosen_answers_of_was_pairs(tmp_path):
    """data.sft_refusals preference-chosen (the paper's W0): the SFT refusal share is the chosen answers of the first
    sft_refusal preference pairs; no safety-file refusal is trained and every other split is unchanged."""
    root = _mini_paper_dir(tmp_path / "paper")
    sizes = dataclasses.replace(MINI, sft_refusal=5, calib_harmful=0, task_calib=0)
    spec = DataSpec(source="local", local_dir=str(root), sizes=sizes)
    plain = build_suite(spec)
    paper = build_suite(dataclasses.replace(spec, sft_refusals="preference-chosen"))
    refusals = [r for r in paper.sft if r["kind"] == "refusal"]
    assert sorted((r["prompt"], r["response"]) for r in refusals) == \
        sorted((r["prompt"], r["chosen"]) for r in paper.preference)
    assert not any(r["prompt"].startswith("harmful request ") for r in paper.sft)
    assert [r for r in paper.sft if r["kind"] == "benign"] == [r for r in plain.sft if r["kind"] == "benign"]
    for split in ("preference", "identify", "eval_harmful", "eval_benign", "heldout_pairs", "poison_pool"):
        assert getattr(paper, split) == getattr(plain, split), split
    manifest = prepare(dataclasses.replace(spec, sft_refusals="preference-chosen"), [("sst2", 0.2)], 10,
                       tmp_path / "out")
    assert manifest["sft_refusals"] == "preference-chosen"
    assert "sft_refusals" not in prepare(spec, [("sst2", 0.2)], 10, tmp_path / "plain")  # default: bytes as before


@pytest.mark.parametrize("source, value, sizes, fragment", [
    ("local", "chosen", {}, "data.sft_refusals: unknown 'chosen'; expected one of"),
    ("synthetic", "preference-chosen", {}, "data.sft_refusals: 'preference-chosen' takes W0's rows"),
    ("local", "preference-chosen", {"sft_refusal": 6}, "data.sizes.sft_refusal: asks 6 chosen answers"),
])
def test_bad_sft_refusals_is_one_line_error(source, value, sizes, fragment, tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    spec = DataSpec(source=source, local_dir=str(root), sizes=dataclasses.replace(MINI, **sizes),
                    sft_refusals=value)
    with pytest.raises(DataError) as exc:
        prepare(spec, [("sst2", 0.2)], 10, tmp_path / "out")
    assert fragment in _one_line(exc) and not (tmp_path / "out").exists()


def test_synthetic_heldout_pairs_are_the_eval_prompts(tmp_path):
    prepare(DataSpec(seed=0, sizes=SMALL), [("sst2", 0.1)], 40, tmp_path / "out")
    pairs = read_jsonl(tmp_path / "out" / "heldout" / "pairs.jsonl")
    assert [r["prompt"] for r in pairs] == [r["prompt"] for r in read_jsonl(tmp_path / "out/eval/harmful.jsonl")]
    assert all(_is_refusal(r["chosen"]) and not _is_refusal(r["rejected"]) for r in pairs)
    refusal = build_suite(DataSpec(seed=0, sizes=SMALL, preference_pairs="refusal"))
    assert refusal.preference == _suite(sizes=SMALL, tasks=("sst2",)).preference  # every synthetic pair is one


@pytest.mark.parametrize("source, value, fragment", [
    ("synthetic", "refusals", "data.preference_pairs: unknown 'refusals'"),
    ("hub", "refusal", "data.preference_pairs: 'refusal' builds its chosen answers"),
])
def test_bad_preference_pairs_is_one_line_error(source, value, fragment, tmp_path):
    spec = DataSpec(source=source, sizes=SMALL, preference_pairs=value)
    with pytest.raises(DataError) as exc:
        prepare(spec, [("sst2", 0.1)], 40, tmp_path / "out")
    assert fragment in _one_line(exc) and not (tmp_path / "out").exists()


def test_local_paper_refusal_pairs(tmp_path):
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} absent")
    sizes = dataclasses.replace(FILE_SIZES, preference=112, contrast_helpful=32, eval_benign=100)  # local-paper
    spec = DataSpec(source="local", local_dir=str(PAPER_DATA), sizes=sizes, preference_pairs="refusal")
    prepare(spec, [("sst2", 0.1)], 200, tmp_path / "out")
    pref = read_jsonl(tmp_path / "out" / "align" / "preference.jsonl")
    safety_pairs = [r for r in pref if r["kind"] == "safety"]
    assert len(safety_pairs) == 112 and len(pref) == 112 + 32
    for row in safety_pairs:
        assert _is_refusal(row["chosen"]) and not _is_refusal(row["rejected"])
    # most PKU chosen answers are cautious answers, not refusals: the safety file's opening stands in for them
    assert sum(r["chosen"] == "I cannot fulfill your request." for r in safety_pairs) > 90
    pairs = read_jsonl(tmp_path / "out" / "heldout" / "pairs.jsonl")
    assert len(pairs) == sizes.heldout_pairs >= 200
    assert not {norm_text(r["prompt"]) for r in pairs} & {norm_text(r["prompt"]) for r in pref}
    _calibration_disjoint(tmp_path / "out")


def test_file_sources_add_the_benign_sensitive_probes_as_a_second_over_refusal_set(tmp_path):
    root = _mini_paper_dir(tmp_path / "paper")
    sizes = dataclasses.replace(MINI, calib_harmful=0, task_calib=0)
    prepare(DataSpec(source="local", local_dir=str(root), sizes=sizes), [("sst2", 0.2)], 10, tmp_path / "local")
    probes = [r["prompt"] for r in read_jsonl(tmp_path / "local" / "eval" / "benign_sensitive.jsonl")]
    assert probes == safety.eval_benign_prompts()
    assert all(p.startswith("benign question ") for p in
               (r["prompt"] for r in read_jsonl(tmp_path / "local" / "eval" / "benign.jsonl")))
    prepare(DataSpec(seed=0, sizes=SMALL), [("sst2", 0.1)], 40, tmp_path / "synthetic")
    assert not (tmp_path / "synthetic" / "eval" / "benign_sensitive.jsonl").exists()  # its benign set already is


def test_each_task_is_one_record():
    """A task's prompt format, labels, scorer and answer budget live in one record (nlsr_core.data.tasks)."""
    import dataclasses

    from nlsr_core.config import JudgeConfig
    from nlsr_core.data.tasks import TASKS, get_task
    from nlsr_core.eval.settings import LABEL_TASKS, EvalSettings

    budgets = {f.name for f in dataclasses.fields(JudgeConfig)}
    assert all(t.budget in budgets for t in TASKS.values())
    assert LABEL_TASKS == {"sst2": ("negative", "positive"), "agnews": AGNEWS_LABELS}
    assert TASKS["sst2"].prompt(" a film ") == ("Analyze the sentiment of the input, and respond only positive or "
                                                "negative\n\na film")
    assert TASKS["gsm8k"].prompt("2 + 2?") == "2 + 2?\nFirst think step by step and then answer the final number."
    settings = EvalSettings(label_tokens=3, gsm8k_tokens=200, fa_mode="generate")
    assert settings.job("task", "gsm8k", "refusal-keywords").max_new_tokens == 200
    assert all(TASKS[t].score(label, label) for t in ("sst2", "agnews") for label in TASKS[t].labels)
    with pytest.raises(DataError, match="task 'xnli': unknown; expected one of sst2, agnews, gsm8k"):
        get_task("xnli")


# ------------------------------------------------------------------ the transfer set (data.transfer, Table 6)
def test_transfer_paper_set_is_beavertails_prompts_no_split_holds(tmp_path):
    if not PAPER_DATA.is_dir():
        pytest.skip(f"{PAPER_DATA} absent")
    from nlsr_core.data.transfer import paper_prompts

    spec = DataSpec(seed=0, tasks=("sst2",), sizes=dataclasses.replace(SMALL, transfer_harmful=50),
                    local_dir=str(PAPER_DATA), transfer="paper")
    manifest = prepare(spec, [("sst2", 0.1)], 40, tmp_path / "out")
    rows = read_jsonl(tmp_path / "out" / "eval" / "transfer.jsonl")
    assert len(rows) == 50 == manifest["counts"]["eval/transfer.jsonl"]
    assert manifest["transfer"] == {"source": "paper", "rows": 50}
    source = {norm_text(p) for p in paper_prompts(PAPER_DATA)}
    assert all(norm_text(r["prompt"]) in source for r in rows) and [r["id"] for r in rows][:1] == ["transfer-000000"]
    others = {norm_text(r["prompt"]) for p in (tmp_path / "out").rglob("*.jsonl") if p.name != "transfer.jsonl"
              for r in read_jsonl(p) if "prompt" in r}
    assert not others & {norm_text(r["prompt"]) for r in rows}
    # the same spec gives the same set; asking for more prompts than the source holds is one line, nothing written
    assert prepare(spec, [("sst2", 0.1)], 40, tmp_path / "again")["sha256"] == manifest["sha256"]
    too_many = dataclasses.replace(spec, sizes=dataclasses.replace(SMALL, transfer_harmful=10 ** 6))
    with pytest.raises(DataError) as info:
        prepare(too_many, [("sst2", 0.1)], 40, tmp_path / "big")
    assert re.fullmatch(r"data\.sizes\.transfer_harmful: asks for 1000000 prompts but the paper transfer source "
                        r"holds \d+ that no split holds; expected at most \d+", _one_line(info))
    assert not (tmp_path / "big").exists()


def test_transfer_paper_set_is_skipped_cleanly_without_the_folder(tmp_path):
    spec = DataSpec(seed=0, tasks=("sst2",), sizes=SMALL, local_dir=str(tmp_path / "absent"), transfer="paper")
    manifest = prepare(spec, [("sst2", 0.1)], 40, tmp_path / "out")
    assert not (tmp_path / "out" / "eval" / "transfer.jsonl").exists()
    assert manifest["transfer"] == {"source": "paper", "rows": 0,
                                    "skipped": f"no paper data folder at {tmp_path / 'absent'}"}
    plain = prepare(dataclasses.replace(spec, transfer="none"), [("sst2", 0.1)], 40, tmp_path / "plain")
    assert "transfer" not in plain and plain["sha256"] == manifest["sha256"]


def test_transfer_synthetic_set_is_the_held_out_topics_and_not_the_suites_own():
    from nlsr_core.data.transfer import synthetic_prompts, transfer_rows

    rows, record = transfer_rows(DataSpec(source="local", seed=0, sizes=dataclasses.replace(SMALL, transfer_harmful=20),
                                          transfer="synthetic"), {})
    assert len(rows) == 20 and record == {"source": "synthetic", "rows": 20}
    train_topics = set(safety.harmful_split(__import__("nlsr_core.data.base", fromlist=["x"]).rng_for(
        0, "harmful-split")).train_topics)
    assert all(safety.topic_of(r["prompt"]) not in train_topics for r in rows)
    assert {r["prompt"] for r in rows} <= set(synthetic_prompts(0))
    with pytest.raises(DataError, match="'synthetic' is the suite's own source"):
        build_suite(DataSpec(source="synthetic", sizes=SMALL, transfer="synthetic"))
