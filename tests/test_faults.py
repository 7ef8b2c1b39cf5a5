"""Fault injection: every writing command is SIGKILLed at a point of its output step and must leave the previous
output intact or the new one complete; the next run must succeed and leave no temp or aside directory.

The points come from nlsr_core.io.outputs (NLSR_FAULT_DIR / NLSR_FAULT_PAUSE, installed by the CLI): `claimed`
(checked, before any compute), `writing` (temp directory created, empty), `filled` (new output complete in the
temp directory), `aside` (old output renamed aside, new not yet in: between the two renames), `replaced` (new
output in, old aside not yet deleted); `mid-compute` kills a training command while it trains. realign (cheap)
is killed at every point; each other command at one or two points. The model-backed commands share one tiny
project (module fixture) and are marked slow like the pipeline tests.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.test_outputs import tree

POINTS = ("claimed", "writing", "filled", "aside", "replaced")
STARTED: list[subprocess.Popen] = []   # every `nlsr` this module starts in the background, stopped after each test


def _interruptible() -> None:
    """SIGINT as a terminal delivers it. Under a background job (`cmd &` in a script, some CI runners) every child
    inherits SIGINT ignored (POSIX) and Python then installs no KeyboardInterrupt handler, so the ^C tests would wait
    for a signal the command rightly ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list, cwd: Path, env: dict, **popen) -> subprocess.Popen:
    """`nlsr ARGS` in its own process group (session), recorded so that it ends with the test, pass or fail: a
    process paused at a fault point (NLSR_FAULT_PAUSE) otherwise waits for ever."""
    proc = subprocess.Popen([sys.executable, "-m", "stages.cli", *map(str, args)], cwd=cwd, env=env,
                            start_new_session=True, preexec_fn=_interruptible, **popen)
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """End `proc`'s process group unless the test already reaped it: SIGTERM (its clean-up runs), then SIGKILL."""
    for sig, timeout in ((signal.SIGTERM, 30), (signal.SIGKILL, 60)):
        if proc.poll() is not None:     # reaped: its pid may be reused, signal nothing
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture(autouse=True)
def no_orphans():
    """Every background `nlsr` a test started ends with it, whatever the test's outcome."""
    yield
    while STARTED:
        stop(STARTED.pop())


def kill_at(args: list, cwd: Path, point: str, delay: float = 1.0) -> None:
    """Run `nlsr ARGS` in its own process group and SIGKILL it at `point` (see the module docstring)."""
    faults = cwd / f".faults-{time.monotonic_ns()}"
    faults.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NLSR_TRACKING": "off", "NLSR_FAULT_DIR": str(faults),
           "NLSR_FAULT_PAUSE": "" if point == "mid-compute" else point}
    proc = start(args, cwd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marker = faults / ("claimed" if point == "mid-compute" else point)
    deadline = time.monotonic() + 600
    try:
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"exited ({proc.returncode}) before {point}:\n{proc.stdout.read().decode()}")
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.05)
        if point == "mid-compute":
            time.sleep(delay)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if point == "mid-compute":
        assert not (faults / "writing").exists(), "the kill came after the compute, not during it"
    shutil.rmtree(faults)


def nlsr(args: list, cwd: Path) -> None:
    """Run `nlsr ARGS` to completion from `cwd` (in this process: only the killed runs need their own)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        code, _, err = run_cli(args)
    assert code == 0, err


def leftovers(out: Path) -> list[str]:
    """Hidden temp/aside siblings of `out`, and its lock file while someone holds it (a SIGKILLed writer leaves
    the file, free: flock dies with its holder, and the next writer removes it)."""
    from nlsr_core.io.locks import is_free, lock_path

    return sorted(p.name for p in out.parent.glob(f".{out.name}.*")
                  if p != lock_path(out) or not is_free(out))


def aside_of(out: Path) -> Path:
    found = sorted(out.parent.glob(f".{out.name}.old-*"))
    assert len(found) == 1, leftovers(out)
    return found[0]


def check_after_kill(out: Path, point: str, old: dict, new: dict | None) -> None:
    """The invariant at the instant after the kill: old output intact, or the new one complete."""
    if point == "aside":
        assert not out.exists() and tree(aside_of(out)) == old
    elif point == "replaced":
        assert tree(out) == new if new is not None else tree(out) != old
    else:
        assert tree(out) == old


def kill_then_rerun(args: list, cwd: Path, out: Path, point: str, new: dict | None = None, delay: float = 1.0
                    ) -> dict:
    """Kill `args` at `point` over an existing output, check the invariant, rerun to completion, check the new
    output (equal to `new` when given) and that nothing hidden is left; return the new output's files."""
    old = tree(out)
    assert old, "the test needs an earlier output to replace"
    kill_at(args, cwd, point, delay)
    check_after_kill(out, point, old, new)
    nlsr(args, cwd)
    done = tree(out)
    assert done != old and (new is None or done == new)
    assert leftovers(out) == []
    return done


