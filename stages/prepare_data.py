"""`nlsr prepare-data`: build the data suite and write data/prepared/ (JSONL per split and mix + manifest)."""
from __future__ import annotations

import dataclasses

import click

from nlsr_core.config import SizesConfig
from stages.options import check_align_methods, config_option, config_options, split_list


def _size_options(f):
    for field in reversed(dataclasses.fields(SizesConfig)):
        f = config_option(f"data.sizes.{field.name}")(f)
    return f


@click.command("prepare-data")
@config_options("data", "source", "local_dir", "seed", "preference_pairs", "contrast_refusals", "sft_refusals",
                "transfer")
@config_options("grid")
@config_option("finetune.n", "--finetune-n", "--finetune_n", dest="finetune_n")
@_size_options
@click.option("--out", "out_dir", default="data/prepared", show_default=True, type=click.Path())
def command(source, local_dir, seed, preference_pairs, contrast_refusals, sft_refusals, transfer, tasks,
            poison_ratios, align_methods, finetune_n, out_dir, **sizes):
    """Write every split and every (task, p) poisoned mix, plus manifest.json with counts and sha256 per file."""
    from pathlib import Path

    from nlsr_core.data import DataSpec
    from nlsr_core.data.prepare import prepare

    task_list = split_list(tasks, str, "tasks")
    check_align_methods(split_list(align_methods, str, "align_methods"))
    spec = DataSpec(source=source, seed=seed, local_dir=local_dir,
                    tasks=tuple(task_list), sizes=SizesConfig(**sizes), preference_pairs=preference_pairs,
                    contrast_refusals=contrast_refusals, sft_refusals=sft_refusals, transfer=transfer)
    mixes = [(t, p) for t in task_list for p in split_list(poison_ratios, float, "poison_ratios")]
    manifest = prepare(spec, mixes, finetune_n, Path(out_dir), inputs=[("--local-dir", local_dir)])
    counts = manifest.get("counts", {})
    click.echo(f"prepare-data: wrote {len(counts)} files ({sum(counts.values())} rows) to {out_dir}")
