"""Click option factories and argument parsing shared by the stage commands (no heavy imports here; the run
environment, tracking and fault hook are in stages/run_env.py, the judge's answering options in stages/eval_options.py)."""
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


# The alignment methods `nlsr align` knows: grid.align_methods' choices (nlsr_core.train.trainers.ALIGNERS; a test keeps
# the two equal), so prepare-data can check the sweep without importing TRL.
ALIGN_METHODS = choices("grid", "align_methods")


def check_align_methods(methods: list[str]) -> None:
    check_value("grid.align_methods", list(methods))




def mix_training_options(f):
    """What both fine-tuning stages (finetune, nonaligned) read: the poisoned mix, the finetune section, the chat
    template and a step cap."""
    f = click.option("--max-steps", "--max_steps", "max_steps", type=int, default=-1, show_default=True,
                     help="stop after this many optimizer steps (-1: run the epochs)")(f)
    f = template_option(f)
    f = config_options("finetune", skip=("n",))(f)
    return click.option("--mix", "mix_file", required=True, type=click.Path(),
                        help="poisoned fine-tuning mix, data/prepared/mixes/<task>-p<p>.jsonl")(f)
