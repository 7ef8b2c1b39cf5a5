"""The options and output handling the study commands (`frontier`, `calibrate`, `ablate`, `finetune-seeds`)
share (not a command itself): one cell's inputs and the pipeline's own setting, parsed into one
nlsr_core.study.cell.CellInputs, the grid options, and the claimed output written with
stages.artifact.write_artifact.
"""
from __future__ import annotations

import functools
from pathlib import Path

import click

from stages.options import PATH


# The inputs of one cell: (option, keyword, type, default, help).
_INPUTS = [
    (("--cell",), "cell", str, None, "cell key <task>-p<ratio>-<align method>, e.g. sst2-p0.1-dpo"),
    (("--finetuned",), "finetuned", PATH, None, "fine-tuned adapter Wt of the cell"),
    (("--aligned",), "aligned", PATH, None, "aligned adapter Wa"),
    (("--reference",), "reference", PATH, None, "reference adapter We (adapters/reference/<method>)"),
    (("--stats",), "stats", PATH, None, "stats.safetensors of identify for --reference"),
    (("--data",), "data_dir", PATH, Path("data/prepared"), "prepared data"),
    (("--cache",), "cache_dir", str, ".nlsr-cache/judge", "answer + verdict cache ('' = none)"),
    (("--realign-data",), "realign_data", PATH, None, "harmful prompts with harmful answers (JSONL prompt, response) "
     "for Antidote's Wanda score; default <--data>/poison/pool.jsonl"),
]
REQUIRED = ("cell", "finetuned", "aligned", "reference", "stats")
# The settings: (params key, flags, keyword); the pipeline's setting is the point every study starts from.
_SETTINGS = [
    ("model.name", ("--model",), "model_name"),
    ("model.seed", ("--model-seed",), "model_seed"),
    ("model.device", ("--device",), "device"),
    ("model.dtype", ("--dtype",), "dtype"),
    ("judge.name", ("--judge",), "judge_name"),
    ("judge.model", ("--judge-model",), "judge_model"),
    ("data.template", ("--template",), "template"),
    ("nlsr.preset", ("--preset",), "preset"),
    ("amplify.beta", ("--beta",), "beta"),
    ("identify.sparsity", ("--sparsity",), "sparsity"),
    ("realign.layer_prune", ("--layer-prune",), "layer_prune"),
    ("realign.delta", ("--delta",), "delta"),
    ("realign.selection", ("--selection",), "selection"),
    ("realign.tau", ("--tau",), "tau"),
    ("realign.seed", ("--realign-seed",), "realign_seed"),
    ("identify.batch_size", ("--identify-batch-size", "--identify_batch_size"), "identify_batch_size"),
    ("identify.max_length", ("--identify-max-length", "--identify_max_length"), "identify_max_length"),
]
CELL_PARAMS = tuple(key for key, *_ in _SETTINGS)   # the params keys these options read


def cell_options(f):
    """The options above and the judge's answering options (stages.eval_options.EVAL_OPTIONS) on a command, which
    then receives them as one `inputs` (nlsr_core.study.cell.CellInputs)."""
    from nlsr_core.study.cell import CellInputs, ModelPass
    from nlsr_core.study.points import Point
    from stages.eval_options import eval_options, eval_settings
    from stages.options import config_option, resolve_compute

    keys = [key for _, key, *_ in _INPUTS] + [key for *_, key in _SETTINGS]

    @functools.wraps(f)
    def wrapper(**kwargs):
        got = {key: kwargs.pop(key) for key in keys}
        judge_model = got["judge_model"]
        if judge_model is not None and judge_model.strip().lower() in {"", "none", "null"}:
            judge_model = None  # params.yaml `judge.model: null` arrives through DVC as text
        answering = eval_settings(kwargs, got["template"])
        compute = resolve_compute(got["device"], got["dtype"])  # before any model or output
        pipeline = Point.of(sparsity=got["sparsity"], layer_prune=got["layer_prune"], delta=got["delta"],
                            selection=got["selection"], tau=got["tau"], seed=got["realign_seed"],
                            preset=got["preset"], beta=got["beta"])
        inputs = CellInputs(cell=got["cell"], finetuned=got["finetuned"], aligned=got["aligned"],
                            reference=got["reference"], stats=got["stats"], data_dir=got["data_dir"],
                            cache_dir=Path(got["cache_dir"]) if got["cache_dir"] else None, model_name=got["model_name"],
                            model_seed=got["model_seed"], judge_name=got["judge_name"], judge_model=judge_model,
                            template=got["template"], pipeline=pipeline, answering=answering, compute=compute,
                            realign_data=got["realign_data"] or Path(got["data_dir"]) / "poison" / "pool.jsonl",
                            model_pass=ModelPass(got["identify_batch_size"], got["identify_max_length"]))
        return f(inputs=inputs, **kwargs)

    for key, flags, dest in reversed(_SETTINGS):
        wrapper = config_option(key, *flags, dest=dest)(wrapper)
    for names, key, typ, default, help_text in reversed(_INPUTS):
        wrapper = click.option(*names, key, type=typ, default=default, required=key in REQUIRED,
                               show_default=default is not None, help=help_text)(wrapper)
    return eval_options(wrapper)


