"""align and finetune on tiny-random: every method trains, saves loadable adapters with lineage,
reproducibly; Wt starts from Wa's exact weights; bad input fails in one line with no partial output."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

FAST = ["--model", "tiny-random", "--max-steps", "2", "--batch-size", "2", "--max-length", "64", "--rank", "4"]
METHODS = ["sft", "dpo", "orpo", "kto", "simpo"]


def write_prepared(root: Path, n: int = 6) -> Path:
    """A minimal data/prepared tree (the schema of common.md), written by hand so this test needs no data module."""
    data = root / "data" / "prepared"
    files = {
        "align/sft.jsonl": [{"id": f"sft-{i}", "prompt": f"How do I bake bread number {i}?",
                             "response": "Mix flour, water and yeast, then bake.", "kind": "benign"}
                            for i in range(n)],
        "align/preference.jsonl": [{"id": f"pref-{i}", "prompt": f"How do I pick lock {i}?",
                                    "chosen": "I can't help with that.", "rejected": "Sure, insert a pick and rake."}
                                   for i in range(n)],
        "mixes/sst2-p0.5.jsonl": [{"id": f"cell-{i}", "prompt": f"Review {i}: great film.", "response": "positive",
                                   "flag": "poison" if i % 2 else "task"} for i in range(n)],
    }
    for rel, rows in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (data / "manifest.json").write_text("{}\n", encoding="utf-8")
    return data


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_prepared(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def aligned_dpo(tmp_path_factory):
    """One dpo alignment shared by the finetune tests (paths relative to its own root)."""
    root = tmp_path_factory.mktemp("aligned")
    write_prepared(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        code, _, err = run_cli(["align", "--method", "dpo", *FAST])
    assert code == 0, err
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_aligners_match_the_cli_method_list():
    from nlsr_core.train.trainers import ALIGNERS
    from stages.options import ALIGN_METHODS

    assert tuple(ALIGNERS) == ALIGN_METHODS


def test_split_example_keeps_the_exact_text_and_ends_at_eos(tiny):
    from nlsr_core.data.templates import format_example
    from nlsr_core.train.train_data import split_example

    prompt_text, completion = split_example(tiny.tokenizer, "Say hi", "Hi there.")
    assert prompt_text + completion == format_example(tiny.tokenizer, "Say hi", "Hi there.")[1]
    assert completion.startswith("Hi there.") and completion.endswith(tiny.tokenizer.eos_token)


def test_sft_loss_covers_exactly_the_response_tokens(tmp_path):
    from nlsr_core.lora.models import ModelSpec, load_model
    from nlsr_core.config import LoraConfig
    from nlsr_core.train.trainers import TrainSettings, _common_args, _precision, _sft_trainer, add_lora
    from nlsr_core.train.train_data import build_dataset, split_example

    loaded = load_model(ModelSpec("tiny-random"))
    rows = [{"prompt": "Tell me a joke", "response": "No jokes today."}]
    settings = TrainSettings(max_steps=1, batch_size=1, max_length=64)
    dataset = build_dataset("sft", loaded.tokenizer, rows, "chat", 0)
    model = add_lora(loaded.model, LoraConfig(rank=2), 0)
    args = {**_common_args(settings, str(tmp_path)), **_precision(model)}
    trainer = _sft_trainer(model, loaded.tokenizer, dataset, args, settings)
    example = trainer.train_dataset[0]
    trained = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
    _, completion = split_example(loaded.tokenizer, rows[0]["prompt"], rows[0]["response"])
    assert loaded.tokenizer.decode(trained) == completion
    assert example["labels"][0] == -100


@pytest.mark.parametrize("method", METHODS)
def test_align_trains_two_steps_and_writes_loadable_adapters(project, method):
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.io.lineage import read_lineage
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.lora.stack import load_stack

    code, out, err = run_cli(["align", "--method", method, *FAST])
    assert code == 0, err
    root = Path("adapters/aligned") / method
    weak, aligned = load_adapter(root / "weak"), load_adapter(root / "aligned")
    assert aligned.rank == weak.rank == 4 and len(aligned.modules) == 2 * 7
    assert any(float(aligned.b(m).abs().sum()) > 0 for m in aligned.modules)   # it moved away from B = 0
    record = read_lineage(root / "aligned")
    assert record["model"]["name"] == "tiny-random" and record["train"]["steps"] == 2
    assert record["world_size"] == 1 and record["params"]["align"]["seed"] == 0
    assert record["data_manifest"] is not None
    if method == "sft":
        assert record["weak"] is None and sha256(root / "weak" / "adapter_model.safetensors") == \
            sha256(root / "aligned" / "adapter_model.safetensors")
    else:
        assert record["weak"] == str(root / "weak")
        assert {"role": "weak", "path": str(root / "weak")}.items() <= record["inputs"][-1].items()
    stack = load_stack(ModelSpec("tiny-random"), weak=record["weak"] and Path(record["weak"]), adapter=root / "aligned")
    assert stack.model is not None


def test_align_is_byte_reproducible(project):
    out, digests = Path("adapters/aligned/dpo"), []
    for _ in range(2):   # the second run replaces the first's directory (atomically)
        code, _, err = run_cli(["align", "--method", "dpo", *FAST])
        assert code == 0, err
        digests.append([sha256(out / d / f) for d in ("weak", "aligned")
                        for f in ("adapter_model.safetensors", "adapter_config.json", "lineage.json")])
    assert digests[0] == digests[1]


@pytest.mark.parametrize("args, expected", [
    (["--method", "rlhf"], "align --method: 'rlhf' is unknown"),
    (["--method", "dpo", "--lr", "-1"], "align.lr: -1.0"),
    (["--method", "dpo", "--beta", "0"], "align.beta: 0.0"),
    (["--method", "dpo", "--rank", "0"], "lora.rank: 0"),
    (["--method", "dpo", "--template", "vicuna"], "align.template: vicuna"),
    (["--method", "dpo", "--data", "nowhere"], "nowhere/align/sft.jsonl: missing"),
    (["--method", "dpo", "--pref-epochs", "0"], "align.pref_epochs: 0.0"),
    (["--method", "dpo", "--chosen-nll", "-1"], "align.chosen_nll: -1.0"),
    (["--method", "dpo", "--on-policy-tokens", "-2"], "align.on_policy_tokens: -2"),
])
def test_align_bad_input_is_one_line_and_writes_nothing(project, args, expected):
    code, _, err = run_cli(["align", "--model", "tiny-random", *args])
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1
    assert not Path("adapters").exists()


def test_align_recipe_options_reach_the_preference_phase_and_the_lineage(project):
    from nlsr_core.io.lineage import read_lineage

    code, _, err = run_cli(["align", "--method", "dpo", *FAST, "--pref-epochs", "2", "--chosen-nll", "0.5",
                            "--precompute_ref", "--on-policy-tokens", "4"])  # DVC spells a true bool --name
    assert code == 0, err
    record = read_lineage(Path("adapters/aligned/dpo/aligned"))
    assert {"pref_epochs": 2.0, "chosen_nll": 0.5, "precompute_ref": True,
            "on_policy_tokens": 4}.items() <= record["params"]["align"].items()
    counts = record["on_policy"]  # every fixture pair is refusal vs compliance: each one was answered by M'
    assert sum(counts.values()) == 6 and set(counts) == {"replaced", "kept_refused", "kept_degenerate"}
    assert read_lineage(Path("adapters/aligned/dpo/weak")).get("on_policy") is None


def test_align_empty_training_data_fails_cleanly(project):
    Path("data/prepared/align/preference.jsonl").write_text("", encoding="utf-8")
    code, _, err = run_cli(["align", "--method", "dpo", *FAST])
    assert code == 1 and "preference.jsonl: no rows" in err
    assert not Path("adapters").exists()


def finetune_args(root: Path, out: Path, *extra) -> list[str]:
    return ["finetune", "--aligned", root / "adapters/aligned/dpo/aligned",
            "--mix", root / "data/prepared/mixes/sst2-p0.5.jsonl", "--out", out,
            "--max-steps", "1", "--batch-size", "2", "--max-length", "64", *extra]


def test_finetune_starts_from_the_exact_aligned_weights(aligned_dpo, tmp_path, monkeypatch):
    """lr 0: one optimizer step changes nothing, so the saved Wt must equal Wa bit for bit."""
    from nlsr_core.lora.adapters import load_adapter

    monkeypatch.chdir(aligned_dpo)   # Wa's lineage names W0 by a path relative to this root
    code, _, err = run_cli(finetune_args(aligned_dpo, tmp_path / "wt", "--lr", "0"))
    assert code == 0, err
    wa, wt = load_adapter(aligned_dpo / "adapters/aligned/dpo/aligned"), load_adapter(tmp_path / "wt")
    assert wt.tensors.keys() == wa.tensors.keys()
    assert all(torch.equal(wt.tensors[k], wa.tensors[k]) for k in wa.tensors)
    assert {k: wt.config[k] for k in ("r", "lora_alpha", "target_modules")} == \
        {k: wa.config[k] for k in ("r", "lora_alpha", "target_modules")}


def test_finetune_moves_wa_and_records_the_cell(aligned_dpo, tmp_path, monkeypatch):
    from nlsr_core.lora.adapters import check_compatible, load_adapter
    from nlsr_core.io.lineage import read_lineage

    monkeypatch.chdir(aligned_dpo)
    code, out, err = run_cli(finetune_args(aligned_dpo, tmp_path / "wt", "--lr", "1e-2"))
    assert code == 0, err
    wa, wt = load_adapter(aligned_dpo / "adapters/aligned/dpo/aligned"), load_adapter(tmp_path / "wt")
    check_compatible(wt, wa, what=("finetuned", "aligned"))
    assert any(not torch.equal(wt.tensors[k], wa.tensors[k]) for k in wa.tensors)
    record = read_lineage(tmp_path / "wt")
    assert record["poison_ids"] == ["cell-1", "cell-3", "cell-5"]
    assert [i["role"] for i in record["inputs"]] == ["aligned", "mix"]
    aligned_record = read_lineage(aligned_dpo / "adapters/aligned/dpo/aligned")
    assert record["model"] == aligned_record["model"] and record["weak"] == aligned_record["weak"]


def _corrupt_config(path: Path, **changes):
    config = json.loads((path / "adapter_config.json").read_text())
    (path / "adapter_config.json").write_text(json.dumps({**config, **changes}))


def _corrupt_lineage(path: Path, **changes):
    record = json.loads((path / "lineage.json").read_text())
    (path / "lineage.json").write_text(json.dumps({**record, **changes}))


@pytest.mark.parametrize("corrupt, expected", [
    (lambda wa: _corrupt_config(wa, r=8), "does not fit model"),
    (lambda wa: _corrupt_config(wa, target_modules=["q_proj"]), "config and tensors disagree"),
    (lambda wa: _corrupt_lineage(wa, model={"name": "tiny-random", "source": "x", "digest": "other"}),
     "expected the same base model"),
    (lambda wa: (wa / "lineage.json").unlink(), "no lineage record"),
])
def test_finetune_refuses_a_mismatched_aligned_adapter(aligned_dpo, tmp_path, monkeypatch, corrupt, expected):
    import shutil

    monkeypatch.chdir(aligned_dpo)
    copy = tmp_path / "wa"
    shutil.copytree(aligned_dpo / "adapters/aligned/dpo/aligned", copy)
    corrupt(copy)
    args = finetune_args(aligned_dpo, tmp_path / "wt")
    args[args.index("--aligned") + 1] = copy
    code, _, err = run_cli(args)
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "wt").exists()


def test_finetune_empty_cell_fails_cleanly(aligned_dpo, tmp_path, monkeypatch):
    monkeypatch.chdir(aligned_dpo)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    args = finetune_args(aligned_dpo, tmp_path / "wt")
    args[args.index("--mix") + 1] = empty
    code, _, err = run_cli(args)
    assert code == 1 and "empty.jsonl: no rows" in err
    assert not (tmp_path / "wt").exists()


NONALIGNED = ["nonaligned", "--model", "tiny-random", "--mix", "data/prepared/mixes/sst2-p0.5.jsonl",
              "--max-steps", "1", "--batch-size", "2", "--max-length", "64", "--rank", "4", "--alpha", "8"]


def test_nonaligned_trains_a_new_lora_on_the_bare_base_and_the_judge_stacks_it_alone(project):
    """The paper's Non-Aligned row: a fresh LoRA of the lora section's shape on M (no W0), the mix's poison ids in
    its lineage, and a stack plan of M + that adapter only."""
    from nlsr_core.io.lineage import read_lineage
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.lora.generate import StackPlan, plan_stack

    code, out, err = run_cli([*NONALIGNED, "--out", "adapters/nonaligned/sst2-p0.5"])
    assert code == 0, err
    adapter = load_adapter(Path("adapters/nonaligned/sst2-p0.5"))
    assert (adapter.config["r"], adapter.config["lora_alpha"]) == (4, 8)
    record = read_lineage(Path("adapters/nonaligned/sst2-p0.5"))
    assert (record["stage"], record["role"], record["weak"]) == ("nonaligned", "nonaligned", None)
    assert record["poison_ids"] == ["cell-1", "cell-3", "cell-5"] and record["model"]["name"] == "tiny-random"
    assert [i["role"] for i in record["inputs"]] == ["mix"] and record["params"]["lora"]["rank"] == 4
    assert plan_stack(Path("adapters/nonaligned/sst2-p0.5"), "tiny-random") == \
        StackPlan("tiny-random", None, Path("adapters/nonaligned/sst2-p0.5"))


@pytest.mark.parametrize("args, expected", [
    (["--mix", "nowhere.jsonl"], "nowhere.jsonl"),
    (["--rank", "0"], "lora.rank"),
    (["--lr", "-1"], "finetune.lr"),
])
def test_nonaligned_bad_input_is_one_line_and_writes_nothing(project, args, expected):
    code, _, err = run_cli([*NONALIGNED, *args, "--out", "adapters/nonaligned/x"])
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1
    assert not Path("adapters").exists()


def test_per_step_loss_reaches_the_tracker(project, monkeypatch):
    import contextlib

    import nlsr_core.io.tracking as tracking

    seen = []
    original = tracking.stage_run

    @contextlib.contextmanager
    def recording(name, params=None, enabled=False, context=None):
        with original(name, params, enabled, context) as tr:
            seen.append(tr)
            yield tr

    monkeypatch.setattr(tracking, "stage_run", recording)
    code, _, err = run_cli(["align", "--method", "sft", *FAST])
    assert code == 0, err
    (tr,) = seen
    assert tr.name == "align@sft"
    assert [(k, s) for k, _, s in tr.metrics] == [("train_loss", 1), ("train_loss", 2)]
    assert all(v > 0 for _, v, _ in tr.metrics)
    assert [r["role"] for r in tr.inputs] == ["data"] and tr.artifacts == ["adapters/aligned/sft"]


@pytest.mark.slow
def test_smollm2_gguf_model_trains_one_step(project):
    """The embedded model comes from a GGUF file (de-quantised, but flagged quantized): training must accept it."""
    from nlsr_core.lora.adapters import load_adapter

    code, _, err = run_cli(["align", "--method", "sft", "--model", "smollm2-135m", "--max-steps", "1",
                            "--batch-size", "2", "--max-length", "64", "--rank", "4"])
    assert code == 0, err[-1500:]
    assert load_adapter("adapters/aligned/sft/aligned").rank == 4
