"""The repair registry (nlsr_core.repair.registry): every reader goes through it, so a method added there reaches
the CLI, the study's points and the replicate study with nothing else changed."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nlsr_core.errors import NlsrError
from nlsr_core.method.realign import ModuleRecord, RepairResult
from nlsr_core.repair.registry import REPAIRS, Repair, RepairInputs, get_repair
from nlsr_core.study.finetune_seeds import replicate_points
from nlsr_core.study.points import Point, PointBuilder
from tests.conftest import random_adapter, run_cli, write_adapter


# ---- a toy repair, written the way a new method is: its settings, its function, one registration line ----------
@dataclasses.dataclass(frozen=True)
class RevertSettings:
    """No knobs."""


def revert(inputs: RepairInputs, settings: RevertSettings) -> RepairResult:
    """Wt ← Wa on every module (the aligned adapter itself)."""
    ft, al = inputs.finetuned, inputs.aligned
    records = [ModuleRecord(m, 1.0, 0, None, None, None, True) for m in ft.modules]
    return RepairResult(ft.replace({k: al.tensors[k].clone() for k in ft.tensors}), records)


TOY = Repair("revert", RevertSettings, revert, ("aligned",), about="Wt <- Wa")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REPAIRS, "revert", TOY)   # the one registration line
    return TOY


def test_a_registered_method_runs_from_the_cli_with_lineage(tmp_path, toy):
    ft, al = write_adapter(tmp_path / "ft", random_adapter(1)), write_adapter(tmp_path / "al", random_adapter(3))
    code, out, err = run_cli(["realign", "--method", "revert", "--finetuned", ft, "--aligned", al,
                              "--out", tmp_path / "out"])
    assert code == 0, err
    lineage = json.loads((tmp_path / "out" / "lineage.json").read_text())
    assert lineage["params"] == {"method": "revert"} and lineage["stage"] == "realign"
    assert [i["role"] for i in lineage["inputs"]] == ["finetuned", "aligned"]
    from nlsr_core.lora.adapters import load_adapter

    got, want = load_adapter(tmp_path / "out"), load_adapter(al)
    assert all(torch.equal(got.tensors[k], want.tensors[k]) for k in want.tensors)


def test_a_registered_method_is_a_study_point_and_a_replicate(toy):
    aligned, finetuned = random_adapter(1), random_adapter(2)
    build = PointBuilder(finetuned, aligned, aligned, {}, Point.of(beta=0.0))
    adapter, summary = build.build(Point("revert"))
    assert all(torch.equal(adapter.tensors[k], aligned.tensors[k]) for k in aligned.tensors)
    assert summary["patched_count"] == len(finetuned.modules)
    assert Point("revert").label == "revert" and Point("revert").record() == {"method": "revert"}
    assert dict(replicate_points(Point(), {}))["revert"] == Point("revert")


def test_settings_come_from_params_keys_and_are_checked():
    interpolate = get_repair("interpolate")
    assert interpolate.settings_from_params({"realign.interpolate_lambda": 0.25}).lam == 0.25
    assert interpolate.settings_from_params({}).lam == 0.5            # the params default (nlsr_core.config)
    with pytest.raises(NlsrError, match=r"realign.interpolate_lambda \(λ\) = 2"):
        interpolate.settings_from_params({"realign.interpolate_lambda": 2.0})
    with pytest.raises(NlsrError, match="safelora.projection 'dense': expected one of orthogonal, frobenius"):
        get_repair("safelora").settings_from_params({"safelora.projection": "dense"})
    with pytest.raises(NlsrError, match="realign --method 'bogus': expected one of nlsr, random-masks"):
        get_repair("bogus", where="realign --method")


def test_a_point_keeps_its_preset_in_one_place():
    point = Point.of(preset="official-code")
    assert point.settings.preset == point.identification.preset == "official-code"
    with pytest.raises(NlsrError, match="differs from the identification"):
        Point("nlsr", point.settings)
    with pytest.raises(NlsrError, match="unknown setting 'lam'"):
        Point().replace(lam=0.5)
    # switching the method keeps the identification, and the settings when the type is the same
    assert Point.of(seed=3).replace(method="random-masks").settings.seed == 3
    assert Point.of(beta=0.0).replace(method="interpolate", lam=0.25).record() == {
        "method": "interpolate", "lam": 0.25, "target": "reference", "beta": 0.0, "preset": "paper"}


def test_every_reader_uses_the_registry():
    """The dispatch tables the registry replaced are gone: no second list of methods to keep in step."""
    import nlsr_core.study.points as points
    import stages.repair as repair

    assert not hasattr(points, "METHODS") and not hasattr(repair, "METHODS")
    assert [name for name, _ in replicate_points(Point(), {})] == list(REPAIRS)
