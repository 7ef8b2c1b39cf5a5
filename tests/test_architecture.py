"""The layout's two rules, read from the code with `ast` (tests/import_graph.py):

- imports point one way: a module of `nlsr_core` imports its own subpackage and the ones below it (LAYERS);
- every dvc.yaml stage depends on exactly the code it can run: its command module, the CLI entry point and their
  import closure, no file missing (DVC would call a stale result up to date) and none extra (a change elsewhere
  would re-run it for nothing).

The real `dvc status` reaction to an edit is checked on the tiny pipeline (tests/test_pipeline.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests import import_graph as graph

DVC_YAML = graph.REPO / "dvc.yaml"
STAGES = graph.dvc_stages(DVC_YAML.read_text(encoding="utf-8"))


def test_imports_point_down_the_layers():
    assert graph.upward_imports() == []


def test_every_module_sits_in_a_layer():
    """A new subpackage has to be placed in LAYERS (and in docs/DESIGN.md §2) before it can be imported."""
    names = [n for n in graph.modules() if n.startswith("nlsr_core.")]
    assert {graph.layer_of(n) for n in names} <= set(graph.LAYERS)
    assert all(not n.count(".") > 1 or n.split(".")[1] in graph.LAYERS for n in names)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_are_its_import_closure(stage):
    cmd, deps = STAGES[stage]
    needed, covered = graph.stage_code(cmd), graph.covered_files(deps)
    assert not needed - covered, f"{stage}: code it runs but does not depend on: {sorted(map(str, needed - covered))}"
    assert not covered - needed, f"{stage}: depends on code it never imports: {sorted(map(str, covered - needed))}"


def test_dvc_yaml_is_what_the_graph_writes():
    """`python -m tests.import_graph` regenerates the code deps; dvc.yaml is its output (fewest paths)."""
    text = DVC_YAML.read_text(encoding="utf-8")
    assert graph.rewrite_dvc_yaml(text) == text, "run `python -m tests.import_graph` and commit dvc.yaml"


def test_closure_follows_imports_inside_functions_and_package_inits():
    """The walk is what the checks above rely on: an import inside a function counts, and importing a.b.c runs
    the __init__ of a and a.b."""
    cmd = "nlsr realign --finetuned x"
    files = graph.stage_code(cmd)
    assert Path("nlsr_core/method/presets.py") in files          # realign -> neurons -> presets (eq. 5 top-k)
    assert Path("nlsr_core/method/__init__.py") in files and Path("nlsr_core/__init__.py") in files
    assert Path("nlsr_core/train/trainers.py") not in files       # realign trains nothing


def test_training_stages_do_not_depend_on_evaluation():
    for stage in ("align", "finetune"):
        evaluation = {f for f in graph.stage_code(STAGES[stage][0]) if f.parts[:2] == ("nlsr_core", "eval")}
        assert evaluation == set(), f"{stage} imports {sorted(map(str, evaluation))}"


def test_code_deps_use_a_folder_only_when_all_of_it_is_needed():
    lora = {p for p in graph.modules().values() if p.parts[:2] == ("nlsr_core", "lora")}
    some = set(list(sorted(lora))[:2])
    assert graph.code_deps(lora) == ["nlsr_core/lora"]
    assert graph.code_deps(some) == sorted(p.as_posix() for p in some)
