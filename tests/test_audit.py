"""`nlsr audit PATH`: the chain back to the base model, from lineage files alone."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from nlsr_core.io.fileio import write_json
from nlsr_core.io.lineage import input_record
from nlsr_core.method.neurons import save_masks
from tests.conftest import TINY_MODEL, random_adapter, random_masks, write_adapter

WEAK, ALIGNED = "adapters/aligned/dpo/weak", "adapters/aligned/dpo/aligned"
REFERENCE, FINETUNED = "adapters/reference/dpo", "adapters/finetuned/sst2-p0.1-dpo"
CELL, MASKS = "data/prepared/mixes/sst2-p0.1.jsonl", "identify/lowrank"


def lineage(stage: str, inputs: list[tuple[str, str]], params: dict, **extra) -> dict:
    return {"stage": stage, "code_version": "0", "params": params, "model": TINY_MODEL,
            "inputs": [input_record(Path(p), role) for role, p in inputs], **extra}


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A pipeline's artifacts under tmp_path (relative paths recorded, as stages run from the repo root)."""
    monkeypatch.chdir(tmp_path)
    for f in ("data/prepared/align/sft.jsonl", "data/prepared/align/preference.jsonl", CELL,
              "data/prepared/identify/safety.jsonl"):
        Path(f).parent.mkdir(parents=True, exist_ok=True)
        Path(f).write_text('{"id": "x"}\n')
    steps = [
        (WEAK, "align", [("data", "data/prepared/align/sft.jsonl")], {"method": "sft"}, {"weak": None}),
        (ALIGNED, "align", [("weak", WEAK), ("data", "data/prepared/align/preference.jsonl")], {"method": "dpo"},
         {"weak": WEAK}),
        (REFERENCE, "amplify", [("aligned", ALIGNED), ("weak", WEAK)], {"beta": 0.9}, {"weak": WEAK}),
        (FINETUNED, "finetune", [("aligned", ALIGNED), ("cell", CELL)], {"task": "sst2", "p": 0.1},
         {"weak": WEAK, "poison_rows": 20, "poison_ids": [f"p{i}" for i in range(20)]}),
    ]
    for i, (path, stage, inputs, params, extra) in enumerate(steps):
        write_adapter(Path(path), random_adapter(i))
        write_json(Path(path) / "lineage.json", lineage(stage, inputs, params, **extra))
    Path(MASKS).mkdir(parents=True)
    save_masks(random_masks(random_adapter(0), 0), Path(MASKS) / "masks.safetensors")
    write_json(Path(MASKS) / "lineage.json", lineage("identify", [("reference", REFERENCE), (
        "data", "data/prepared/identify/safety.jsonl"), ("weak", WEAK)], {"method": "lowrank"}, weak=WEAK))
    out = "adapters/realigned/sst2-p0.1-dpo"
    code, _, err = run_cli(["realign", "--finetuned", FINETUNED, "--reference", REFERENCE, "--masks",
                            f"{MASKS}/masks.safetensors", "--out", out])
    assert code == 0, err
    return tmp_path, Path(out)


def test_realigned_chain_back_to_base(project):
    root, out = project
    code, stdout, err = run_cli(["audit", out])
    assert code == 0, err
    assert "chain: realigned <- finetuned <- aligned <- weak <- base tiny-random" in stdout
    for needle in (f"reference: {REFERENCE}", f"masks: {MASKS}/masks.safetensors", f"cell: {CELL}",
                   "poison_rows=20", "stage identify", "patched_count=", "base model: tiny-random"):
        assert needle in stdout, needle
    assert "not found" not in stdout


def test_paths_resolve_against_ancestors_from_elsewhere(project, tmp_path_factory, monkeypatch):
    root, out = project
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, stdout, err = run_cli(["audit", root / out])
    assert code == 0, err
    assert "chain: realigned <- finetuned <- aligned <- weak <- base tiny-random" in stdout
    assert "not found" not in stdout


@pytest.mark.parametrize("target,chain", [
    (MASKS, "masks <- reference <- aligned <- weak <- base"),
    (f"{MASKS}/masks.safetensors", "masks <- reference <- aligned <- weak <- base"),
    (FINETUNED, "finetuned <- aligned <- weak <- base"),
    (f"{ALIGNED}/lineage.json", "aligned <- weak <- base"),
])
def test_any_artifact(project, target, chain):
    code, stdout, err = run_cli(["audit", target])
    assert code == 0, err
    assert f"chain: {chain} tiny-random" in stdout


def test_missing_input_is_reported_not_fatal(project):
    import shutil

    shutil.rmtree(ALIGNED)
    code, stdout, _ = run_cli(["audit", FINETUNED])
    assert code == 0
    assert f"aligned: {ALIGNED}" in stdout and "not found here" in stdout


@pytest.mark.parametrize("make", ["empty-dir", "absent", "bad-json", "no-stage"])
def test_not_an_artifact(tmp_path, make):
    target = tmp_path / "thing"
    if make != "absent":
        target.mkdir()
    if make == "bad-json":
        (target / "lineage.json").write_text("{oops")
    if make == "no-stage":
        (target / "lineage.json").write_text("[1, 2]")
    code, stdout, err = run_cli(["audit", target])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "thing" in err, err


def test_verify_marks_every_input_and_passes_when_nothing_changed(project):
    root, out = project
    code, stdout, err = run_cli(["audit", "--verify", out])
    assert code == 0, err
    input_lines = [ln for ln in stdout.splitlines() if ln.lstrip().startswith("<- ")]
    assert input_lines and all("  ✓" in ln for ln in input_lines), stdout
    assert f"verify: {len(input_lines)} of {len(input_lines)} recorded inputs unchanged, 0 changed, 0 missing" in stdout


def test_verify_flags_an_overwritten_and_a_missing_input(project):
    import shutil

    root, out = project
    write_adapter(Path(FINETUNED), random_adapter(9))   # overwritten after the repair
    shutil.rmtree(REFERENCE)
    code, stdout, err = run_cli(["audit", "--verify", out])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "1 recorded input(s) changed and" in err, err
    lines = stdout.splitlines()
    changed = next(ln for ln in lines if f"finetuned: {FINETUNED}" in ln)
    missing = next(ln for ln in lines if f"reference: {REFERENCE}" in ln)
    assert "changed (now " in changed and missing.rstrip().endswith("missing")
    assert all("  ✓" in ln for ln in lines if f"masks: {MASKS}" in ln)
    # without --verify the audit reads records only: no marks, exit 0
    code, stdout, _ = run_cli(["audit", out])
    assert code == 0 and "✓" not in stdout and "changed" not in stdout


def test_modules_lists_the_per_module_record(project):
    root, out = project
    code, stdout, err = run_cli(["audit", "--modules", out])
    assert code == 0, err
    rows = [ln for ln in stdout.splitlines() if ln.startswith("    layers.")]
    assert len(rows) == 14 and all("similarity=" in r and "patched=" in r for r in rows), stdout
    assert "modules (14):" in stdout
    assert "layers." not in run_cli(["audit", out])[1]   # the default output stays short
    code, stdout, _ = run_cli(["audit", "--modules", FINETUNED])
    assert code == 0 and "modules: (no per-module record in this artifact)" in stdout
