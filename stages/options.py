"""Small helpers shared by the stage commands (no heavy imports here)."""
from __future__ import annotations

from pathlib import Path

import click

from nlsr_core.config import check_value, choices
from nlsr_core.errors import NlsrError


def split_list(values, cast=str, what: str = "value") -> list:
    """Accept repeated options and comma/space separated lists: ('sst2,agnews',) -> ['sst2', 'agnews']."""
    out = []
    for value in values:
        for part in str(value).replace(",", " ").replace("[", " ").replace("]", " ").split():
            try:
                out.append(cast(part))
            except ValueError:
                raise NlsrError(f"--{what}: '{part}' is not a valid {cast.__name__}") from None
    return out


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


# Path options arrive as pathlib.Path.
PATH = click.Path(path_type=Path)


class ConfigOption(click.Option):
    """A Click option whose default and help come from one config field (nlsr_core.config); `config_key` names
    it ("realign.layer_prune"), so tests/test_consistency.py can check every default against params.yaml."""

    def __init__(self, *args, config_key: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.config_key = config_key


def config_option(key: str, *names: str, dest: str | None = None, **overrides):
    """The option for params key `section.field` (`data.sizes.x` too): flags `--field-name` and `--field_name`
    (DVC's ${section} unpacking writes underscores) unless `names` are given; default, type and help from the
    field. Tuple fields become repeatable options."""
    import dataclasses

    from nlsr_core.config import SECTIONS, config_field, field_help

    section, *path = key.split(".")
    cls = SECTIONS[section]
    for part in path[:-1]:                       # data.sizes.x: step into the nested dataclass
        cls = config_field(cls, part, section).default_factory
    name = path[-1]
    f = config_field(cls, name, key)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    kind = str(f.type)
    flags = names or tuple(dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"]))
    kw = dict(cls=ConfigOption, config_key=key, default=default, show_default=default is not None,
              help=f"{field_help(cls).get(name, '')} ({key})")
    if kind.startswith("tuple["):
        inner = kind[len("tuple["):].split(",")[0].strip().rstrip("]")
        kw.update(multiple=True, type={"int": int, "float": float}.get(inner, str))
    elif kind == "bool" and not names:
        # DVC's dict unpacking spells a true bool as `--name` (underscores kept), so both spellings switch it on.
        flags = tuple(dict.fromkeys([f"--{name.replace('_', '-')}/--no-{name.replace('_', '-')}",
                                     f"--{name}/--no_{name}"]))
    else:
        kw["type"] = {"int": int, "float": float}.get(kind.replace("| None", "").strip(), str)
    kw.update(overrides)
    return click.option(*flags, dest or name, **kw)


def config_options(section: str, *names: str, skip: tuple = (), prefix: str = ""):
    """Options for several fields of one section (all of them unless `names`); `prefix` prepends to flags and
    destinations (`identify` -> --identify-batch-size / identify_batch_size)."""
    import dataclasses

    from nlsr_core.config import SECTIONS

    chosen = names or [f.name for f in dataclasses.fields(SECTIONS[section]) if f.name not in skip]

    def decorate(f):
        for name in reversed(chosen):
            flag = f"{prefix}{name}"
            names_ = tuple(dict.fromkeys([f"--{flag.replace('_', '-')}", f"--{flag}"])) if prefix else ()
            f = config_option(f"{section}.{name}", *names_, dest=flag if prefix else None)(f)
        return f

    return decorate


def model_option(f):
    return config_option("model.name", "--model", dest="model_name")(f)


def compute_options(f):
    """--device / --dtype (model.device, model.dtype) on a command that loads a model; the command receives
    `compute`, the resolved placement (nlsr_core.compute.Compute). It is resolved before the command body runs, so a
    device this machine lacks is one line and exit 1 before any model is loaded or anything is written."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, device, dtype, **kwargs):
        return f(*args, compute=resolve_compute(device, dtype), **kwargs)

    wrapper = config_option("model.dtype", "--dtype", dest="dtype")(wrapper)
    return config_option("model.device", "--device", dest="device")(wrapper)


def resolve_compute(device: str, dtype: str):
    """nlsr_core.compute.resolve_compute, with `cuda` meaning this process's own GPU under torchrun / accelerate
    (LOCAL_RANK, read here in the CLI layer), so data-parallel ranks do not all load onto cuda:0."""
    import os

    from nlsr_core.compute import resolve_compute as resolve

    if device == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return resolve(device, dtype)


def gradient_checkpointing_option(f):
    """launch.gradient_checkpointing as `--gradient-checkpointing true|false` (a value, so dvc.yaml can pass the
    param as `${launch.gradient_checkpointing}`)."""
    return config_option("launch.gradient_checkpointing", "--gradient-checkpointing", "--gradient_checkpointing",
                         dest="gradient_checkpointing", type=click.BOOL)(f)


def model_seed_option(f):
    return config_option("model.seed", "--model-seed", dest="model_seed")(f)


def template_option(f):
    return config_option("data.template", "--template", dest="template")(f)


# judge.* settings shared by `nlsr judge` and the study stages (frontier, calibrate, ablate), so all score with
# the same answers: (flag, field of nlsr_core.config.JudgeConfig).
EVAL_OPTIONS = (
    ("--max-new-tokens", "max_new_tokens"),
    ("--opening-tokens", "opening_tokens"),
    ("--label-tokens", "label_tokens"),
    ("--gsm8k-tokens", "gsm8k_tokens"),
    ("--fa-mode", "fa_mode"),
    ("--batch-size", "batch_size"),
)


def eval_options(f):
    """The EVAL_OPTIONS on a command (each also accepted with underscores, as DVC's ${judge} unpacking writes)."""
    for flag, key in reversed(EVAL_OPTIONS):
        underscored = "--" + flag[2:].replace("-", "_")
        f = config_option(f"judge.{key}", flag, underscored, dest=key)(f)
    return f


def eval_settings(kwargs: dict, template: str):
    """Pop the EVAL_OPTIONS from a command's kwargs into an EvalSettings (bad values: one-line NlsrError)."""
    from nlsr_core.judge.settings import EvalSettings

    return EvalSettings(template=template, **{key: kwargs.pop(key) for _, key in EVAL_OPTIONS})


# The alignment methods `nlsr align` knows: grid.align_methods' choices (nlsr_core.train.ALIGNERS; a test keeps
# the two equal), so prepare-data can check the sweep without importing TRL.
ALIGN_METHODS = choices("grid", "align_methods")


def check_align_methods(methods: list[str]) -> None:
    check_value("grid.align_methods", list(methods))


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

    from nlsr_core.tracking import RunContext, stage_run

    enabled = enabled and tracking_enabled()
    context = None
    if enabled:
        context = RunContext(uri=tracking_uri(), stage=stage, key=key, commit=git_commit(),
                             dvc_experiment=os.environ.get("DVC_EXP_NAME", "workspace"))
    return stage_run(f"{stage}@{key}" if key else stage, params, enabled=enabled, context=context)


def install_fault_hook() -> None:
    """Test hook for tests/test_faults.py, off unless NLSR_FAULT_DIR is set: each output step of
    `nlsr_core.outputs` (`FAULT_POINTS`) then creates NLSR_FAULT_DIR/<step>, the step named by NLSR_FAULT_PAUSE
    also stops the process there until it is killed or interrupted (`STEP@NAME`: only the output named NAME, whose
    steps alone are then marked), and the step named by NLSR_FAULT_SLOW waits
    3 s there (a step that runs with interrupts deferred, such as `cleaning`, cannot be paused for good)."""
    import os
    import time
    from pathlib import Path

    where = os.environ.get("NLSR_FAULT_DIR")
    if not where:
        return
    from nlsr_core import outputs

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
    """Output locks (nlsr_core.locks) are off in a launched training rank: the launcher that started it
    (stages/launch.py, NLSR_LAUNCHED) or rank 0 (RANK) holds the output's lock for the whole run."""
    import os

    from nlsr_core import locks

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

        from nlsr_core.tracking import check_reachable

        set_by = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking URI"
        check_reachable(tracking_uri(), what=set_by)
