"""Output rules (nlsr_core.io.outputs): what a command may replace, how it replaces it, and the destructive `--out`
cases of the issue, each as the user typed it. Byte-stable files: sorted safetensors metadata, fixed modes."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch

from nlsr_core.io.lineage import sha256_dir
from nlsr_core.method.neuron_keys import gram_key
from nlsr_core.method.neurons import save_masks, save_stats
from nlsr_core.io.outputs import OutputError, claim, recover, replace, written_by
from tests.conftest import run_cli
from tests.test_prepare_data_cli import SMALL
from tests.conftest import random_adapter, random_masks, write_adapter


def tree(path: Path) -> dict[str, bytes]:
    """Every file below `path` with its bytes (hidden temp/aside siblings are not below it)."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


# --------------------------------------------------------------------------------------------- the rules
@pytest.fixture()
def place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inputs" / "a").mkdir(parents=True)
    (tmp_path / "inputs" / "a" / "w.bin").write_bytes(b"1")
    (tmp_path / "file.txt").write_text("x")
    return tmp_path


@pytest.mark.parametrize("out, needle", [
    (".", "is the working directory"),
    ("..", "is an ancestor of the working directory"),
    ("inputs/a", "is the input --in inputs/a"),
    ("inputs", "contains the input --in inputs/a"),
    ("inputs/a/sub", "lies inside the input --in inputs/a"),
    ("file.txt", "is a file"),
])
def test_claim_refuses(place, out, needle):
    with pytest.raises(OutputError, match=needle) as info:
        claim(out, "realign", inputs=[("--in", "inputs/a")])
    assert str(info.value).startswith(f"--out {out}: ") and "\n" not in str(info.value)


def test_claim_refuses_a_directory_it_did_not_write(place):
    (place / "mine").mkdir()
    (place / "mine" / "lineage.json").write_text(json.dumps({"stage": "amplify"}))
    with pytest.raises(OutputError, match="names stage 'amplify', not realign"):
        claim("mine", "realign")
    os.symlink(place / "inputs", place / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        claim("link", "realign")


def test_claim_accepts_new_empty_and_own_outputs(place):
    (place / "empty").mkdir()
    (place / "own").mkdir()
    (place / "own" / "lineage.json").write_text(json.dumps({"stage": "safelora"}))
    for out in ("new/deeper", "empty", "own"):
        assert claim(out, "realign", recognise=written_by("realign", "safelora")).path == Path(out)
    assert not (place / "new").exists()   # claiming writes nothing


def test_recover_restores_an_aside_output_and_drops_temp_dirs(tmp_path):
    final = tmp_path / "out"
    (tmp_path / ".out.tmp-abc").mkdir()
    (tmp_path / ".out.old-abc").mkdir()
    (tmp_path / ".out.old-abc" / "f").write_text("old")
    recover(final)   # killed between the two renames: the old output comes back
    assert (final / "f").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / ".out.old-def").mkdir()
    recover(final)   # killed after the second rename: the aside copy is dropped, the new output stays
    assert (final / "f").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_swaps_whole_and_keeps_the_old_output_on_error(tmp_path):
    output = claim(tmp_path / "out", "realign")
    with replace(output) as tmp:
        write_adapter(tmp, random_adapter(1))
        (tmp / "lineage.json").write_text(json.dumps({"stage": "realign"}))
    before = tree(tmp_path / "out")
    with pytest.raises(RuntimeError):
        with replace(claim(tmp_path / "out", "realign")) as tmp:
            (tmp / "partial").write_text("x")
            raise RuntimeError("killed by a bug")
    assert tree(tmp_path / "out") == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stats_and_masks_metadata_are_sorted_and_bytes_stable(tmp_path):
    ref = random_adapter(2)
    stats = {gram_key(m): torch.eye(4) for m in ref.modules}
    meta = {"method": "lowrank", "preset": "paper", "sparsity": "0.5", "zeta": "1"}
    digests = set()
    for i in range(8):  # the library's metadata order changes from one save to the next
        save_stats(stats, tmp_path / f"s{i}.safetensors", {"method": "lowrank"})
        save_masks(random_masks(ref, 0), tmp_path / f"m{i}.safetensors", meta)
        digests.add((sha256_dir(tmp_path / f"s{i}.safetensors"), sha256_dir(tmp_path / f"m{i}.safetensors")))
    assert len(digests) == 1
    data = (tmp_path / "m0.safetensors").read_bytes()
    header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
    assert list(header["__metadata__"]) == sorted(["format", *meta])


