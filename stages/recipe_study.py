"""`nlsr recipe-study`: train alignment recipes and write reports/alignment.md (docs/DESIGN.md §5.6).

    nlsr recipe-study --recipe current --recipe r3-e3-op --data data/prepared --out recipe-study \\
        --report reports/alignment.md

Recipes are params overlays: `--recipe NAME` reads recipes/NAME.yaml (`--recipes DIR` for another folder),
`--recipe FILE.yaml` any overlay file (nlsr_core.train.recipes.load_recipe). Each recipe is one output `<out>/<name>/` (weak/, aligned/,
result.json), written atomically; a stored result of the same recipe is reused, so adding a recipe trains only
that one. M (the base) is judged once into `<out>/base.json`. Not a stage of the default pipeline: a 3-epoch
recipe costs about 12 minutes on 2 CPU cores.
"""
from __future__ import annotations

import click

from stages.options import PATH, compute_options, config_option, model_option, template_option

# The report's first line: how `nlsr recipe-study` recognises its own --report file.
REPORT_TITLE = "# Alignment recipes: where the safety lives"
# Everything `nlsr recipe-study` writes into --curve: the only files it may replace there.
CURVE_FILES = ("scaling.csv", "scaling.png")


@click.command("recipe-study")
@click.option("--recipe", "names", multiple=True, help="a recipe name (recipes/<name>.yaml) or an overlay .yaml "
              "file (repeatable) [default: every recipe of --recipes]")
@click.option("--recipes", "recipes_dir", type=PATH, default=None,
              help="folder of recipe overlays [default: the repository's recipes/]")
@click.option("--data", "data_dir", default="data/prepared", show_default=True, type=PATH,
              help="prepared data: the held-out splits every recipe is judged on")
@click.option("--task", default="sst2", show_default=True, help="task whose test split gives FA")
@config_option("data.local_dir", "--local-dir", dest="local_dir")
@model_option
@compute_options
@template_option
@click.option("--out", "out_dir", default="recipe-study", show_default=True, type=PATH,
              help="directory holding one output per recipe")
@click.option("--report", "report_path", default="reports/alignment.md", show_default=True, type=PATH)
@click.option("--cache", "cache_dir", default=".nlsr-cache/judge", show_default=True, type=PATH,
              help="answer + verdict cache ('' = no cache)")
@click.option("--curve-base", default=None, help="a studied recipe: the report adds the data-scaling curve of the "
              "recipes that differ from it only in Wa's pair counts (with --curve)")
@click.option("--curve", "curve_dir", default=None, type=PATH,
              help=f"folder for the curve's {' and '.join(CURVE_FILES)} (with --curve-base)")
