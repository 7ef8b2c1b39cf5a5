"""`nlsr analyze`: the paper's layer and neuron analyses (Figs. 3-4) and amplification studies (Fig. 5, Table 4 /
Fig. 6) for one cell.

    nlsr analyze --cell sst2-p0.1-dpo --finetuned ... --aligned ... --reference ... --stats ... --out analyze/sst2-p0.1-dpo

Figs. 3-4 read adapters and masks only, with one statistics pass over the identification data for each method
of `analyze.identifiers` other than the one recorded in --stats (the model is loaded for it). Fig. 5 scores the
amplified reference M' + We(β) itself for each β of `analyze.betas` (HS, FA, over-refusal on the test split);
Table 4 / Fig. 6 scores NLSR with the pipeline's β and with β = 0 for each P_SR of `analyze.sparsities` at the
pipeline's P_L and each of `analyze.preamplification_layer_prunes` (nlsr_core.study.analyses). Writes
<out>/analyze.json and lineage.json; `nlsr report --analyze` renders reports/analyses.md and its plots.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from stages.cell_options import cell_options, identification_options
from stages.options import PATH, config_options


@click.command("analyze")
@cell_options
@config_options("analyze")
@identification_options
@click.option("--out", type=PATH, default=None, help="default analyze/<cell>")
def command(inputs, identify_data, preference, identify_seed, out, **grids):
    """Broken-layer counts, identifier agreement, and the amplification studies of one cell."""
    from nlsr_core.config import AnalyzeConfig, check_section
    from nlsr_core.eval.evaluate import load_splits, parse_cell
    from nlsr_core.study.analyses import analyze_cell
    from stages.cell_options import claim_result, identification_pass, write_result

    grids = AnalyzeConfig(**{name: tuple(v) if isinstance(v, (list, tuple)) else v for name, v in grids.items()})
    check_section("analyze", grids)   # before the claim: an empty or out-of-range list fails in one line
    cell = parse_cell(inputs.cell)
    output = claim_result(Path(out or f"analyze/{cell.key}"), "analyze", inputs,
                          (("--identify-data", identify_data), ("--preference", preference)))
    collect, ident = identification_pass(inputs, identify_data, preference, identify_seed, click.echo)
    document = analyze_cell(inputs, grids, collect, load_splits(inputs.data_dir, cell.task), click.echo)
    params = {**dataclasses.asdict(grids), "identify": ident}
    write_result(output, "analyze", inputs, params, document)

