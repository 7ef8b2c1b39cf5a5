"""One concept, one name; one setting, one place: dvc.yaml stages, `nlsr` commands, params sections and the
config dataclasses agree, and every command's defaults are params.yaml's values (docs/DESIGN.md §2, §7.5)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from nlsr_core.config import SECTIONS
from nlsr_core.params import defaults, load_params
from stages.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# Commands that are not pipeline stages.
TOOLS = {"audit", "generate", "recipe-study", "paper-tables"}  # commands outside the default pipeline
# Shared sections read by several stages; every other section is named after the stage that reads it, except
# `data` (prepare-data's) and the study settings read by the frontier / calibrate / ablate stages.
SHARED = {"model", "data", "grid", "lora", "launch", "nlsr", "study", "judge"}


def _section_value(key: str):
    value = PARAMS
    for part in key.split("."):
        value = value[part]
    return value


def test_stages_are_the_commands():
    assert set(DVC["stages"]) == set(COMMANDS) - TOOLS


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_stage_runs_its_own_command_and_module(stage):
    spec = DVC["stages"][stage]
    body = spec.get("do", spec)
    assert body["cmd"].split()[:2] == ["nlsr", stage]
    assert COMMANDS[stage][0] == f"stages.{stage.replace('-', '_')}"
    deps = body.get("deps", [])
    assert f"stages/{stage.replace('-', '_')}.py" in deps


def test_params_sections_are_the_config_dataclasses():
    assert list(PARAMS) == list(SECTIONS)


def test_every_section_is_read_by_a_stage_and_own_sections_match_stage_names():
    read = set()
    for spec in DVC["stages"].values():
        body = spec.get("do", spec)
        read |= {str(entry).split(".")[0] for entry in body.get("params", [])}
    text = (ROOT / "dvc.yaml").read_text()
    for section in PARAMS:
        # `study` / `grid` shape the stage matrices (${study.poison_ratios}) instead of being a stage's param
        assert section in read or f"${{{section}." in text, f"params section {section} is used by no stage"
        # a two-word section is spelt with "_" (DVC interpolates ${finetune_seeds}), its stage with "-"
        assert section in SHARED or section.replace("_", "-") in DVC["stages"], \
            f"section {section} is named after no stage"


def test_params_yaml_equals_the_config_defaults():
    assert load_params(ROOT / "params.yaml").sections == defaults().sections


def _config_options():
    for name, (module, _) in COMMANDS.items():
        command = importlib.import_module(module).command
        for param in command.params:
            key = getattr(param, "config_key", None)
            if key:
                yield name, param, key


def test_every_command_default_is_the_params_value():
    seen = set()
    for name, param, key in _config_options():
        expected = _section_value(key)
        default = param.default
        if isinstance(expected, list):
            expected, default = [str(v) for v in expected], [str(v) for v in default]
        assert default == expected, f"nlsr {name} {param.opts[0]}: default {default!r}, params.yaml {key}={expected!r}"
        seen.add(key)
    # the settings every operator passes by hand come from the config too
    for key in ("realign.layer_prune", "realign.delta", "nlsr.preset", "finetune.lr", "identify.sparsity",
                "judge.opening_tokens", "align.lr", "lora.rank"):
        assert key in seen, key


def test_realign_default_sparsity_is_the_pipelines():
    from nlsr_core.config import default
    from nlsr_core.study.points import Point

    assert Point().identification.sparsity == default("identify", "sparsity") == PARAMS["identify"]["sparsity"]


def test_every_field_has_help():
    from nlsr_core.config import field_help
    import dataclasses

    for section, cls in SECTIONS.items():
        helps = field_help(cls)
        for f in dataclasses.fields(cls):
            assert helps.get(f.name), f"{section}.{f.name} has no docstring"


def test_no_stage_imports_another_stage():
    stage_modules = {module for module, _ in COMMANDS.values()}
    for path in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            others = [n for n in names if n in stage_modules and n != f"stages.{path.stem}"]
            assert not others, f"stages/{path.name} imports the stage module {others[0]}"


def test_misspelt_key_is_one_line(tmp_path):
    from nlsr_core.errors import NlsrError

    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "align": {**PARAMS["align"], "lrr": 1}}))
    with pytest.raises(NlsrError, match=r"align\.lrr: unknown key; expected one of lr, epochs"):
        load_params(bad)
    bad.write_text(yaml.safe_dump({**PARAMS, "sweep": {}}))
    with pytest.raises(NlsrError, match="unknown params section 'sweep'"):
        load_params(bad)
    bad.write_text(yaml.safe_dump({**PARAMS, "realign": {**PARAMS["realign"], "layer_prune": "half"}}))
    with pytest.raises(NlsrError, match=r"realign\.layer_prune: 'half' is not a float"):
        load_params(bad)


@pytest.mark.parametrize("profile", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.name)
def test_profiles_validate(profile):
    if "accelerate" in profile.name:
        pytest.skip("an accelerate config, not a params profile")
    load_params(profile)


def test_misspelt_key_fails_a_stage_under_dvc(tmp_path, monkeypatch):
    """Inside a DVC stage (DVC_ROOT set) any command checks params.yaml first: one line, exit 1."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "realign": {"layer_prunee": 0.0}}))
    out = subprocess.run([sys.executable, "-m", "stages.cli", "audit", str(tmp_path)], cwd=ROOT,
                         env={"DVC_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "NLSR_TRACKING": "off"},
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"nlsr: error: {tmp_path / 'params.yaml'}: realign.layer_prunee: unknown key; expected one of "
        "selection, layer_prune, delta, tau, seed, interpolate_lambda, safety_vector_gamma, interpolate_target, "
        "safemerge_tau, safemerge_weight, antidote_dense_ratio, antidote_scoring, dg_hard_scale"]


# The case 3: out-of-range values, each caught by load_params (so by every DVC stage, before any of them
# runs) with the line the command that uses the value gives.
RANGE_CASES = [
    ("identify", "sparsity", -0.1, "identify.sparsity (P_SR) = -0.1: expected a value in [0, 1)"),
    ("identify", "identifier", "bogus",
     "identify.identifier 'bogus': expected one of lowrank, wanda, snip, preference-snip, random"),
    ("judge", "batch_size", 0, "judge.batch_size = 0: expected a positive integer"),
    ("ablate", "seeds", [], "ablate.seeds: empty; expected at least one seed"),
    ("grid", "poison_ratios", [], "grid.poison_ratios: empty; expected at least one poison ratio"),
    ("grid", "poison_ratios", [0.1, 1.5], "grid.poison_ratios = 1.5: expected a value in [0, 1]"),
    ("realign", "layer_prune", 2.0, "realign.layer_prune (P_L) = 2.0: expected a value in [0, 1]"),
    ("finetune_seeds", "seeds", [], "finetune_seeds.seeds: empty; expected at least one fine-tuning seed besides "
                                    "the pipeline's"),
    ("analyze", "taus", [], "analyze.taus: empty; expected at least one τ"),
    ("frontier", "grid_lambda", [], "frontier.grid_lambda: empty; a stage receives no option for an empty list and "
                                    "would use the default (0.25, 0.5, 0.75, 1.0); expected at least one value"),
    ("analyze", "identifiers", ["lowrank", "bogus"],
     "analyze.identifiers 'bogus': expected one of lowrank, wanda, snip, preference-snip, random"),
    ("analyze", "betas", [0.9, -0.5], "analyze.betas (β) = -0.5: expected a value ≥ 0"),
    ("analyze", "preamplification_layer_prunes", [],
     "analyze.preamplification_layer_prunes: empty; a stage receives no option for an empty list and would use the "
     "default (0.5); expected at least one value"),
]


@pytest.mark.parametrize("section, key, value, message", RANGE_CASES, ids=lambda v: str(v))
def test_out_of_range_params_are_one_line(tmp_path, section, key, value, message):
    from nlsr_core.errors import NlsrError

    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, section: {**PARAMS[section], key: value}}))
    with pytest.raises(NlsrError) as info:
        load_params(bad)
    assert str(info.value) == f"{bad}: {message}"