def test_adapter_bytes_are_the_library_bytes(tmp_path):
    """One metadata key: the canonical file is exactly what safetensors writes (no adapter digest moved)."""
    from safetensors.torch import save

    from nlsr_core.lora.adapters import save_adapter

    adapter = random_adapter(3)
    save_adapter(adapter, tmp_path)
    tensors = {k: adapter.tensors[k].contiguous() for k in sorted(adapter.tensors)}
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == save(tensors, metadata={"format": "pt"})


# --------------------------------------------------------------------------------------------- the cases
@pytest.fixture()
def repo(tmp_path, monkeypatch):
    """The issue's setting: a fine-tuned adapter, a reference, identify' stats directory."""
    monkeypatch.chdir(tmp_path)
    ft, ref = random_adapter(1), random_adapter(2)
    write_adapter(tmp_path / "adapters/finetuned/sst2-p0.1-dpo", ft)
    write_adapter(tmp_path / "adapters/reference/dpo", ref)
    write_adapter(tmp_path / "adapters/aligned/dpo/aligned", random_adapter(3))
    (tmp_path / "identify/dpo").mkdir(parents=True)
    save_stats({gram_key(m): torch.eye(4) for m in ref.modules}, tmp_path / "identify/dpo/stats.safetensors",
               {"method": "lowrank"})
    return tmp_path


REALIGN = ["realign", "--reference", "adapters/reference/dpo", "--stats", "identify/dpo/stats.safetensors",
           "--sparsity", "0.35"]


def test_out_that_contains_the_finetuned_input_is_refused(repo):
    import shutil

    (repo / "par").mkdir()
    shutil.copytree(repo / "adapters/finetuned/sst2-p0.1-dpo", repo / "par/a")
    before = tree(repo / "par")
    code, _, err = run_cli([*REALIGN, "--finetuned", "par/a", "--out", "par"])
    one_line_error(code, err, "--out par: contains the input --finetuned par/a")
    assert tree(repo / "par") == before


@pytest.mark.parametrize("args, out, needle", [
    (REALIGN + ["--finetuned", "adapters/finetuned/sst2-p0.1-dpo"], "adapters/reference/dpo",
     "is the input --reference"),
    (REALIGN + ["--finetuned", "adapters/finetuned/sst2-p0.1-dpo"], "identify/dpo",
     "contains the input --stats identify/dpo/stats.safetensors"),
    (["realign", "--method", "safelora", "--aligned", "adapters/aligned/dpo/aligned", "--finetuned",
      "adapters/finetuned/sst2-p0.1-dpo"], "adapters/aligned/dpo/aligned", "is the input --aligned"),
    (["safelora", "--aligned", "adapters/aligned/dpo/aligned", "--finetuned", "adapters/finetuned/sst2-p0.1-dpo"],
     "adapters/aligned/dpo", "contains the input --aligned"),
])
def test_out_equal_to_an_input_is_refused(repo, args, out, needle):
    before = tree(repo)
    code, _, err = run_cli([*args, "--out", out])
    one_line_error(code, err, f"--out {out}: {needle}")
    assert tree(repo) == before


def test_out_dot_in_a_scratch_directory_is_refused(repo, monkeypatch):
    scratch = repo / "scratch"
    scratch.mkdir()
    (scratch / "notes.txt").write_text("keep me")
    monkeypatch.chdir(scratch)
    code, _, err = run_cli(["realign", "--finetuned", "../adapters/finetuned/sst2-p0.1-dpo", "--reference",
                            "../adapters/reference/dpo", "--stats", "../identify/dpo/stats.safetensors",
                            "--sparsity", "0.35", "--out", "."])
    one_line_error(code, err, "--out .: is the working directory")
    assert sorted(p.name for p in scratch.iterdir()) == ["notes.txt"]