def command(names, recipes_dir, data_dir, task, local_dir, model_name, compute, template, out_dir, report_path,
            cache_dir, curve_base, curve_dir):
    """Train each recipe's W0 and Wa, judge M, M' and M' + Wa, and tabulate where the safety lives."""
    import json
    from pathlib import Path

    from nlsr_core.report.alignment_report import (CURVE_COLUMNS, CURVE_RATES, alignment_markdown, scaling_markdown,
                                                   scaling_names, scaling_rows, scaling_series)
    from nlsr_core.report.plots import plot_scaling
    from nlsr_core.report.results import write_csv
    from nlsr_core.errors import NlsrError
    from nlsr_core.io.fileio import write_json
    from nlsr_core.lora.generate import StackPlan
    from nlsr_core.io.outputs import claim, claim_container, claim_file, only_files, replace, replace_file, titled
    from nlsr_core.study.recipe_study import (RecipeData, add_judge_free, base_file_name, cached_result, data_spec,
                                              is_study_dir, judge_variants, run_recipe)
    from nlsr_core.train.recipes import RECIPES_DIR, find_recipe, recipes as studied

    folder = recipes_dir or RECIPES_DIR
    try:
        recipes = [find_recipe(n, folder) for n in names] if names else list(studied(folder).values())
    except NlsrError as exc:
        raise NlsrError(f"recipe-study --recipe: {exc}") from None
    if not recipes:
        raise NlsrError(f"recipe-study --recipes: {folder} holds no <name>.yaml recipe; expected params overlays")
    if (curve_base is None) != (curve_dir is None):
        raise NlsrError("recipe-study --curve-base and --curve: expected both (the series' base recipe and the "
                        "folder of its plot) or neither")
    if curve_base is not None:
        scaling_names({r.name: r.record() for r in recipes}, curve_base)  # a bad series fails before any training
    data, out, cache = Path(data_dir), Path(out_dir), (Path(cache_dir) if cache_dir else None)
    if not (data / "eval" / "harmful.jsonl").is_file():
        raise NlsrError(f"recipe-study --data: {data}/eval/harmful.jsonl is missing (run nlsr prepare-data first)")
    spec = data_spec(data, local_dir)
    inputs = [("--data", data), ("--local-dir", local_dir)]
    claim_container(out, inputs=inputs)
    report = claim_file(report_path, "recipe-study", "--report", inputs=inputs, recognise=titled(REPORT_TITLE))
    outputs = {r.name: claim(out / r.name, "recipe-study", inputs=inputs, recognise=is_study_dir) for r in recipes}
    curve = None if curve_dir is None else claim(Path(curve_dir), "recipe-study", option="--curve", inputs=inputs,
                                                 recognise=only_files(CURVE_FILES))

    base_file = out / base_file_name(compute)
    if not base_file.is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_json(base_file, judge_variants({"base": StackPlan(model_name, None, None)}, data, task, model_name,
                                             cache, compute)["base"])
    hs_base = json.loads(base_file.read_text(encoding="utf-8"))["hs"]["pct"]

    results = []
    for recipe in recipes:
        recipe_data = RecipeData.of(recipe, spec, data, task)
        result = cached_result(out, recipe, compute, recipe_data.sha256)
        if result is not None and result.get("judge_free") is None:  # measured before the score (or its pairs)
            result = add_judge_free(result, out / recipe.name, data, template, compute)
        if result is None:
            with replace(outputs[recipe.name]) as tmp:
                result = run_recipe(recipe, recipe_data, data, tmp, model_name, task, template, cache, compute)
        results.append(result)
        click.echo(f"recipe-study: {recipe.name}: HS M' {result['judged']['weak']['hs']['pct']:.0f}, "
                   f"M'+Wa {result['judged']['aligned']['hs']['pct']:.0f}, over-refusal "
                   f"{result['judged']['aligned']['over_refusal']['pct']:.0f}")
    text = alignment_markdown(results, {r.name: r.record() for r in recipes}, hs_base)
    if curve is not None:
        series = scaling_series(results, curve_base)
        curve_rows = scaling_rows(series)
        with replace(curve) as tmp:
            write_csv(tmp / CURVE_FILES[0], CURVE_COLUMNS, curve_rows)
            plot_scaling(curve_rows, CURVE_RATES, tmp / CURVE_FILES[1])
        text += (f"\n## Data-scaling curve (from {curve_base}: only Wa's pair counts change)\n\nM' + Wa on the "
                 f"held-out splits, % [95% Wilson interval] (k/n); plot and CSV in `{curve.path}/`.\n\n"
                 + scaling_markdown(series, hs_base))
    with replace_file(report) as tmp:
        tmp.write_text(f"{REPORT_TITLE}\n\nData: source `{spec.source}` "
                       f"(`{data}`). HS(M) = {hs_base:.0f} "
                       f"(`{base_file}`). Written by `nlsr recipe-study` from `{out}/<recipe>/result.json`.\n\n"
                       + text, encoding="utf-8")
    click.echo(f"recipe-study: wrote {report.path} ({len(results)} recipes)")