# --------------------------------------------------------------------------------------------- cheap commands
@pytest.fixture()
def adapters(tmp_path):
    """A fine-tuned, a reference and an aligned adapter (random tensors, tiny-random shapes) and stats."""
    import torch

    from nlsr_core.method.neuron_keys import gram_key
    from nlsr_core.method.neurons import save_stats
    from tests.conftest import TINY_MODEL, random_adapter, write_adapter

    lineage = {"stage": "finetune", "inputs": [], "params": {}, "model": TINY_MODEL, "weak": None}
    write_adapter(tmp_path / "ft", random_adapter(1), lineage)
    write_adapter(tmp_path / "ref", random_adapter(2))
    write_adapter(tmp_path / "al", random_adapter(3), {**lineage, "stage": "align", "method": "dpo"})
    save_stats({gram_key(m): torch.eye(4) for m in random_adapter(2).modules}, tmp_path / "stats.safetensors",
               {"method": "lowrank"})
    return tmp_path


def realign_args(out: str, seed: int, *finetuned: str) -> list:
    return ["realign", "--finetuned", *(finetuned or ("ft",)), "--reference", "ref", "--stats", "stats.safetensors",
            "--sparsity", "0.35", "--seed", seed, "--out", out]


@pytest.mark.parametrize("point", POINTS)
def test_realign_killed_at_every_point(adapters, point):
    nlsr(realign_args("expected", 7), adapters)         # what the interrupted run should produce
    nlsr(realign_args("out", 0), adapters)              # the earlier output it replaces
    kill_then_rerun(realign_args("out", 7), adapters, adapters / "out", point, new=tree(adapters / "expected"))


def test_realign_restores_the_aside_output_at_its_next_start(adapters):
    """Killed between the renames, the old output waits aside; the next start puts it back before anything."""
    nlsr(realign_args("out", 0), adapters)
    old = tree(adapters / "out")
    kill_at(realign_args("out", 7), adapters, "aside")
    assert not (adapters / "out").exists()
    kill_at(realign_args("out", 7), adapters, "claimed")   # the next start, stopped right after its checks
    assert tree(adapters / "out") == old and leftovers(adapters / "out") == []


def test_realign_several_adapters_killed_between_renames(adapters):
    shutil.copytree(adapters / "ft", adapters / "ft2")
    nlsr(realign_args("many", 0, "ft", "ft2"), adapters)
    old = {name: tree(adapters / "many" / name) for name in ("ft", "ft2")}
    kill_at(realign_args("many", 7, "ft", "ft2"), adapters, "aside")   # during the first adapter's swap
    assert not (adapters / "many" / "ft").exists() and tree(aside_of(adapters / "many" / "ft")) == old["ft"]
    assert tree(adapters / "many" / "ft2") == old["ft2"]
    nlsr(realign_args("many", 7, "ft", "ft2"), adapters)
    assert all(tree(adapters / "many" / n) != old[n] for n in old) and leftovers(adapters / "many" / "ft") == []


def test_safelora_killed_between_renames(adapters):
    args = lambda tau: ["safelora", "--finetuned", "ft", "--aligned", "al", "--safelora-tau", tau, "--out", "sl"]
    nlsr(args(0.9), adapters)
    kill_then_rerun(args(0.2), adapters, adapters / "sl", "aside")