def test_realign_replaces_its_own_output_only(repo):
    args = [*REALIGN, "--finetuned", "adapters/finetuned/sst2-p0.1-dpo"]
    assert run_cli([*args, "--out", "out"])[0] == 0
    first = tree(repo / "out")
    code, _, err = run_cli([*args, "--seed", "5", "--out", "out"])
    assert code == 0, err
    assert tree(repo / "out") != first and sorted(p.name for p in repo.iterdir() if p.name.startswith(".")) == []
    (repo / "foreign").mkdir()
    (repo / "foreign" / "notes.txt").write_text("x")
    code, _, err = run_cli([*args, "--out", "foreign"])
    one_line_error(code, err, "--out foreign: a non-empty directory that nlsr realign did not write")
    assert (repo / "foreign" / "notes.txt").read_text() == "x"


def test_several_adapters_each_output_obeys_the_rules(repo):
    """--out DIR with several adapters is a container: it may hold other things, each DIR/<name> is checked."""
    import shutil

    shutil.copytree(repo / "adapters/finetuned/sst2-p0.1-dpo", repo / "adapters/finetuned/b")
    both = ["adapters/finetuned/sst2-p0.1-dpo", "adapters/finetuned/b"]
    code, _, err = run_cli([*REALIGN, "--finetuned", *both, "--out", "adapters/finetuned"])
    one_line_error(code, err, "is the input --finetuned")
    (repo / "repaired" / "b").mkdir(parents=True)
    (repo / "repaired" / "b" / "notes.txt").write_text("x")
    (repo / "repaired" / "README").write_text("other things may live here")
    code, _, err = run_cli([*REALIGN, "--finetuned", *both, "--out", "repaired"])
    one_line_error(code, err, "--out repaired/b: a non-empty directory")
    assert not (repo / "repaired" / "sst2-p0.1-dpo").exists()  # checked before anything was written
    (repo / "repaired" / "b" / "notes.txt").unlink()
    code, _, err = run_cli([*REALIGN, "--finetuned", *both, "--out", "repaired"])
    assert code == 0, err
    assert sorted(p.name for p in (repo / "repaired").iterdir()) == ["README", "b", "sst2-p0.1-dpo"]
    code, _, err = run_cli([*REALIGN, "--finetuned", *both, "--out", "adapters/reference/dpo"])
    one_line_error(code, err, "lies inside the input --reference adapters/reference/dpo")


def test_prepare_data_keeps_unrelated_files(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "my-notes.txt").write_text("mine")
    code, _, err = run_cli(["prepare-data", *SMALL, "--out", out])
    one_line_error(code, err, f"--out {out}: a non-empty directory that nlsr prepare-data did not write")
    assert sorted(p.name for p in out.iterdir()) == ["my-notes.txt"]
    (out / "my-notes.txt").unlink()
    assert run_cli(["prepare-data", *SMALL, "--out", out])[0] == 0
    (out / "align" / "extra.jsonl").write_text("{}\n")   # a file its manifest does not list
    code, _, err = run_cli(["prepare-data", *SMALL, "--out", out])
    one_line_error(code, err, "it holds align/extra.jsonl, which its manifest.json does not list")
    (out / "align" / "extra.jsonl").unlink()
    code, _, err = run_cli(["prepare-data", *SMALL, "--seed", "3", "--out", out])   # its own output: replaced
    assert code == 0, err


def test_report_file_outputs_never_overwrite_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "judge").mkdir()
    code, _, err = run_cli(["report", "--judged", "judge", "--metrics", "judge/metrics.json"])
    one_line_error(code, err, "--metrics judge/metrics.json: lies inside the input --judged judge")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "mine.png").write_bytes(b"x")
    code, _, err = run_cli(["report", "--judged", "judge", "--plots", "plots"])
    one_line_error(code, err, "--plots plots: a non-empty directory that nlsr report did not write (it holds mine.png")
    assert not (tmp_path / "reports").exists()