@pytest.mark.parametrize("check, message", [
    (lambda: __import__("nlsr_core.method.presets", fromlist=["x"]).check_sparsity(-0.1), RANGE_CASES[0][3]),
    (lambda: __import__("nlsr_core.method.neurons", fromlist=["x"]).get_identifier("bogus"), RANGE_CASES[1][3]),
    (lambda: __import__("nlsr_core.eval.settings", fromlist=["x"]).EvalSettings(batch_size=0), RANGE_CASES[2][3]),
    (lambda: __import__("nlsr_core.method.realign", fromlist=["x"]).RealignParams(layer_prune=2.0), RANGE_CASES[6][3]),
])
def test_the_library_gives_the_same_line(check, message):
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError) as info:
        check()
    assert str(info.value) == message


def test_an_empty_grid_axis_stops_the_first_stage_under_dvc(tmp_path):
    """`grid.poison_ratios: []` let prepare-data write its own fallback mix while dvc.lock recorded []."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "grid": {**PARAMS["grid"], "poison_ratios": []}}))
    out = subprocess.run([sys.executable, "-m", "stages.cli", "prepare-data", "--out", str(tmp_path / "data")],
                         cwd=ROOT, capture_output=True, text=True,
                         env={"DVC_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin", "NLSR_TRACKING": "off"})
    assert out.returncode == 1 and not (tmp_path / "data").exists()
    assert out.stderr.strip().splitlines() == [
        f"nlsr: error: {tmp_path / 'params.yaml'}: grid.poison_ratios: empty; expected at least one poison ratio"]


def test_an_exponent_without_a_dot_is_a_float_where_the_field_is_one(tmp_path):
    """YAML 1.1 reads `2e-4` as a string; every YAML config writes learning rates that way."""
    from nlsr_core.errors import NlsrError

    text = yaml.safe_dump({**PARAMS, "align": {**PARAMS["align"], "lr": 1.0}}).replace("lr: 1.0", "lr: 2e-4")
    (tmp_path / "params.yaml").write_text(text)
    assert "lr: 2e-4" in text and load_params(tmp_path / "params.yaml").align.lr == 2e-4
    (tmp_path / "params.yaml").write_text(text.replace("lr: 2e-4", "lr: inf"))
    with pytest.raises(NlsrError, match=r"align\.lr: 'inf' is not a float"):
        load_params(tmp_path / "params.yaml")


def test_choices_are_the_dispatch_tables():
    """One list of names per field: the dispatch tables hold exactly the choices declared beside the field."""
    from nlsr_core.config import choices
    from nlsr_core.data.tasks import TASKS
    from nlsr_core.eval.judges import JUDGES
    from nlsr_core.repair.registry import REPAIRS
    from nlsr_core.repair.safelora import PROJECTIONS
    from nlsr_core.method.neurons import IDENTIFIERS
    from nlsr_core.method.presets import PRESETS

    assert choices("identify", "identifier") == tuple(IDENTIFIERS)
    assert choices("nlsr", "preset") == tuple(PRESETS)
    assert choices("judge", "name") == tuple(JUDGES)
    assert choices("grid", "tasks") == tuple(TASKS)
    assert choices("safelora", "projection") == tuple(PROJECTIONS)
    assert "realign" in {r.stage for r in REPAIRS.values()} and all(r.stage in ("realign", "safelora")
                                                                   for r in REPAIRS.values())