def grid_options(section: str):
    """--grid_<axis> (repeatable; DVC unpacks `${frontier}` lists into repeated options) for every realign axis;
    the defaults of those the params section lists come from it."""
    import dataclasses

    from nlsr_core.config import SECTIONS
    from nlsr_core.study.points import GRID_AXES
    from stages.options import config_option

    listed = {f.name for f in dataclasses.fields(SECTIONS[section])}
    types = {"selection": str, "seed": int}

    def decorate(f):
        for axis in reversed(GRID_AXES):
            name = f"grid_{axis}"
            flags = (f"--{name}", f"--{name.replace('_', '-')}")
            if name in listed:
                f = config_option(f"{section}.{name}", *flags, dest=name)(f)
            else:
                f = click.option(*flags, name, multiple=True, type=types.get(axis, float),
                                 help=f"values of {axis} to sweep (default: the pipeline's)")(f)
        return f

    return decorate


def grid_axes(kwargs: dict) -> dict:
    """Pop the --grid_<axis> values: axis -> list."""
    from nlsr_core.study.points import GRID_AXES

    return {axis: list(kwargs.pop(f"grid_{axis}")) for axis in GRID_AXES}


def claim_result(out: Path, stage: str, inputs, extra: tuple = ()):
    """The stage's output directory, checked before any work (nlsr_core.io.outputs): not an input of the cell."""
    from nlsr_core.io.outputs import claim

    given = [(f"--{r}", getattr(inputs, r)) for r in REQUIRED if r != "cell"]
    return claim(out, stage, inputs=[*given, ("--data", inputs.data_dir), ("--cache", inputs.cache_dir or ""),
                                     ("--realign-data", inputs.realign_data or ""), *extra])


def identification_options(f):
    """--identify-data, --preference and --identify-seed: the statistics passes of a study command whose points
    change the reference or the identification method (ablate, analyze)."""
    from stages.options import config_options

    f = config_options("identify", "seed", prefix="identify_")(f)
    f = click.option("--preference", type=PATH, default=Path("data/prepared/align/preference.jsonl"),
                     show_default=True)(f)
    return click.option("--identify-data", type=PATH, default=Path("data/prepared/identify/safety.jsonl"),
                        show_default=True)(f)


def identification_pass(inputs, identify_data: Path, preference: Path, identify_seed: int, announce):
    """(collect(reference, method) -> stats, its record for the params): a statistics pass over the
    identification data in the cell's model-pass batches (nlsr_core.method.identification.statistics_pass)."""
    from nlsr_core.method.identification import statistics_pass

    ident = {"data": identify_data, "preference": preference, "batch_size": inputs.model_pass.batch_size,
             "max_length": inputs.model_pass.max_length, "seed": identify_seed, "template": inputs.template,
             "compute": inputs.compute}
    return statistics_pass(inputs.reference, ident, announce=announce), {k: str(v) for k, v in ident.items()}


def write_result(output, stage: str, inputs, params: dict, document: dict, files: dict | None = None,
                 dirs: dict | None = None) -> None:
    """<stage>.json (+ extra text files, + copies of the directories `dirs` {name: path}) + lineage.json into the
    claimed output, atomically; tracked as one MLflow run."""
    import shutil

    from nlsr_core.io.fileio import write_json
    from nlsr_core.eval.formatting import pct
    from stages.artifact import write_artifact

    records = inputs.adapter_records()
    chosen = {"chosen": document["chosen"]} if document.get("chosen") else {}

    def fill(tmp):
        write_json(tmp / f"{stage}.json", document)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        for name, path in (dirs or {}).items():
            shutil.copytree(path, tmp / name)
        return chosen

    metrics = {f"chosen.{m}": pct(document["chosen"], m) for m in ("hs", "fa")} if chosen else {}
    write_artifact(output, stage, inputs.cell, records, params, fill, metrics=metrics)
