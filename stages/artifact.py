"""`write_artifact`: the save-and-log sequence every writing stage shares (not a command itself).

One MLflow run per stage execution (`stage@key`, stages.run_env.tracked) logs each input record (path, role,
sha256), the claimed output is filled in a temporary directory and renamed into place
(nlsr_core.io.outputs.replace, so a failure leaves the old output or none), lineage.json is written beside the
files, and the output directory is logged as the run's artifact.
"""
from __future__ import annotations

import contextlib
from typing import Callable


@contextlib.contextmanager
def tracked_inputs(stage: str, key: str | None, params: dict, inputs: list[dict], enabled: bool = True):
    """The stage's tracked run with its `inputs` logged; for stages that log during their work (training loss)
    before `write_artifact(..., tracker=tr)`."""
    from stages.run_env import tracked

    with tracked(stage, key, params, enabled=enabled) as tr:
        for record in inputs:
            tr.log_input(record)
        yield tr


def write_artifact(output, stage: str, key: str | None, inputs: list[dict], params: dict,
                   fill: Callable, *, metrics: dict | None = None, tracker=None) -> None:
    """Write the claimed `output` (nlsr_core.io.outputs.Output) of `stage`.

    `fill(tmp)` writes the files into the temporary directory and returns the extra lineage fields, or None when
    it wrote its own lineage files (align: one per adapter). `metrics` ({name: value}) are logged to the run.
    With `tracker` (from `tracked_inputs`) the run is that one; otherwise a run is opened here.
    """
    from nlsr_core.io.lineage import write_lineage
    from nlsr_core.io.outputs import replace

    with contextlib.ExitStack() as stack:
        tr = tracker or stack.enter_context(tracked_inputs(stage, key, params, inputs))
        with replace(output) as tmp:
            extra = fill(tmp)
            if extra is not None:
                write_lineage(tmp, stage, inputs, params, **extra)
        for name, value in (metrics or {}).items():
            if value is not None:
                tr.log_metric(name, value)
        tr.log_artifact(output.path)


def write_mix_adapter(stage: str, output, spec, mix_file, rows: list[dict], inputs: list[dict], params: dict,
                      train: Callable, lineage: dict) -> None:
    """Train an adapter on a poisoned mix and write it: the finetune and nonaligned stages' shared tail.

    `train(on_loss)` returns the nlsr_core.train.trainers.TrainResult (its per-step loss goes to the stage's run);
    the lineage gets `lineage`'s fields, the mix record (path, rows, poison rows), the poison row ids, the loss
    summary, the world size and the compute placement. Only the main process writes."""
    import click
    import datasets

    from nlsr_core.io.lineage import recorded_path
    from nlsr_core.lora.adapters import save_adapter
    from stages.launch import is_main_process

    datasets.disable_progress_bars()
    out = output.path
    poison_ids = [row["id"] for row in rows if row.get("flag") == "poison"]
    with tracked_inputs(stage, out.name, params, inputs, enabled=is_main_process()) as tr:
        result = train(lambda step, loss: tr.log_metric("train_loss", loss, step))
        if not result.is_main:
            return

        def fill(tmp):
            save_adapter(result.adapter(), tmp)
            return {**lineage, "poison_ids": poison_ids, "train": result.loss_summary(),
                    "mix": {"path": recorded_path(mix_file), "rows": len(rows), "poison_rows": len(poison_ids)},
                    "world_size": result.world_size, "compute": spec.compute().record()}

        write_artifact(output, stage, out.name, inputs, params, fill, tracker=tr)
    s = result.loss_summary()
    click.echo(f"{stage}: wrote {out} ({len(rows)} rows, {len(poison_ids)} poison, {s['steps']} steps, "
               f"loss {s['first']:.4f} -> {s['last']:.4f})")
