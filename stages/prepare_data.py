"""`nlsr prepare-data`: build the data suite and write data/prepared/ (JSONL per split and cell + manifest)."""
from __future__ import annotations

import click

from stages.options import check_align_methods, split_list

SIZE_KEYS = ("sft_refusal", "sft_benign", "preference", "identify", "eval_harmful", "eval_benign",
             "task_train", "task_test", "poison_pool", "calib_harmful", "task_calib")


def _size_options(f):
    for key in reversed(SIZE_KEYS):
        # Both spellings: DVC's dict unpacking of ${data.sizes} passes --sft_refusal 256 ...
        names = dict.fromkeys([f"--{key.replace('_', '-')}", f"--{key}"])
        f = click.option(*names, key, type=int, default=None,
                         help=f"rows in the {key} split (data.sizes.{key})")(f)
    return f


@click.command("prepare-data")
@click.option("--source", default="synthetic", show_default=True, help="synthetic | local | hub")
@click.option("--local-dir", default=None, help="folder with the paper's files (source local)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tasks", "--task", "tasks", multiple=True, default=("sst2",), show_default=True,
              help="task(s): sst2, agnews, gsm8k; repeat or comma-separate (sweep.tasks)")
@click.option("--poison_ratios", "--poison-ratios", "--poison-ratio", "ratios", multiple=True, default=("0.1",),
              show_default=True, help="poison ratio(s) p of the fine-tuning cells (sweep.poison_ratios)")
@click.option("--align_methods", "--align-methods", "methods", multiple=True, default=(),
              help="alignment methods of the sweep; checked here so a typo fails before any training")
@click.option("--finetune-n", type=int, default=200, show_default=True, help="rows per fine-tuning cell (n)")
@_size_options
@click.option("--out", "out_dir", default="data/prepared", show_default=True, type=click.Path())
def command(source, local_dir, seed, tasks, ratios, methods, finetune_n, out_dir, **sizes):
    """Write every split and every (task, p) cell, plus manifest.json with counts and sha256 per file."""
    from pathlib import Path

    from nlsr_core.data import DataSpec, Sizes
    from nlsr_core.data.prepare import prepare

    task_list = split_list(tasks, str, "tasks")
    check_align_methods(split_list(methods, str, "align_methods"))
    spec = DataSpec(source=source, seed=seed, local_dir=local_dir, tasks=tuple(task_list),
                    sizes=Sizes(**{k: v for k, v in sizes.items() if v is not None}))
    cells = [(t, p) for t in task_list for p in split_list(ratios, float, "poison-ratio")]
    manifest = prepare(spec, cells, finetune_n, Path(out_dir), inputs=[("--local-dir", local_dir)])
    counts = manifest.get("counts", {})
    click.echo(f"prepare-data: wrote {len(counts)} files ({sum(counts.values())} rows) to {out_dir}")
