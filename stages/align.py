"""`nlsr align --method M`: the weak SFT adapter W0 and the aligned adapter Wa (DESIGN §3).

    adapters/aligned/<M>/weak/      W0 = SFT LoRA on M (data/prepared/align/sft.jsonl: refusals + benign answers)
    adapters/aligned/<M>/aligned/   Wa = M's preference LoRA on M' = M + W0 (align/preference.jsonl);
                                    for M = sft, Wa is a copy of W0 (and M' = M)

Both directories are PEFT adapters with a lineage.json (base model identity, data digests, params, seed, loss
curve summary, world size, `weak` = the W0 path for Wa of preference methods). Written once, by the main process,
atomically.
"""
from __future__ import annotations

import click

from stages.launch import launch_option, relaunch
from stages.options import model_option


def _train_options(f):
    options = [
        click.option("--rank", type=int, default=16, show_default=True, help="LoRA rank r (lora.rank)"),
        click.option("--alpha", type=float, default=32.0, show_default=True, help="LoRA alpha (lora.alpha)"),
        click.option("--dropout", type=float, default=0.05, show_default=True, help="LoRA dropout (lora.dropout)"),
        click.option("--targets", multiple=True, default=("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",),
                     show_default=True, help="LoRA target modules, repeat or comma-separate (lora.targets)"),
        click.option("--lr", type=float, default=2e-4, show_default=True, help="learning rate (align.lr)"),
        click.option("--epochs", type=float, default=1.0, show_default=True, help="epochs (align.epochs)"),
        click.option("--batch-size", "--batch_size", "batch_size", type=int, default=8, show_default=True),
        click.option("--max-length", "--max_length", "max_length", type=int, default=128, show_default=True,
                     help="max tokens of prompt + response (align.max_length)"),
        click.option("--seed", type=int, default=0, show_default=True, help="align.seed"),
        click.option("--beta", type=float, default=0.1, show_default=True,
                     help="preference strength: DPO/KTO beta, ORPO lambda, SimPO beta (align.beta)"),
        click.option("--max-steps", "--max_steps", "max_steps", type=int, default=-1, show_default=True,
                     help="stop each training phase after this many optimizer steps (-1: run the epochs)"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("align")
@click.option("--method", default="dpo", show_default=True, help="sft | dpo | orpo | kto | simpo")
@model_option
@click.option("--model-seed", type=int, default=0, show_default=True, help="model.seed (tiny-random only)")
@click.option("--trust-remote-code/--no-trust-remote-code", default=False, show_default=True)
@click.option("--template", default="chat", show_default=True, help="chat | alpaca (data.template)")
@click.option("--data", "data_dir", default="data/prepared", show_default=True, type=click.Path())
@click.option("--out", "out_dir", default=None, type=click.Path(), help="[default: adapters/aligned/<method>]")
@_train_options
@launch_option
@click.pass_context
def command(ctx, method, model_name, model_seed, trust_remote_code, template, data_dir, out_dir, rank, alpha,
            dropout, targets, lr, epochs, batch_size, max_length, seed, beta, max_steps, launch_prefix):
    """Train W0 (SFT) and, for preference methods, Wa on M' = M + W0; write both adapters with lineage."""
    from pathlib import Path

    from nlsr_core.errors import NlsrError
    from nlsr_core.outputs import claim, written_by
    from nlsr_core.train_data import read_rows
    from stages.options import ALIGN_METHODS, split_list

    if method not in ALIGN_METHODS:
        raise NlsrError(f"align --method: '{method}' is unknown (expected one of {', '.join(ALIGN_METHODS)})")
    data = Path(data_dir)
    sft_rows = read_rows(data / "align" / "sft.jsonl", "sft")
    pref_rows = None if method == "sft" else read_rows(data / "align" / "preference.jsonl", "pairs")
    lora_kw = dict(rank=rank, alpha=alpha, dropout=dropout, targets=tuple(split_list(targets, str, "targets")))
    train_kw = dict(lr=lr, epochs=epochs, batch_size=batch_size, max_length=max_length, seed=seed, beta=beta,
                    max_steps=max_steps, template=template)
    _check_settings(lora_kw, train_kw)  # fail before any launch or model load
    output = claim(Path(out_dir or f"adapters/aligned/{method}"), "align", inputs=[("--data", data)],
                   recognise=written_by("align", within=("weak", "aligned")))
    status = relaunch(ctx, launch_prefix)
    if status is not None:
        ctx.exit(status)
    _run(method, model_name, model_seed, trust_remote_code, data, output, sft_rows, pref_rows, lora_kw, train_kw)


def _check_settings(lora_kw: dict, train_kw: dict) -> None:
    from nlsr_core.train import LoraSettings, TrainSettings

    LoraSettings(**lora_kw).check("lora")
    TrainSettings(**train_kw).check("align")


def _run(method, model_name, model_seed, trust_remote_code, data, output, sft_rows, pref_rows, lora_kw, train_kw):
    import datasets

    from nlsr_core.lineage import input_record
    from nlsr_core.models import ModelSpec, model_identity, spec_record
    from nlsr_core.train import LoraSettings, TrainSettings, align
    from stages.launch import is_main_process
    from stages.options import tracked

    datasets.disable_progress_bars()  # TRL's per-map bars drown the training bar
    spec = ModelSpec(model_name, seed=model_seed, trust_remote_code=trust_remote_code)
    params = {"method": method, "lora": {**lora_kw, "targets": list(lora_kw["targets"])}, "align": train_kw}
    inputs = [input_record(data / "align" / "sft.jsonl", "data")]
    if pref_rows is not None:
        inputs.append(input_record(data / "align" / "preference.jsonl", "data"))
    main = is_main_process()
    with tracked("align", method, params, enabled=main) as tr:
        for record in inputs:
            tr.log_input(record)

        def on_loss(phase, step, loss):
            tr.log_metric("train_loss" if phase == "aligned" or method == "sft" else "weak_train_loss", loss, step)

        result = align(spec, method, sft_rows, pref_rows, LoraSettings(**lora_kw), TrainSettings(**train_kw),
                       on_loss)
        if not result.aligned.is_main:
            return
        common = {"model": model_identity(spec), "model_spec": spec_record(spec),
                  "data_manifest": _manifest_digest(data), "method": method}
        _write(output, result, inputs, params, common)
        tr.log_artifact(output.path)
    s, out = result.aligned.loss_summary(), output.path
    click.echo(f"align: wrote {out}/weak and {out}/aligned ({method}, {s['steps']} steps, loss {s['first']:.4f} "
               f"-> {s['last']:.4f}, world size {result.aligned.world_size})")


def _write(output, result, inputs: list[dict], params: dict, common: dict) -> None:
    """weak/ and aligned/ (PEFT dirs + lineage) into one atomic directory: both appear or neither."""
    from nlsr_core.adapters import save_adapter
    from nlsr_core.lineage import recorded_path, sha256_dir, write_lineage
    from nlsr_core.outputs import replace

    method, out = common["method"], output.path
    with replace(output) as tmp:
        save_adapter(result.weak.adapter(), tmp / "weak")
        write_lineage(tmp / "weak", "align", inputs[:1], params, **common, role="weak", weak=None,
                      train=result.weak.loss_summary(), world_size=result.weak.world_size)
        save_adapter(result.aligned.adapter(), tmp / "aligned")
        if method == "sft":   # Wa = W0 on M' = M: nothing is merged below it
            aligned_inputs, weak = inputs[:1], None
        else:                 # the digest is of the files just written; the path is where they will live
            weak = recorded_path(out / "weak")
            aligned_inputs = inputs[1:] + [{"role": "weak", "path": weak, "sha256": sha256_dir(tmp / "weak")}]
        write_lineage(tmp / "aligned", "align", aligned_inputs, params, **common, role="aligned", weak=weak,
                      train=result.aligned.loss_summary(), world_size=result.aligned.world_size)


def _manifest_digest(data) -> str | None:
    from nlsr_core.lineage import sha256_file

    manifest = data / "manifest.json"
    return sha256_file(manifest) if manifest.is_file() else None
