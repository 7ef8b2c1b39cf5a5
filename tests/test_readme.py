"""The README's examples, run as written on a tiny-random pipeline, so the user's guide cannot rot.

Every fenced ```bash / ```python block of README.md is preceded by a marker comment:
    <!-- readme-example: tiny-pipeline -->       run here, in order, in one repo where `dvc repro` ran on tiny-random
    <!-- readme-example: skip (reason) -->       not runnable offline on 2 cores (the full study, a GPU), with why
The user's own files the guide names (`my-aligned`, `my-safety.jsonl`, `customer-a`…) are made from that tiny
pipeline's outputs, without their lineage.json, as adapters trained elsewhere would arrive. The one substitution
is the base model: the guide's `smollm2-135m` runs as `tiny-random`.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
MARKER = re.compile(r"<!-- readme-example: (tiny-pipeline|skip \((?P<why>[^)]+)\)) -->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MODEL_SUBSTITUTION = ("smollm2-135m", "tiny-random")


def examples(text: str) -> list[tuple[str, str, str]]:
    """[(marker, language, code)] for every fenced block, in order; marker is the comment on the line before
    the block's opening fence ('' when there is none)."""
    found = []
    for fence in FENCE.finditer(text):
        before = text[:fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARKER.fullmatch(before.strip())
        found.append((mark.group(1) if mark else "", fence.group(1), fence.group(2)))
    return found


def test_every_example_is_marked_runnable_or_skipped_with_a_reason():
    blocks = examples(README.read_text())
    assert blocks, "README.md has no examples"
    unmarked = [code.splitlines()[0] for mark, _, code in blocks if not mark]
    assert not unmarked, f"README blocks without a readme-example marker: {unmarked}"
    assert all(lang in ("bash", "python") for _, lang, _ in blocks)
    runnable = [b for b in blocks if b[0] == "tiny-pipeline"]
    assert {lang for _, lang, _ in runnable} == {"bash", "python"}
    assert len(runnable) >= len(blocks) - 2, "at most the full study and the GPU block may be skipped"


def test_examples_parse_markers_and_reasons():
    text = ("<!-- readme-example: skip (needs a GPU) -->\n```bash\nnvidia-smi\n```\n\n"
            "```python\nprint(1)\n```\n<!-- readme-example: tiny-pipeline -->\n```bash\nls\n```\n")
    assert examples(text) == [("skip (needs a GPU)", "bash", "nvidia-smi\n"), ("", "python", "print(1)\n"),
                              ("tiny-pipeline", "bash", "ls\n")]


def _as_users_files(repo: Path) -> None:
    """The inputs the guide names, from the tiny pipeline's own outputs, stripped of lineage.json."""
    def adapter(src: str, dst: str) -> None:
        shutil.copytree(repo / src, repo / dst, ignore=shutil.ignore_patterns("lineage.json"))

    adapter("adapters/aligned/dpo/aligned", "my-aligned")
    for name in ("customer-a", "customer-b", "customer-c"):
        adapter("adapters/finetuned/sst2-p0.1-dpo", name)
    shutil.copy(repo / "data/prepared/identify/safety.jsonl", repo / "my-safety.jsonl")


@pytest.mark.slow
def test_readme_examples_run_on_a_tiny_pipeline(tmp_path):
    from tests.test_pipeline import make_repo, sh

    repo = make_repo(tmp_path / "repo")
    sh(["dvc", "repro"], repo, env={"NLSR_TRACKING": "off"})
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "tiny repro"], repo)
    _as_users_files(repo)
    outputs = []
    for mark, lang, code in examples(README.read_text()):
        if mark != "tiny-pipeline":
            continue
        code = code.replace(*MODEL_SUBSTITUTION)
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        outputs.append(sh(cmd, repo, env={"NLSR_TRACKING": "off"}).stdout)
        print(f"--- README {lang} block\n{code}--- output\n{outputs[-1]}")   # the walk, shown with pytest -s
    runnable = [b for b in examples(README.read_text()) if b[0] == "tiny-pipeline"]
    assert len(outputs) == len(runnable) == 4   # identify, realign + audit, Python, dvc
    # what each guide step promises
    assert (repo / "my-reference" / "adapter_model.safetensors").is_file()
    assert (repo / "my-identify" / "stats.safetensors").is_file()
    for name in ("customer-a", "customer-b", "customer-c"):
        lineage = json.loads((repo / "repaired" / name / "lineage.json").read_text())
        assert lineage["stage"] == "realign" and lineage["params"]["sparsity"] == 0.35
        assert {i["role"] for i in lineage["inputs"]} >= {"finetuned", "reference"}
    assert not (repo / "repaired" / "nlsr-progress.json").exists()
    assert re.search(r"verify: (\d+) of \1 recorded inputs unchanged, 0 changed, 0 missing", outputs[1])
    assert outputs[2].rstrip().endswith("[]")  # nlsr.verify: nothing changed
    assert (repo / "repaired-py" / "customer-a" / "adapter_model.safetensors").is_file()
    # the Python call and the CLI give the same adapter for the same inputs and setting
    assert ((repo / "repaired-py" / "customer-a" / "adapter_model.safetensors").read_bytes()
            == (repo / "repaired" / "customer-a" / "adapter_model.safetensors").read_bytes())
    # a recorded input changed: the guide's verify command now fails with exit 1
    (repo / "customer-a" / "adapter_config.json").write_text("{}")
    verify = sh(["nlsr", "audit", "--verify", "repaired/customer-a"], repo, env={"NLSR_TRACKING": "off"},
                check=False)
    assert verify.returncode == 1 and "changed" in verify.stdout
