"""What `nlsr frontier`, `nlsr calibrate` and `nlsr ablate` share (not a command itself).

Each builds realigned adapters for a list of operating points (`nlsr_core.sweep`) from the pipeline's
artifacts of one cell, without retraining anything and, for P_SR / P_L / δ / selection / seed, without
touching the model (masks come from identify-neurons' stats.safetensors), then generates and scores them
exactly like `nlsr judge` (same generation settings, same judge, same answer/verdict cache, so a point whose
adapter was already judged costs nothing).
"""
from __future__ import annotations

import functools
from pathlib import Path

import click

PATH = click.Path(path_type=Path)

# (option, keyword, type, default, help): the inputs of one cell and the pipeline's own setting.
_OPTIONS = [
    (("--cell",), "cell", str, None, "cell key <task>-p<ratio>-<method>, e.g. sst2-p0.1-dpo"),
    (("--model",), "model_name", str, "smollm2-135m", "base model (model.name)"),
    (("--model-seed",), "model_seed", int, 0, "model seed (tiny-random only; model.seed)"),
    (("--finetuned",), "finetuned", PATH, None, "fine-tuned adapter Wt of the cell"),
    (("--aligned",), "aligned", PATH, None, "aligned adapter Wa"),
    (("--reference",), "reference", PATH, None, "reference adapter We (adapters/reference/<method>)"),
    (("--stats",), "stats", PATH, None, "stats.safetensors of identify-neurons for --reference"),
    (("--data",), "data_dir", PATH, Path("data/prepared"), "prepared data"),
    (("--judge",), "judge_name", str, "refusal-keywords", "refusal-keywords | beaver-dam | llama-guard"),
    (("--judge-model",), "judge_model", str, None, "judge model id or directory (judge.model)"),
    (("--template",), "template", str, "chat", "chat | alpaca (data.template)"),
    (("--cache",), "cache_dir", str, ".nlsr-cache/judge", "answer + verdict cache ('' = none)"),
    # the pipeline's setting: the point every sweep starts from
    (("--preset",), "preset", str, "paper", "nlsr.preset of the pipeline"),
    (("--beta",), "beta", float, 0.9, "amplify.beta that produced --reference"),
    (("--sparsity",), "sparsity", float, 0.5, "identify.sparsity (P_SR)"),
    (("--layer-prune",), "layer_prune", float, 0.0, "realign.layer_prune (P_L)"),
    (("--delta",), "delta", float, 0.2, "realign.delta (δ)"),
    (("--selection",), "selection", str, "adaptive", "realign.selection"),
    (("--tau",), "tau", float, 0.5, "realign.tau"),
    (("--realign-seed",), "realign_seed", int, 0, "realign.seed"),
]
REQUIRED = ("cell", "finetuned", "aligned", "reference", "stats")


def cell_options(f):
    """The options above and the judge's answering options (stages.options.EVAL_OPTIONS) on a command, which
    then receives them as one `inputs` dict (`inputs["answering"]`: the EvalSettings)."""
    from stages.options import eval_options, eval_settings

    @functools.wraps(f)
    def wrapper(**kwargs):
        inputs = {key: kwargs.pop(key) for _, key, *_ in _OPTIONS}
        if inputs["judge_model"] is not None and inputs["judge_model"].strip().lower() in {"", "none", "null"}:
            inputs["judge_model"] = None  # params.yaml `judge.model: null` arrives through DVC as text
        inputs["answering"] = eval_settings(kwargs, inputs["template"])
        inputs["answering"].check_task(parse_task(inputs["cell"]))
        return f(inputs=inputs, **kwargs)

    for names, key, typ, default, help_text in reversed(_OPTIONS):
        wrapper = click.option(*names, key, type=typ, default=default, required=key in REQUIRED,
                               show_default=default is not None, help=help_text)(wrapper)
    return eval_options(wrapper)


def parse_task(cell: str) -> str:
    from nlsr_core.judge.evaluate import parse_cell

    return parse_cell(cell).task


def pipeline_point(inputs: dict, identifier: str):
    """The Point of the pipeline's own artifacts (`identifier`: the method recorded in the stats file)."""
    from nlsr_core.sweep import Point

    return Point(sparsity=inputs["sparsity"], layer_prune=inputs["layer_prune"], delta=inputs["delta"],
                 selection=inputs["selection"], tau=inputs["tau"], seed=inputs["realign_seed"],
                 preset=inputs["preset"], identifier=identifier, beta=inputs["beta"])


def builder(inputs: dict, collect=None):
    """PointBuilder over the cell's adapters (all checked before any work)."""
    from nlsr_core.adapters import check_compatible, load_adapter
    from nlsr_core.neurons import load_stats, masks_from_stats
    from nlsr_core.realign import check_realign_inputs
    from nlsr_core.sweep import PointBuilder

    ft, al, ref = (load_adapter(inputs[k]) for k in ("finetuned", "aligned", "reference"))
    stats, method = load_stats(inputs["stats"], ref)
    point = pipeline_point(inputs, method)
    # stats that do not fit the reference, or adapters that do not fit each other, fail here in one line
    masks = masks_from_stats(ref, stats, point.sparsity, point.preset, point.identifier)
    check_realign_inputs(ft, ref, masks, inputs["stats"])
    check_compatible(ft, al, ("finetuned", "aligned"))
    return PointBuilder(ft, al, ref, stats, point, collect)


