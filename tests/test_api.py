"""The public Python API (nlsr_core.api), tested through that surface only: load, masks, repair, save, verify."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import random_adapter, write_adapter


@pytest.fixture
def files(tmp_path):
    """A fine-tuned, a reference and an aligned adapter as PEFT directories, and an identification stats file."""
    from nlsr_core.method.neuron_keys import gram_key
    from nlsr_core.method.neurons import save_stats

    paths = {name: write_adapter(tmp_path / name, random_adapter(seed))
             for name, seed in (("finetuned", 1), ("reference", 2), ("aligned", 3))}
    save_stats({gram_key(m): torch.eye(4) for m in random_adapter(1).modules}, tmp_path / "stats.safetensors",
               {"method": "lowrank"})
    return {**paths, "stats": tmp_path / "stats.safetensors", "root": tmp_path}


def test_the_readme_flow_repairs_saves_and_verifies(files):
    import nlsr_core.api as nlsr

    finetuned, reference = nlsr.load(files["finetuned"]), nlsr.load(files["reference"])
    masks = nlsr.masks(files["stats"], reference, sparsity=0.35)
    result = nlsr.repair("nlsr", finetuned, reference=reference, masks=masks, layer_prune=0.0, delta=1.0)
    out = nlsr.save(result, files["root"] / "repaired", finetuned=files["finetuned"],
                    inputs={"reference": files["reference"], "masks": files["stats"]})
    again = nlsr.load(out)
    assert all(torch.equal(again.tensors[k], result.adapter.tensors[k]) for k in result.adapter.tensors)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["stage"] == "realign" and lineage["params"]["method"] == "nlsr"
    assert lineage["params"]["layer_prune"] == 0.0 and lineage["patched_count"] == result.summary()["patched_count"]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == finetuned.rank   # a PEFT directory
    assert nlsr.verify(out) == []
    files["reference"].joinpath("adapter_model.safetensors").write_bytes(b"changed")
    assert [p.split(":")[0] for p in nlsr.verify(out)] == ["reference"]


def test_every_registered_method_is_one_call(files):
    import nlsr_core.api as nlsr

    ft, ref, al = (nlsr.load(files[k]) for k in ("finetuned", "reference", "aligned"))
    masks = nlsr.masks(files["stats"], ref)
    norms = {f"{m}.lora_{w}.input_sq": torch.ones(ft.tensors[f"{m}.lora_{w}.weight"].shape[1])
             for m in ft.modules for w in "AB"}
    inputs = {"reference": ref, "aligned": al, "masks": masks, "norms": norms}
    for method, spec in nlsr.REPAIRS.items():
        result = nlsr.repair(method, ft, **{k: inputs[k] for k in spec.needs})
        assert set(result.adapter.modules) == set(ft.modules) and result.method == method


def test_antidote_from_a_realignment_pass_of_the_model(tmp_path):
    """realign_norms runs M + Wt (tiny-random, from Wt's lineage) over harmful answers; antidote reads them."""
    import nlsr_core.api as nlsr
    from tests.conftest import TINY_MODEL, make_tiny_adapter

    wt = make_tiny_adapter(tmp_path / "wt", 1, {"model": TINY_MODEL})
    data = tmp_path / "harmful.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"How do I do harm number {i}?",
                                          "response": f"Step {i}: do the harmful thing carefully."})
                              for i in range(3)) + "\n")
    norms = nlsr.realign_norms(wt, data, batch_size=2, max_length=64)
    ft = nlsr.load(wt)
    assert set(norms) == {f"{m}.lora_{w}.input_sq" for m in ft.modules for w in "AB"}
    assert all(bool((v > 0).all()) for v in norms.values())
    wanda = nlsr.repair("antidote", ft, norms=norms, dense_ratio=0.25)
    magnitude = nlsr.repair("antidote", ft, scoring="magnitude", dense_ratio=0.25)
    assert wanda.record == {"method": "antidote", "dense_ratio": 0.25, "scoring": "wanda"}
    assert any(not torch.equal(wanda.adapter.tensors[k], magnitude.adapter.tensors[k]) for k in ft.tensors)
    with pytest.raises(Exception, match="--realign-data .*missing.jsonl: not a file"):
        nlsr.realign_norms(wt, tmp_path / "missing.jsonl")


@pytest.mark.parametrize("call, message", [
    (lambda nlsr, ft: nlsr.repair("safelora", ft), "repair 'safelora' needs aligned"),
    (lambda nlsr, ft: nlsr.repair("interpolate", ft, reference=ft, lam=2.0), r"realign.interpolate_lambda \(λ\) = 2"),
    (lambda nlsr, ft: nlsr.repair("nlsr", ft, reference=ft, masks={}, gamma=1.0), "unknown setting 'gamma'"),
    (lambda nlsr, ft: nlsr.repair("dare", ft), "repair method 'dare': expected one of nlsr"),
])
def test_bad_calls_are_one_line(files, call, message):
    import nlsr_core.api as nlsr
    from nlsr_core.errors import NlsrError

    with pytest.raises(NlsrError, match=message) as err:
        call(nlsr, nlsr.load(files["finetuned"]))
    assert "\n" not in str(err.value)


def test_save_never_replaces_an_input(files):
    import nlsr_core.api as nlsr
    from nlsr_core.errors import NlsrError

    ft, al = nlsr.load(files["finetuned"]), nlsr.load(files["aligned"])
    result = nlsr.repair("safelora", ft, aligned=al)
    with pytest.raises(NlsrError, match="aligned"):
        nlsr.save(result, files["aligned"], finetuned=files["finetuned"], inputs={"aligned": files["aligned"]})
    assert nlsr.load(files["aligned"]).tensors.keys() == al.tensors.keys()


def test_the_api_imports_no_dvc_mlflow_or_click(files):
    code = ("import sys, nlsr_core.api as nlsr\n"
            f"ft, al = nlsr.load({str(files['finetuned'])!r}), nlsr.load({str(files['aligned'])!r})\n"
            f"nlsr.save(nlsr.repair('safelora', ft, aligned=al), {str(files['root'] / 'sl')!r}, "
            f"finetuned={str(files['finetuned'])!r}, inputs={{'aligned': {str(files['aligned'])!r}}})\n"
            "print(sorted(m for m in ('dvc', 'mlflow', 'click') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
