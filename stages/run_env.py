"""What a stage command's run needs around it: environment switches (NLSR_TRACKING, NLSR_PROGRESS), the repo
root and its params check, git and MLflow (`tracked`), SIGTERM handling, output locking and the test fault hook.
The CLI entry point (stages/cli.py) calls these; no option factory lives here (stages/options.py).
"""
from __future__ import annotations


def env_switch(name: str) -> bool:
    """An on/off environment switch, on unless set to off / 0 / false / no; read here (the CLI layer), never in
    nlsr_core."""
    import os

    return os.environ.get(name, "on").lower() not in {"off", "0", "false", "no"}


def tracking_enabled() -> bool:
    """NLSR_TRACKING=off disables MLflow."""
    return env_switch("NLSR_TRACKING")


def progress_enabled() -> bool:
    """NLSR_PROGRESS=off hides the progress bars of long loops (stderr)."""
    return env_switch("NLSR_PROGRESS")


def repo_root():
    """DVC_ROOT (set by DVC for stage commands), else the git work tree holding the cwd, else the cwd."""
    import os
    import subprocess
    from pathlib import Path

    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"])

    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return Path.cwd()


def check_pipeline_params() -> None:
    """Inside a DVC stage (DVC_ROOT set), check the pipeline's params.yaml against nlsr_core.config first, so a
    misspelt or unknown key (e.g. from `dvc exp run -S align.lrr=1`) fails every stage in one line naming it."""
    import os
    from pathlib import Path

    root = os.environ.get("DVC_ROOT")
    if root and (Path(root) / "params.yaml").is_file():
        from nlsr_core.params import load_params

        load_params(Path(root) / "params.yaml")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite in .mlflow/ at the repo root (absolute: DVC may change cwd)."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = repo_root() / ".mlflow"
    store.mkdir(exist_ok=True)
    return f"sqlite:///{store.resolve() / 'mlflow.db'}"


def git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "uncommitted"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def tracked(stage: str, key: str | None, params: dict, enabled: bool = True):
    """Context manager for one tracked stage execution: `with tracked("realign", key, params) as tr:`.

    The run is named `stage@key` (`enabled=False` e.g. on non-main ranks); the MLflow URI, git commit and DVC experiment come from the environment here,
    in the CLI layer, so nlsr_core stays free of environment reads. An unreachable server fails before work.
    """
    import os

    from nlsr_core.io.tracking import RunContext, stage_run

    enabled = enabled and tracking_enabled()
    context = None
    if enabled:
        context = RunContext(uri=tracking_uri(), stage=stage, key=key, commit=git_commit(),
                             dvc_experiment=os.environ.get("DVC_EXP_NAME", "workspace"))
    return stage_run(f"{stage}@{key}" if key else stage, params, enabled=enabled, context=context)


def install_fault_hook() -> None:
    """Test hook for tests/test_faults.py, off unless NLSR_FAULT_DIR is set: each output step of
    `nlsr_core.io.outputs` (`FAULT_POINTS`) then creates NLSR_FAULT_DIR/<step>, the step named by NLSR_FAULT_PAUSE
    also stops the process there until it is killed or interrupted (`STEP@NAME`: only the output named NAME, whose
    steps alone are then marked), and the step named by NLSR_FAULT_SLOW waits
    3 s there (a step that runs with interrupts deferred, such as `cleaning`, cannot be paused for good)."""
    import os
    import time
    from pathlib import Path

    where = os.environ.get("NLSR_FAULT_DIR")
    if not where:
        return
    from nlsr_core.io import outputs

    pause, _, only = os.environ.get("NLSR_FAULT_PAUSE", "").partition("@")   # `point@NAME`: that output only
    slow = os.environ.get("NLSR_FAULT_SLOW", "")

    def hook(point: str, path) -> None:
        if only and Path(path).name != only:
            return
        Path(where, point).write_text(f"{os.getpid()} {path}\n")
        if point == slow:
            time.sleep(3)
        while point == pause:
            time.sleep(60)

    outputs.FAULT_HOOK = hook


def install_interrupts() -> None:
    """SIGTERM raises SystemExit(143) like ^C raises KeyboardInterrupt, so an output's clean-up runs (no temp
    sibling is left behind) instead of the process vanishing mid-write. Main thread only (signal's rule)."""
    import signal
    import threading

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)


def set_locking() -> None:
    """Output locks (nlsr_core.io.locks) are off in a launched training rank: the launcher that started it
    (stages/launch.py, NLSR_LAUNCHED) or rank 0 (RANK) holds the output's lock for the whole run."""
    import os

    from nlsr_core.io import locks

    launched = bool(os.environ.get("NLSR_LAUNCHED")) or os.environ.get("RANK", "0") not in ("", "0")
    locks.ENABLED = not launched


# Commands that never write to MLflow, so they need no reachable server.
UNTRACKED_COMMANDS = {"audit", "generate"}


def preflight_tracking(argv: list[str]) -> None:
    """Fail in one line, before any model is loaded, when tracking is on and its server does not answer."""
    if not argv or argv[0] in UNTRACKED_COMMANDS or any(a in ("--help", "-h") for a in argv):
        return
    if tracking_enabled():
        import os

        from nlsr_core.io.tracking import check_reachable

        set_by = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking URI"
        check_reachable(tracking_uri(), what=set_by)