def settings_record(inputs: dict, splits=("harmful", "task")) -> dict:
    """How the study's splits were answered (budgets, FA mode), as judged.json records it."""
    return inputs["answering"].record(parse_task(inputs["cell"]), inputs["judge_name"], splits)


def score_points(inputs: dict, named: list[tuple[str, object]], build, splits, references: tuple[str, ...] = ()
                 ) -> list[dict]:
    """Build every point's adapter (into a temporary directory), generate and score them with the cell's
    `references` ("aligned", "finetuned": the pipeline's adapters) on `splits`; one row per name, in order:
    {name, label, point, patched_count, module_count, kept_fraction, adapter_sha256, hs, fa[, over_refusal]}."""
    import tempfile

    from nlsr_core.generate import plan_stack
    from nlsr_core.judge import JudgeSpec
    from nlsr_core.judge.evaluate import evaluate_plans
    from nlsr_core.lineage import sha256_dir
    from nlsr_core.progress import bar
    from stages.realign import base_fields

    task = parse_task(inputs["cell"])
    settings = inputs["answering"]
    inherited = base_fields(inputs["finetuned"])
    cache = Path(inputs["cache_dir"]) if inputs["cache_dir"] else None
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="nlsr-points-") as tmp:
        plans = {name: plan_stack(inputs[name], inputs["model_name"]) for name in references}
        rows.update({name: {"name": name, "label": name, "point": None} for name in references})
        with bar(len(named), "study points built", "point") as shown:
            for i, (name, point) in enumerate(named):
                out = Path(tmp) / f"point-{i:03d}"
                plans[name], summary = point_stack(build, point, out, inherited, inputs["model_name"])
                rows[name] = {"name": name, "label": point.label, "point": point.record(), **summary,
                              "adapter_sha256": sha256_dir(out)}
                shown.update(1)
        spec = JudgeSpec(name=inputs["judge_name"], model=inputs["judge_model"], batch_size=settings.batch_size)
        answers, scored, judge = evaluate_plans(plans, splits, task, settings, inputs["model_name"],
                                                inputs["model_seed"], spec, cache)
    for sv in scored:
        rows[sv.name].update({metric: r.record() for metric, r in sv.rates.items()})
    click.echo(f"{inputs['cell']}: {sum(a.cached for a in answers)} of {len(answers) * len(splits)} answer sets "
               f"from cache; judge called on {judge.calls} new answers")
    return [rows[name] for name in plans]


def point_stack(build, point, out: Path, inherited: dict, model_name: str):
    """Build `point`'s adapter into `out` with a lineage holding no temporary path (so the same point gives the
    same digest, the answer-cache key, every run); returns (its StackPlan, the build summary)."""
    from nlsr_core.adapters import save_adapter
    from nlsr_core.generate import plan_stack
    from nlsr_core.lineage import write_lineage

    adapter, summary = build.build(point)
    save_adapter(adapter, out)
    write_lineage(out, "points", [], point.record(), **inherited)
    return plan_stack(out, model_name), summary


def describe(row: dict) -> str:
    from nlsr_core.study_report import pct

    fa = pct(row, "fa")
    return (f"{row['label']:>28}: HS {pct(row, 'hs'):5.1f}%  FA {'n/a' if fa is None else f'{fa:5.1f}%'}"
            + (f"  patched {row['patched_count']}/{row['module_count']}" if "patched_count" in row else ""))


def claim_result(out: Path, stage: str, inputs: dict, extra: tuple = ()):
    """The stage's output directory, checked before any work (nlsr_core.outputs): not an input of the cell."""
    from nlsr_core.outputs import claim

    given = [(f"--{r}", inputs[r]) for r in REQUIRED if r != "cell"]
    return claim(out, stage, inputs=[*given, ("--data", inputs["data_dir"]), ("--cache", inputs["cache_dir"]), *extra])


def write_result(output, stage: str, inputs: dict, params: dict, document: dict, files: dict | None = None
                 ) -> None:
    """<stage>.json (+ extra text files) + lineage.json into the claimed output, atomically; tracked as one
    MLflow child run."""
    from nlsr_core.fileio import write_json
    from nlsr_core.lineage import input_record, write_lineage
    from nlsr_core.outputs import replace
    from nlsr_core.study_report import pct
    from stages.options import tracked

    out = output.path
    roles = ("finetuned", "aligned", "reference", "stats")
    records = [input_record(Path(inputs[r]), r) for r in roles]
    with tracked(stage, inputs["cell"], params) as tr:
        for rec in records:
            tr.log_input(rec)
        with replace(output) as tmp:
            write_json(tmp / f"{stage}.json", document)
            for name, text in (files or {}).items():
                (tmp / name).write_text(text)
            chosen = {"chosen": document["chosen"]} if document.get("chosen") else {}
            write_lineage(tmp, stage, records, params, **chosen)
        if document.get("chosen"):
            for metric in ("hs", "fa"):
                tr.log_metric(f"chosen.{metric}", pct(document["chosen"], metric))
        tr.log_artifact(out)