def test_generate_never_overwrites_its_prompts(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("How do I bake bread?\n")
    code, _, err = run_cli(["generate", "--model", "tiny-random", "--prompts", prompts, "--out", prompts])
    one_line_error(code, err, f"--out {prompts}: is the input --prompts")
    assert prompts.read_text() == "How do I bake bread?\n"


def test_generate_replaces_only_an_answer_file_it_wrote(tmp_path, monkeypatch):
    """The issue's case 1: --out onto an unrelated file or onto W0's weights (loaded through the adapter's
    lineage) is refused in one line and leaves it byte for byte; an earlier answer file is replaced."""
    from tests.conftest import TINY_MODEL

    monkeypatch.chdir(tmp_path)
    write_adapter(tmp_path / "w0", random_adapter(1))
    write_adapter(tmp_path / "ft", random_adapter(2), {"stage": "finetune", "model": TINY_MODEL, "weak": "w0"})
    (tmp_path / "p.txt").write_text("How do I bake bread?\n")
    (tmp_path / "precious.txt").write_text("my notes\n")
    before = tree(tmp_path)
    args = ["generate", "--adapter", "ft", "--prompts", "p.txt", "--max-new-tokens", 2, "--out"]
    code, _, err = run_cli([*args, "precious.txt"])
    one_line_error(code, err, "--out precious.txt: an existing file that nlsr generate did not write (it is not a "
                              "JSONL file of {id, prompt, response} rows)")
    code, _, err = run_cli([*args, "w0/adapter_model.safetensors"])
    one_line_error(code, err, "--out w0/adapter_model.safetensors: lies inside the input W0 (the weak adapter "
                              "ft/lineage.json names) w0")
    assert tree(tmp_path) == before
    (tmp_path / "answers.jsonl").write_text('{"id": 0, "prompt": "old", "response": "old"}\n')
    code, _, err = run_cli([*args, "answers.jsonl"])
    assert code == 0, err
    assert json.loads((tmp_path / "answers.jsonl").read_text())["prompt"] == "How do I bake bread?"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("command", ["generate", "realign", "audit"])
def test_a_damaged_lineage_is_one_line_for_every_reader(repo, command):
    """The issue's case 4: `echo '{"stage":' > ft/lineage.json`; generate raised a JSONDecodeError traceback and
    realign accepted the adapter. Every reader now answers with the file and the JSON error."""
    ft = "adapters/finetuned/sst2-p0.1-dpo"
    (repo / ft / "lineage.json").write_text('{"stage":\n')
    (repo / "p.txt").write_text("hi\n")
    args = {"generate": ["generate", "--adapter", ft, "--prompts", "p.txt", "--out", "a.jsonl"],
            "realign": [*REALIGN, "--finetuned", ft, "--out", "out"],
            "audit": ["audit", ft]}[command]
    before = tree(repo)
    code, _, err = run_cli(args)
    one_line_error(code, err, f"nlsr: error: {ft}/lineage.json: not valid JSON (Expecting value at line 2 column 1); "
                              "expected the lineage record of an nlsr artifact")
    assert tree(repo) == before and not (repo / "out").exists()


def test_report_replaces_only_its_own_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "judge").mkdir()
    (tmp_path / "results.md").write_text("# My own results\n")
    code, _, err = run_cli(["report", "--judged", "judge", "--results", "results.md"])
    one_line_error(code, err, "--results results.md: an existing file that nlsr report did not write (its first "
                              "line is not '# Results')")
    assert (tmp_path / "results.md").read_text() == "# My own results\n"


def test_lineage_records_no_machine_path(repo):
    """Absolute paths under the working directory (the repository root for DVC) are recorded relative to it."""
    args = ["realign", "--finetuned", repo / "adapters/finetuned/sst2-p0.1-dpo", "--reference",
            repo / "adapters/reference/dpo", "--stats", repo / "identify/dpo/stats.safetensors", "--sparsity", "0.35"]
    code, _, err = run_cli([*args, "--out", repo / "out"])
    assert code == 0, err
    text = (repo / "out" / "lineage.json").read_text()
    assert str(repo) not in text and '"path": "adapters/reference/dpo"' in text


def test_output_modes_are_0644_and_0755_whatever_the_umask(repo):
    old = os.umask(0o077)
    try:
        code, _, err = run_cli([*REALIGN, "--finetuned", "adapters/finetuned/sst2-p0.1-dpo", "--out", "out"])
        with replace(claim(repo / "nested", "realign")) as tmp:
            write_adapter(tmp / "sub", random_adapter(1))
    finally:
        os.umask(old)
    assert code == 0, err
    modes = {p.relative_to(repo).as_posix(): p.stat().st_mode & 0o777
             for root in ("out", "nested") for p in [repo / root, *(repo / root).rglob("*")]}
    assert modes == {"out": 0o755, "out/adapter_config.json": 0o644, "out/adapter_model.safetensors": 0o644,
                     "out/lineage.json": 0o644, "nested": 0o755, "nested/sub": 0o755,
                     "nested/sub/adapter_config.json": 0o644, "nested/sub/adapter_model.safetensors": 0o644}
