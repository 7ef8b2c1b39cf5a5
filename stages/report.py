"""`nlsr report`: aggregate the judged cells into metrics, tables and plots.

    nlsr report --judged judge --metrics reports/metrics.json --results reports/results.md \
        --plots reports/plots

`--judged` takes judged.json files or directories holding `<cell>/judged.json` (repeatable). The per-module
similarity plot reads the realigned adapters recorded in judged.json (or `--realigned DIR`, repeatable).
"""
from __future__ import annotations

import click


# Everything `nlsr report` writes into --plots: the only files it may replace there.
PLOT_FILES = ("frontier.csv", "frontier.png", "hs_fa_vs_p.csv", "hs_fa_vs_p.png", "similarity.csv", "similarity.png",
              *(f"{name}.{ext}" for name in ("broken_layers", "broken_layers_by_method", "set_similarity",
                                             "neuron_overlap", "amplification", "preamplification")
                for ext in ("csv", "png")))


@click.command("report")
@click.option("--judged", "judged_paths", multiple=True, default=("judge",), show_default=True,
              type=click.Path(), help="judged.json file(s) or directories of cells (repeatable)")
@click.option("--realigned", "realigned_dirs", multiple=True, type=click.Path(),
              help="realigned adapter dir(s), or a folder of them, for the similarity plot "
                   "(default: those recorded in judged.json)")
@click.option("--metrics", "metrics_file", type=click.Path(), default="reports/metrics.json", show_default=True)
@click.option("--results", "results_file", type=click.Path(), default="reports/results.md", show_default=True)
@click.option("--plots", "plots_dir", type=click.Path(), default="reports/plots", show_default=True)
@click.option("--frontier", "frontier_dir", type=click.Path(), default=None,
              help="frontier/ outputs (<cell>/frontier.json) -> --frontier-md and plots/frontier.{csv,png}")
@click.option("--calibrate", "calibrate_dir", type=click.Path(), default=None,
              help="calibrate/ outputs (<cell>/calibrate.json): the chosen setting, marked on the frontier")
@click.option("--ablate", "ablate_dir", type=click.Path(), default=None,
              help="ablate/ outputs (<cell>/ablate.json) -> --ablations-md")
@click.option("--analyze", "analyze_dir", type=click.Path(), default=None,
              help="analyze/ outputs (<cell>/analyze.json) -> --analyses-md and the analyses' plots")
@click.option("--frontier-md", type=click.Path(), default="reports/frontier.md", show_default=True)
@click.option("--analyses-md", type=click.Path(), default="reports/analyses.md", show_default=True)
@click.option("--ablations-md", type=click.Path(), default="reports/ablations.md", show_default=True)
@click.option("--finetune-seeds", "finetune_seeds_dir", type=click.Path(), default=None,
              help="finetune-seeds/ outputs (<cell>/finetune-seeds.json) -> --finetune-seeds-md")
