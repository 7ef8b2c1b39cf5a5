"""The launch prefix: a training stage re-executes itself under `launch.prefix` with the same options, once; under
`torchrun --nproc_per_node 2` it really trains data-parallel (world size 2, gloo) and the main process alone saves."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from tests.conftest import run_cli


@click.command("demo")
@click.option("--name", default="x")
@click.option("--n", type=int, default=3)
@click.option("--flag/--no-flag", default=False)
@click.option("--verbose", is_flag=True)
@click.option("--tag", multiple=True)
@click.option("--launch-prefix", default="python -m stages.cli")
@click.pass_context
def demo(ctx, **_):
    ctx.obj = ctx


def parsed(args: list[str]) -> click.Context:
    return demo.make_context("demo", args)


@pytest.mark.parametrize("args, expected", [
    ([], ["--name", "x", "--n", "3", "--no-flag"]),
    (["--n", "7", "--flag", "--verbose", "--tag", "a", "--tag", "b", "--launch-prefix", "torchrun"],
     ["--name", "x", "--n", "7", "--flag", "--verbose", "--tag", "a", "--tag", "b"]),
])
def test_options_travel_as_explicit_words_without_the_prefix(args, expected):
    from stages.launch import _options_argv

    assert _options_argv(parsed(args)) == expected


@pytest.mark.parametrize("prefix, launched, runs_here", [
    ("python -m stages.cli", "", True),
    ("  python   -m stages.cli ", "", True),
    ("torchrun --nproc_per_node 2 -m stages.cli", "1", True),   # already under the launcher: no recursion
])
def test_in_process_cases(monkeypatch, prefix, launched, runs_here):
    from stages.launch import LAUNCHED_ENV, relaunch

    monkeypatch.setenv(LAUNCHED_ENV, launched)
    assert (relaunch(parsed([]), prefix) is None) is runs_here


def test_relaunch_runs_the_prefix_with_the_command_and_its_options(tmp_path, monkeypatch):
    from stages.launch import LAUNCHED_ENV, relaunch

    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    probe = tmp_path / "probe.py"
    probe.write_text("import json, os, sys\n"
                     f"json.dump({{'argv': sys.argv[1:], 'env': os.environ.get({LAUNCHED_ENV!r})}}, "
                     f"open({str(tmp_path / 'seen.json')!r}, 'w'))\nsys.exit(3)\n")
    status = relaunch(parsed(["--n", "5"]), f"python {probe} --extra")
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert status == 3
    assert seen == {"argv": ["--extra", "demo", "--name", "x", "--n", "5", "--no-flag"], "env": "1"}


def test_a_prefix_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from test_train import write_prepared

    write_prepared(tmp_path)
    code, _, err = run_cli(["align", "--method", "sft", "--model", "tiny-random",
                            "--launch-prefix", "no-such-launcher-xyz -m stages.cli"])
    assert code == 1 and "launch.prefix 'no-such-launcher-xyz -m stages.cli': cannot start it" in err
    assert not Path("adapters").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_torchrun_two_processes_train_data_parallel_and_save_once(tmp_path, monkeypatch, method):
    from nlsr_core.lora.adapters import load_adapter
    from nlsr_core.io.lineage import read_lineage
    from stages.launch import LAUNCHED_ENV
    from test_train import FAST, write_prepared

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    write_prepared(tmp_path, n=8)
    prefix = "torchrun --standalone --nproc_per_node 2 -m stages.cli"
    code, _, err = run_cli(["align", "--method", method, *FAST, "--launch-prefix", prefix])
    assert code == 0, err[-2000:]
    out = Path("adapters/aligned") / method
    for part in ("weak", "aligned"):
        record = read_lineage(out / part)
        assert record["world_size"] == 2                      # two gloo ranks, not one process
        assert record["train"]["steps"] == 2
        assert load_adapter(out / part).rank == 4
    assert sorted(p.name for p in Path("adapters/aligned").iterdir()) == [method]   # no temp dirs left behind
