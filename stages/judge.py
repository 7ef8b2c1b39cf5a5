"""`nlsr judge`: generate with each variant of one cell and score HS, FA and over-refusal.

    nlsr judge --cell sst2-p0.1-dpo --model smollm2-135m \
        --aligned adapters/aligned/dpo/aligned --finetuned adapters/finetuned/sst2-p0.1-dpo \
        --realigned adapters/realigned/sst2-p0.1-dpo --safelora adapters/safelora/sst2-p0.1-dpo \
        --out judge/sst2-p0.1-dpo --cache .nlsr-cache/judge

Writes `<out>/<variant>/{harmful,task,benign[,benign_sensitive]}.jsonl` (answers with per-row verdicts), `<out>/judged.json`
(rates with n and 95% Wilson intervals, judge and generation settings; the judge-free safety score of every
variant when the prepared data holds heldout/pairs.jsonl: nlsr_core/eval/judge_free.py) and `<out>/lineage.json`.
Answers and verdicts are cached in `--cache`, so another judge reading answers of the same budget judges
without regenerating, and reruns judge only new answers. Each split is answered with its own token budget
(`--opening-tokens` for what the keyword matcher reads, `--max-new-tokens` for a model judge) and the task split
by scoring the label strings (`--fa-mode score`) or by generating (`--fa-mode generate`): see
nlsr_core/eval/settings.py.
"""
from __future__ import annotations

import click

from stages.eval_options import eval_options, eval_settings
from stages.options import compute_options, config_option, model_option, model_seed_option, template_option

VARIANT_OPTIONS = ("nonaligned", "weak", "aligned", "finetuned", "realigned", "safelora")


@click.command("judge")
@click.option("--cell", required=True, help="cell key <task>-p<ratio>-<method>, e.g. sst2-p0.1-dpo")
@model_option
@model_seed_option
@compute_options
@click.option("--nonaligned", type=click.Path(), default=None,
              help="M fine-tuned on the mix alone (variant 'nonaligned': the paper's Non-Aligned row)")
@click.option("--weak", type=click.Path(), default=None,
              help="weak adapter W0 (variant 'weak': M' = M + W0 alone, no Wa)")
@click.option("--aligned", type=click.Path(), default=None, help="aligned adapter Wa (variant 'aligned')")
@click.option("--finetuned", type=click.Path(), default=None, help="fine-tuned adapter Wt")
@click.option("--realigned", type=click.Path(), default=None, help="NLSR-realigned adapter")
@click.option("--safelora", type=click.Path(), default=None, help="SafeLoRA adapter")
@click.option("--no-base", is_flag=True, help="skip the base-model variant")
@click.option("--data", "data_dir", type=click.Path(), default="data/prepared", show_default=True,
              help="prepared data (eval/harmful.jsonl, eval/benign.jsonl, tasks/<task>/test.jsonl)")
@config_option("judge.name", "--judge", dest="judge_name")
@config_option("judge.model", "--judge-model", dest="judge_model")
@eval_options
@template_option
@click.option("--out", "out_dir", type=click.Path(), default=None, help="default judge/<cell>")
@click.option("--cache", "cache_dir", type=click.Path(), default=".nlsr-cache/judge", show_default=True,
              help="answer + verdict cache shared by all cells ('' = no cache)")
def command(cell, model_name, model_seed, compute, nonaligned, weak, aligned, finetuned, realigned, safelora, no_base,
            data_dir, judge_name, judge_model, template, out_dir, cache_dir, **answering):
    """Evaluate base / nonaligned / weak / aligned / finetuned / realigned / safelora for one cell."""
    from pathlib import Path

    from nlsr_core.lora.generate import check_plans
    from nlsr_core.eval.judges import JUDGES, JudgeSpec
    from nlsr_core.eval.evaluate import parse_cell, load_splits
    from nlsr_core.eval.judge_free import HELDOUT_PAIRS, load_pairs
    from nlsr_core.io.lineage import input_record
    from nlsr_core.io.outputs import claim
    from stages.artifact import tracked_inputs

    parsed = parse_cell(cell)
    if judge_model is not None and judge_model.strip().lower() in {"", "none", "null"}:
        judge_model = None  # params.yaml `judge.model: null` arrives through DVC as text
    if judge_name not in JUDGES:
        raise click.BadParameter(f"expected one of {', '.join(JUDGES)}", param_hint="--judge")
    settings = eval_settings(answering, template)
    spec = JudgeSpec(name=judge_name, model=judge_model, batch_size=settings.batch_size, device=compute.device,
                     dtype=compute.dtype)
    adapters = dict(zip(VARIANT_OPTIONS, (nonaligned, weak, aligned, finetuned, realigned, safelora)))
    plans = _plans(adapters, model_name, include_base=not no_base)
    check_plans(plans)   # every adapter loaded and checked before the first answer (or cache write)
    splits = load_splits(Path(data_dir), parsed.task)
    pairs = load_pairs(Path(data_dir))
    out = Path(out_dir or f"judge/{parsed.key}")
    output = claim(out, "judge", inputs=[*((f"--{v}", p) for v, p in adapters.items()), ("--data", data_dir),
                                         ("--cache", cache_dir)])
    params = {"cell": parsed.key, "model": model_name, "model_seed": model_seed, "judge": judge_name,
              "judge_model": judge_model, "answering": settings.record(parsed.task, judge_name),
              "compute": compute.record()}
    judged = [input_record(Path(path), variant) for variant, path in adapters.items() if path]
    with tracked_inputs("judge", parsed.key, params, judged) as tr:  # which adapters were judged, by digest
        record = run(parsed, plans, splits, settings, spec, model_seed, output,
                     Path(cache_dir) if cache_dir else None, params, tr, pairs, Path(data_dir) / HELDOUT_PAIRS,
                     compute)
    for variant, entry in record["variants"].items():
        free = "".join(f"  {label} {_fmt(entry[key])}" for key, label in
                       (("over_refusal_sensitive", "over-refusal (sensitive probes)"), ("judge_free", "judge-free"),
                        ("hs_transfer", "HS (transfer set)"))
                       if key in entry)
        click.echo(f"judge {parsed.key} {variant:>9}: HS {_fmt(entry['hs'])}  FA {_fmt(entry['fa'])}  "
                   f"over-refusal {_fmt(entry['over_refusal'])}{free}")