@click.option("--finetune-seeds-md", type=click.Path(), default="reports/finetune-seeds.md", show_default=True)
def command(judged_paths, realigned_dirs, metrics_file, results_file, plots_dir, frontier_dir, calibrate_dir,
            ablate_dir, analyze_dir, frontier_md, analyses_md, ablations_md, finetune_seeds_dir, finetune_seeds_md):
    """Write metrics.json (DVC metrics), results.md (Table 1 layout + Wilson intervals), plot CSVs and PNGs."""
    from pathlib import Path

    from nlsr_core.report import analyses_report, results as report, study_report
    from nlsr_core.study.finetune_seeds import finetune_seeds_markdown
    from nlsr_core.io.fileio import write_json
    from nlsr_core.study.finetune_seeds import FINETUNE_SEEDS_TITLE
    from nlsr_core.io.outputs import claim, claim_file, json_of_mappings, only_files, replace, replace_file, titled
    from nlsr_core.report.plots import plot_broken_layers_by_method, plot_frontier, plot_hs_fa, plot_similarity

    inputs = [*(("--judged", p) for p in judged_paths), *(("--realigned", d) for d in realigned_dirs),
              ("--frontier", frontier_dir), ("--calibrate", calibrate_dir), ("--ablate", ablate_dir),
              ("--analyze", analyze_dir), ("--finetune-seeds", finetune_seeds_dir)]
    # Each file output may replace only what this command writes there (recognised by its contents).
    files = {option: claim_file(path, "report", option, inputs=inputs, recognise=recognise)
             for option, path, recognise, given in (
                 ("--metrics", metrics_file, json_of_mappings, True),
                 ("--results", results_file, titled(report.RESULTS_TITLE), True),
                 ("--frontier-md", frontier_md, titled(study_report.FRONTIER_TITLE), frontier_dir),
                 ("--ablations-md", ablations_md, titled(study_report.ABLATIONS_TITLE), ablate_dir),
                 ("--analyses-md", analyses_md, titled(analyses_report.ANALYSES_TITLE), analyze_dir),
                 ("--finetune-seeds-md", finetune_seeds_md, titled(FINETUNE_SEEDS_TITLE), finetune_seeds_dir))
             if given}
    plots = claim(Path(plots_dir), "report", option="--plots", inputs=inputs, recognise=only_files(PLOT_FILES))
    judged = report.load_judged([Path(p) for p in judged_paths])
    realigned = (report.expand_adapter_dirs([Path(d) for d in realigned_dirs]) if realigned_dirs
                 else report.realigned_dirs(judged))
    with replace_file(files["--metrics"]) as tmp:
        write_json(tmp, report.metrics(judged))
    with replace_file(files["--results"]) as tmp:
        tmp.write_text(report.results_markdown(judged), encoding="utf-8")
    columns, rows = report.hs_fa_rows(judged)
    sim = report.similarity_rows(realigned)
    frontiers = study_report.load_docs(Path(frontier_dir) if frontier_dir else None, "frontier")
    calibrations = study_report.load_docs(Path(calibrate_dir) if calibrate_dir else None, "calibrate")
    ablations = study_report.load_docs(Path(ablate_dir) if ablate_dir else None, "ablate")
    analysed = study_report.load_docs(Path(analyze_dir) if analyze_dir else None, "analyze", key="broken_layers")
    replicated = study_report.load_docs(Path(finetune_seeds_dir) if finetune_seeds_dir else None, "finetune-seeds",
                                        key="replicates")
    if frontier_dir:
        with replace_file(files["--frontier-md"]) as tmp:
            tmp.write_text(study_report.frontier_markdown(frontiers, calibrations, replicated), encoding="utf-8")
    if ablate_dir:
        with replace_file(files["--ablations-md"]) as tmp:
            tmp.write_text(study_report.ablations_markdown(ablations), encoding="utf-8")
    by_method = analyses_report.method_broken_rows(sim, analyses_report.taus_of(analysed))
    if analyze_dir:
        with replace_file(files["--analyses-md"]) as tmp:
            tmp.write_text(analyses_report.analyses_markdown(analysed, by_method), encoding="utf-8")
    if finetune_seeds_dir:
        with replace_file(files["--finetune-seeds-md"]) as tmp:
            tmp.write_text(finetune_seeds_markdown(replicated), encoding="utf-8")
    with replace(plots) as tmp:
        if frontier_dir:
            points = study_report.frontier_rows(frontiers, calibrations)
            report.write_csv(tmp / "frontier.csv", study_report.FRONTIER_COLUMNS, points)
            plot_frontier(points, tmp / "frontier.png")
        if analyze_dir:
            for name, figure_columns, rows_of, plot in analyses_report.FIGURES:
                figure_rows = rows_of(analysed)
                report.write_csv(tmp / f"{name}.csv", figure_columns, figure_rows)
                plot(figure_rows, tmp / f"{name}.png")
            report.write_csv(tmp / "broken_layers_by_method.csv", analyses_report.METHOD_BROKEN_COLUMNS, by_method)
            plot_broken_layers_by_method(by_method, tmp / "broken_layers_by_method.png")
        report.write_csv(tmp / "hs_fa_vs_p.csv", columns, rows)
        plot_hs_fa(rows, report.variants_present(judged), tmp / "hs_fa_vs_p.png")
        report.write_csv(tmp / "similarity.csv", report.SIMILARITY_COLUMNS, sim)
        plot_similarity(sim, tmp / "similarity.png")
    written = [Path(p) for p, given in ((frontier_md, frontier_dir), (ablations_md, ablate_dir),
                                        (analyses_md, analyze_dir), (finetune_seeds_md, finetune_seeds_dir)) if given]
    _track([Path(metrics_file), Path(results_file), *written], Path(plots_dir), report.metrics(judged))
    click.echo(f"report: {len(judged)} cells -> {metrics_file}, {results_file}, {plots_dir}/ "
               f"({len(sim)} module similarities from {len(realigned)} realigned adapters)")


def _track(files: list, plots_dir, metrics: dict) -> None:
    """The report run: every cell's HS/FA/over-refusal as metrics, the table and plots as artifacts."""
    from stages.run_env import tracked

    with tracked("report", None, {"cells": sorted(metrics)}) as tr:
        for cell, variants in sorted(metrics.items()):
            for variant, values in sorted(variants.items()):
                for name, value in sorted(values.items()):
                    if value is not None:
                        tr.log_metric(f"{cell}.{variant}.{name}", value)
        for path in (*files, *sorted(plots_dir.iterdir())):
            tr.log_artifact(path)