def test_amplify_killed_after_the_new_output_is_in(adapters):
    args = lambda beta: ["amplify", "--aligned", "al", "--beta", beta, "--out", "we"]
    nlsr(args(0.9), adapters)
    kill_then_rerun(args(0.5), adapters, adapters / "we", "replaced")


def test_prepare_data_killed_with_the_new_output_in_its_temp_dir(tmp_path):
    from tests.test_prepare_data_cli import SMALL

    nlsr(["prepare-data", *SMALL, "--out", "prepared"], tmp_path)
    kill_then_rerun(["prepare-data", *SMALL, "--seed", 1, "--out", "prepared"], tmp_path, tmp_path / "prepared",
                    "filled")


def test_report_killed_between_renames(tmp_path):
    from tests.test_report import CELLS, _doc

    for (task, p, method), variants in CELLS.items():
        cell = tmp_path / "judge" / f"{task}-p{p:g}-{method}"
        cell.mkdir(parents=True)
        (cell / "judged.json").write_text(json.dumps(_doc(task, p, method, variants)))
    args = ["report", "--judged", "judge", "--plots", "plots"]
    nlsr(args, tmp_path)
    doc = tmp_path / "judge" / "sst2-p0.1-dpo" / "judged.json"
    changed = json.loads(doc.read_text())
    changed["variants"]["finetuned"]["hs"]["pct"] = 12.5
    doc.write_text(json.dumps(changed))
    new = kill_then_rerun(args, tmp_path, tmp_path / "plots", "aside")
    assert set(new) >= {"hs_fa_vs_p.csv", "hs_fa_vs_p.png", "similarity.csv"}


