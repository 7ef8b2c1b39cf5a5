"""`nlsr paper-tables`: the paper's tables and figures beside ours, from the paper-tables profile runs.

    nlsr paper-tables --run .runs/paper-tables/ratios --run .runs/paper-tables/aligners \\
        --run .runs/paper-tables/tasks --out reports/paper-tables.md

Reads each run's judge/, frontier/, analyze/ and adapters/realigned/ (and repro.log for stage times; see
nlsr_core.report.paper_tables). Cells a run did not produce show as '–'; `--table NAME` (repeatable) writes only
those tables and requires every cell they need. Not a stage of the default pipeline: `make repro-paper-tables`
runs the profiles, then this.

    nlsr paper-tables --run .runs/paper-tables/ratios --snapshot reports/paper-tables/ratios

copies what the report reads from one run into a folder that is committed (`make repro-profile` does it for the
paper-tables runs), so the report can be rebuilt from `--run reports/paper-tables/<part>` on a machine without
.runs/ or the DVC cache, and from runs made on different machines.
"""
from __future__ import annotations

import click

from stages.options import PATH

# table name -> the cells (<task>-p<ratio>-<method>) it needs, or None for "at least one analysed cell"
TABLE_CELLS = {
    "table1": [f"sst2-p{p:g}-dpo" for p in (0.01, 0.05, 0.1, 0.2, 0.3)],
    "table2": [f"sst2-p0.05-{m}" for m in ("sft", "dpo", "orpo", "kto", "simpo")],
    "table3": ["agnews-p0.05-dpo", "gsm8k-p0.05-dpo"],
    "table4": None,
    "table6": ["sst2-p0.01-dpo", "sst2-p0.1-dpo"],
    "figures": None,
}


@click.command("paper-tables")
@click.option("--run", "runs", multiple=True, required=True, type=PATH,
              help="a profile run directory (repeatable), e.g. .runs/paper-tables/ratios")
@click.option("--table", "tables", multiple=True, type=click.Choice(list(TABLE_CELLS)),
              help="write only these tables, each requiring every cell it needs [default: all, '–' where not run]")
@click.option("--out", "out_path", default="reports/paper-tables.md", show_default=True, type=PATH)
@click.option("--snapshot", "snapshot", default=None, type=PATH,
              help="instead of the report: copy what it reads from the one --run (summaries and repro.log, not "
                   "answers or adapters) into this folder, e.g. reports/paper-tables/ratios, to be passed as --run "
                   "on a machine without the run")
def command(runs, tables, out_path, snapshot):
    """Write the side-by-side report of the paper's Tables 1-4, 6 and Figs. 3-5."""
    from nlsr_core.errors import NlsrError
    from nlsr_core.io.outputs import claim_file, replace_file, titled
    from nlsr_core.report import paper_tables as report

    if snapshot is not None:
        if len(runs) != 1 or tables:
            raise NlsrError(f"--snapshot: given with {len(runs)} --run and {len(tables)} --table; expected exactly one "
                            "--run and no --table")
        copied = report.snapshot_run(runs[0], snapshot)
        click.echo(f"paper-tables: {len(copied)} files of {runs[0]} -> {snapshot}")
        return
    target = claim_file(out_path, "paper-tables", "--out", inputs=[("--run", r) for r in runs],
                        recognise=titled(report.PAPER_TABLES_TITLE))
    loaded = report.load_runs(list(runs))
    for name in tables:
        needed = TABLE_CELLS[name]
        if needed is None:
            if not loaded.analyzed:
                raise NlsrError(f"--table {name}: no analysed cell (analyze/<cell>/analyze.json) in the runs; "
                                "expected a run whose study cells ran `nlsr analyze`")
            continue
        missing = [c for c in needed if c not in loaded.judged]
        if missing:
            raise NlsrError(f"--table {name}: cell {missing[0]} was not run; expected judge/{missing[0]}/judged.json "
                            f"in one of the runs ({', '.join(map(str, runs))})")
    text = report.paper_tables_markdown(loaded, tables or tuple(TABLE_CELLS))
    with replace_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    click.echo(f"paper-tables: {len(loaded.judged)} judged cells, {len(loaded.analyzed)} analysed -> {out_path}")