def _plans(adapters: dict, model_name: str, include_base: bool) -> dict:
    from pathlib import Path

    from nlsr_core.lora.generate import StackPlan, plan_stack

    plans = {"base": StackPlan(model_name, None, None)} if include_base else {}
    for variant, path in adapters.items():
        if path:
            plans[variant] = plan_stack(Path(path), model_name)
    if not plans:
        raise click.UsageError("nothing to evaluate: give at least one adapter option or keep the base variant")
    return plans


def run(cell, plans, splits, settings, spec, seed, output, cache_dir, params, tracker, pairs=None,
        pairs_file=None, compute=None) -> dict:
    """Generate (cached) on `compute`, score (cached verdicts), add the judge-free score on `pairs` (read from
    `pairs_file`; when given), write the claimed output (nlsr_core.io.outputs) atomically; return judged.json."""
    from nlsr_core.io.fileio import write_json, write_jsonl
    from nlsr_core.eval.evaluate import evaluate_plans, judged_record
    from nlsr_core.io.lineage import input_record
    from nlsr_core.lora.models import ModelSpec, model_identity
    from stages.artifact import write_artifact

    model = next(iter(plans.values())).model
    answers, scored, judge = evaluate_plans(plans, splits, cell.task, settings, model, seed, spec, cache_dir, compute)
    identity = model_identity(ModelSpec(model, seed=seed))
    record = judged_record(cell, scored, spec.name, judge.identity, settings, identity)
    if compute is not None:
        record["compute"] = compute.record()
    inputs = [input_record(s.path, "data") for s in splits]
    if pairs is not None:
        from nlsr_core.eval.judge_free import HELDOUT_PAIRS, judge_free_scores

        free = judge_free_scores(plans, pairs, settings.template, seed, settings.batch_size, cache_dir, compute)
        for variant, entry in free.items():
            record["variants"][variant]["judge_free"] = entry
        record["judge_free_pairs"] = HELDOUT_PAIRS
        inputs.append(input_record(pairs_file, "data"))
    inputs += [input_record(p.adapter, v) for v, p in plans.items() if p.adapter is not None]

    def fill(tmp):
        for s in scored:
            (tmp / s.name).mkdir()
            for split_name, rows in s.rows.items():
                write_jsonl(tmp / s.name / f"{split_name}.jsonl", rows)
        write_json(tmp / "judged.json", record)
        return {"model": identity, **({"compute": compute.record()} if compute is not None else {})}

    metrics = {f"{variant}.{metric}": entry[metric]["pct"] for variant, entry in record["variants"].items()
               for metric in ("hs", "hs_plus", "fa", "over_refusal", "over_refusal_sensitive", "judge_free", "hs_transfer")
               if metric in entry}
    write_artifact(output, "judge", cell.key, inputs, params, fill, metrics=metrics, tracker=tracker)
    click.echo(f"judge {cell.key}: {sum(a.cached for a in answers)} of {len(answers) * len(splits)} "
               f"answer sets from cache; judge called on {judge.calls} new answers")
    return record


def _fmt(entry: dict) -> str:
    if entry["pct"] is None:
        return "n/a"
    return f"{entry['pct']:5.1f}% [{entry['ci95'][0]:.1f}, {entry['ci95'][1]:.1f}] n={entry['n']}"