# --------------------------------------------------------------------------------------------- writers and interrupts
def start_paused(args: list, cwd: Path, point: str, **env) -> tuple[subprocess.Popen, Path]:
    """Start `nlsr ARGS` in its own process and wait until it stops at `point` (NLSR_FAULT_PAUSE); returns the
    process and its fault directory. `env` adds variables (NLSR_FAULT_SLOW=...). The process is stopped after
    the test (`no_orphans`) if the test has not reaped it."""
    faults = cwd / f".faults-{time.monotonic_ns()}"
    faults.mkdir()
    proc = start(args, cwd, {**os.environ, "PYTHONPATH": str(REPO), "NLSR_TRACKING": "off",
                             "NLSR_FAULT_DIR": str(faults), "NLSR_FAULT_PAUSE": point, **env},
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(proc, faults / point.partition("@")[0])
    return proc, faults


def wait_for(proc: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before {marker.name}:\n{proc.stderr.read()}")
        assert time.monotonic() < deadline, f"never reached {marker.name}"
        time.sleep(0.05)


def run_nlsr(args: list, cwd: Path) -> subprocess.CompletedProcess:
    """`nlsr ARGS` to completion in its own process (a second writer beside a paused one)."""
    return subprocess.run([sys.executable, "-m", "stages.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO), "NLSR_TRACKING": "off"})


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and not p.name.startswith(".faults"))


def test_a_second_writer_of_the_same_out_is_refused_while_the_first_writes(adapters):
    """Two real writers of one --out: the second gets one line naming the first's pid, deletes nothing of its
    work in progress, and the first then completes its output."""
    nlsr(realign_args("expected", 7), adapters)
    first, faults = start_paused(realign_args("out", 7), adapters, "filled")   # its new output is in its temp dir
    work = [p for p in hidden(adapters) if p.startswith(".out.tmp-")]
    second = run_nlsr(realign_args("out", 3), adapters)
    assert second.returncode == 1 and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"--out out: nlsr realign (pid {first.pid}) is writing it now; expected one writer at a time" \
        in second.stderr
    assert work and all((adapters / w).exists() for w in work)   # the first one's temp dir survived
    assert not (adapters / "out").exists()
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    shutil.rmtree(faults)
    nlsr(realign_args("out", 7), adapters)   # the lock died with its holder: the next writer recovers and writes
    assert tree(adapters / "out") == tree(adapters / "expected") and leftovers(adapters / "out") == []


def test_a_writer_cleans_only_the_stale_siblings_of_its_directory(adapters):
    """Siblings of another output whose writer is alive are kept; those nobody holds are cleaned by the next
    writing command in that directory."""
    live, faults = start_paused(realign_args("busy", 7), adapters, "filled")
    (adapters / ".gone.tmp-abc123").mkdir()          # an interrupted write of `gone`, nobody holds it
    (adapters / ".gone.tmp-abc123" / "f").write_text("x")
    nlsr(realign_args("out", 0), adapters)
    names = hidden(adapters)
    assert not any(n.startswith(".gone.") for n in names), names
    assert any(n.startswith(".busy.tmp-") for n in names) and ".busy.lock" in names, names
    os.killpg(live.pid, signal.SIGKILL)
    live.wait()
    shutil.rmtree(faults)


@pytest.mark.parametrize("point", ["writing", "filled"])
def test_sigterm_leaves_no_hidden_sibling(adapters, point):
    """SIGTERM mid-write: the old output stays and the temp directory goes with the process, not at the next
    run."""
    nlsr(realign_args("out", 0), adapters)
    old = tree(adapters / "out")
    proc, faults = start_paused(realign_args("out", 7), adapters, point)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    shutil.rmtree(faults)
    assert tree(adapters / "out") == old and hidden(adapters) == [], hidden(adapters)


def test_a_second_sigint_during_the_clean_up_waits_for_it(adapters):
    """^C stops the write; a second ^C while its temp directory is being removed takes effect only after."""
    nlsr(realign_args("out", 0), adapters)
    old = tree(adapters / "out")
    proc, faults = start_paused(realign_args("out", 7), adapters, "filled", NLSR_FAULT_SLOW="cleaning")
    os.killpg(proc.pid, signal.SIGINT)
    wait_for(proc, faults / "cleaning")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    shutil.rmtree(faults)
    assert tree(adapters / "out") == old and hidden(adapters) == [], hidden(adapters)


def test_an_interrupted_multi_adapter_run_records_which_children_are_new(adapters):
    """The issue's case 6: killed while writing the second of two adapters, the container says which child is
    new; `audit --verify` reports the record and the temp sibling; the next run cleans both up."""
    shutil.copytree(adapters / "ft", adapters / "ft2")
    nlsr(realign_args("many", 0, "ft", "ft2"), adapters)
    old = {name: tree(adapters / "many" / name) for name in ("ft", "ft2")}
    proc, faults = start_paused(realign_args("many", 7, "ft", "ft2"), adapters, "filled@ft2")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shutil.rmtree(faults)
    assert tree(adapters / "many" / "ft") != old["ft"] and tree(adapters / "many" / "ft2") == old["ft2"]
    record = json.loads((adapters / "many" / "nlsr-progress.json").read_text())
    assert (record["command"], record["complete"], record["pending"]) == ("realign", ["ft"], ["ft2"])
    audit = run_nlsr(["audit", "--verify", "many/ft2"], adapters)
    assert audit.returncode == 0, audit.stderr
    lines = audit.stdout.splitlines()
    assert "incomplete: many/nlsr-progress.json: the last nlsr realign into many stopped before rewriting ft2; " \
           "it holds its earlier output" in lines, audit.stdout
    assert any(line.startswith("leftover: many/.ft2.tmp-") and line.endswith(
        "(an interrupted write of ft2; the next writing command in many removes it)") for line in lines), lines
    nlsr(realign_args("many", 7, "ft", "ft2"), adapters)
    assert sorted(p.name for p in (adapters / "many").iterdir()) == ["ft", "ft2"]


# --------------------------------------------------------------------------------------------- model-backed commands
DATA = ["--sft_refusal", 8, "--sft_benign", 8, "--preference", 8, "--identify", 6, "--eval_harmful", 6,
        "--eval_benign", 4, "--task_train", 30, "--task_test", 6, "--poison_pool", 10, "--calib_harmful", 4,
        "--task_calib", 4, "--finetune-n", 12]
TRAIN = ["--max-steps", 2, "--batch-size", 2, "--max-length", 320]
ALIGN = ["align", "--method", "dpo", "--model", "tiny-random", "--rank", 4, *TRAIN, "--out", "adapters/aligned/dpo"]
FINETUNE = ["finetune", "--aligned", "adapters/aligned/dpo/aligned", "--mix",
            "data/prepared/mixes/sst2-p0.1.jsonl", *TRAIN, "--out", "adapters/finetuned/sst2-p0.1-dpo"]
IDENTIFY = ["identify", "--reference", "adapters/reference/dpo", "--batch-size", 4, "--max-length", 320,
            "--out", "identify/dpo"]
CELL = ["--cell", "sst2-p0.1-dpo", "--model", "tiny-random", "--finetuned", "adapters/finetuned/sst2-p0.1-dpo",
        "--aligned", "adapters/aligned/dpo/aligned", "--reference", "adapters/reference/dpo",
        "--stats", "identify/dpo/stats.safetensors", "--max-new-tokens", 4, "--batch-size", 8,
        "--cache", ".nlsr-cache/judge", "--sparsity", 0.5]
JUDGE = ["judge", "--cell", "sst2-p0.1-dpo", "--model", "tiny-random", "--aligned", "adapters/aligned/dpo/aligned",
         "--finetuned", "adapters/finetuned/sst2-p0.1-dpo", "--realigned", "adapters/realigned/sst2-p0.1-dpo",
         "--max-new-tokens", 4, "--batch-size", 8, "--cache", ".nlsr-cache/judge", "--out", "judge/sst2-p0.1-dpo"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, one_torch_thread):
    """A tiny study (tiny-random, a few rows, two optimizer steps) with one output of every command."""
    root = tmp_path_factory.mktemp("project")
    for args in (["prepare-data", *DATA, "--out", "data/prepared"], ALIGN,
                 ["amplify", "--aligned", "adapters/aligned/dpo/aligned", "--out", "adapters/reference/dpo"],
                 IDENTIFY, FINETUNE,
                 ["realign", "--finetuned", "adapters/finetuned/sst2-p0.1-dpo", "--reference",
                  "adapters/reference/dpo", "--stats", "identify/dpo/stats.safetensors", "--sparsity", 0.5,
                  "--out", "adapters/realigned/sst2-p0.1-dpo"],
                 JUDGE):
        nlsr(args, root)
    return root


@pytest.mark.slow
def test_judge_killed_after_the_new_output_is_in(project):
    kill_then_rerun([*JUDGE, "--no-base"], project, project / "judge/sst2-p0.1-dpo", "replaced")


@pytest.mark.slow
def test_frontier_killed_with_the_new_output_in_its_temp_dir(project):
    args = lambda grid: ["frontier", *CELL, "--grid_sparsity", grid, "--grid_layer_prune", 0, "--out", "frontier/c"]
    nlsr(args(0.5), project)
    kill_then_rerun(args(0.8), project, project / "frontier/c", "filled")


@pytest.mark.slow
def test_calibrate_killed_before_compute(project):
    args = lambda target: ["calibrate", *CELL, "--grid_sparsity", 0.5, "--grid_layer_prune", 0, "--target", target,
                           "--out", "calibrate/c"]
    nlsr(args("aligned+5"), project)
    kill_then_rerun(args("finetuned*0.5"), project, project / "calibrate/c", "claimed")


@pytest.mark.slow
def test_ablate_killed_mid_compute(project):
    args = lambda seed: ["ablate", *CELL, "--seeds", seed, "--identify-batch-size", 4, "--identify-max-length", 320,
                         "--out", "ablate/c"]
    nlsr(args(0), project)
    kill_then_rerun(args(1), project, project / "ablate/c", "mid-compute", delay=0.5)


@pytest.mark.slow
def test_identify_killed_between_renames(project):
    kill_then_rerun([*IDENTIFY, "--identifier", "wanda"], project, project / "identify/dpo", "aside")


@pytest.mark.slow
def test_finetune_killed_mid_compute(project):
    kill_then_rerun([*FINETUNE, "--seed", 1], project, project / "adapters/finetuned/sst2-p0.1-dpo", "mid-compute")


@pytest.mark.slow
def test_align_killed_mid_compute_and_between_renames(project):
    out = project / "adapters/aligned/dpo"
    kill_then_rerun([*ALIGN, "--seed", 1], project, out, "mid-compute")
    kill_then_rerun([*ALIGN, "--seed", 2], project, out, "aside")
