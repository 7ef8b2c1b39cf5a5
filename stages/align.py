"""`nlsr align --method M`: the weak SFT adapter W0 and the aligned adapter Wa (docs/DESIGN.md §3.1).

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
from stages.options import (compute_options, config_option, config_options, gradient_checkpointing_option,
                            model_option, model_seed_option, template_option)


@click.command("align")
@click.option("--method", default="dpo", show_default=True, help="sft | dpo | orpo | kto | simpo")
@model_option
@model_seed_option
@config_option("model.trust_remote_code")
@compute_options
@template_option
@click.option("--data", "data_dir", default="data/prepared", show_default=True, type=click.Path())
@click.option("--out", "out_dir", default=None, type=click.Path(), help="[default: adapters/aligned/<method>]")
@config_options("lora")
@config_options("align")
@click.option("--max-steps", "--max_steps", "max_steps", type=int, default=-1, show_default=True,
              help="stop each training phase after this many optimizer steps (-1: run the epochs)")
@launch_option
@gradient_checkpointing_option
@click.pass_context
def command(ctx, method, model_name, model_seed, trust_remote_code, compute, template, data_dir, out_dir, rank,
            alpha, dropout, targets, lr, epochs, batch_size, max_length, seed, beta, pref_epochs, precompute_ref,
            chosen_nll, on_policy_tokens, max_steps, launch_prefix, gradient_checkpointing):
    """Train W0 (SFT) and, for preference methods, Wa on M' = M + W0; write both adapters with lineage."""
    from pathlib import Path

    from nlsr_core.errors import NlsrError
    from nlsr_core.lora.models import ModelSpec
    from nlsr_core.io.outputs import claim, written_by
    from nlsr_core.train.train_data import read_rows
    from stages.options import ALIGN_METHODS, split_list

    if method not in ALIGN_METHODS:
        raise NlsrError(f"align --method: '{method}' is unknown (expected one of {', '.join(ALIGN_METHODS)})")
    data = Path(data_dir)
    sft_rows = read_rows(data / "align" / "sft.jsonl", "sft")
    pref_rows = None if method == "sft" else read_rows(data / "align" / "preference.jsonl", "pairs")
    lora_kw = dict(rank=rank, alpha=alpha, dropout=dropout, targets=tuple(split_list(targets, str, "targets")))
    train_kw = dict(lr=lr, epochs=epochs, batch_size=batch_size, max_length=max_length, seed=seed, beta=beta,
                    max_steps=max_steps, template=template)
    pref_kw = dict(pref_epochs=pref_epochs, precompute_ref=precompute_ref, chosen_nll=chosen_nll,
                   on_policy_tokens=on_policy_tokens)
    _check_settings(lora_kw, train_kw, pref_kw)  # fail before any launch or model load
    output = claim(Path(out_dir or f"adapters/aligned/{method}"), "align", inputs=[("--data", data)],
                   recognise=written_by("align", within=("weak", "aligned")))
    status = relaunch(ctx, launch_prefix)
    if status is not None:
        ctx.exit(status)
    spec = ModelSpec(model_name, seed=model_seed, trust_remote_code=trust_remote_code).placed(compute)
    _run(method, spec, data, output, sft_rows, pref_rows, lora_kw, train_kw, pref_kw, gradient_checkpointing)


def _check_settings(lora_kw: dict, train_kw: dict, pref_kw: dict) -> None:
    from nlsr_core.config import LoraConfig
    from nlsr_core.errors import NlsrError
    from nlsr_core.train.trainers import TrainSettings

    LoraConfig(**lora_kw).check("lora")
    TrainSettings(**train_kw).check("align")
    if pref_kw["pref_epochs"] <= 0:
        raise NlsrError(f"align.pref_epochs: {pref_kw['pref_epochs']} (expected > 0)")
    _pref_settings(train_kw, pref_kw).check("align")  # chosen_nll
    if pref_kw["on_policy_tokens"] < 0:
        raise NlsrError(f"align.on_policy_tokens: {pref_kw['on_policy_tokens']} (expected >= 0; 0 = off)")


def _pref_settings(train_kw: dict, pref_kw: dict):
    """Wa's settings: W0's with the preference phase's epochs and reference option."""
    from nlsr_core.train.trainers import TrainSettings

    return TrainSettings(**{**train_kw, "epochs": pref_kw["pref_epochs"], "precompute_ref": pref_kw["precompute_ref"],
                            "chosen_nll": pref_kw["chosen_nll"]})


def _run(method, spec, data, output, sft_rows, pref_rows, lora_kw, train_kw, pref_kw, gradient_checkpointing):
    import datasets

    from nlsr_core.train.align import align
    from nlsr_core.config import LoraConfig
    from nlsr_core.io.lineage import input_record
    from nlsr_core.lora.models import model_identity, spec_record
    from nlsr_core.train.trainers import TrainSettings
    from stages.artifact import tracked_inputs, write_artifact
    from stages.launch import is_main_process

    datasets.disable_progress_bars()  # TRL's per-map bars drown the training bar
    params = {"method": method, "lora": {**lora_kw, "targets": list(lora_kw["targets"])},
              "align": {**train_kw, **pref_kw}}
    inputs = [input_record(data / "align" / "sft.jsonl", "data")]
    if pref_rows is not None:
        inputs.append(input_record(data / "align" / "preference.jsonl", "data"))
    with tracked_inputs("align", method, params, inputs, enabled=is_main_process()) as tr:
        def on_loss(phase, step, loss):
            tr.log_metric("train_loss" if phase == "aligned" or method == "sft" else "weak_train_loss", loss, step)

        memory = {"gradient_checkpointing": gradient_checkpointing}  # how training runs, not what it computes
        result = align(spec, method, sft_rows, pref_rows, LoraConfig(**lora_kw), TrainSettings(**train_kw, **memory),
                       on_loss, _pref_settings({**train_kw, **memory}, pref_kw), pref_kw["on_policy_tokens"])
        if not result.aligned.is_main:
            return
        common = {"model": model_identity(spec), "model_spec": spec_record(spec), "compute": spec.compute().record(),
                  "data_manifest": _manifest_digest(data), "method": method}
        write_artifact(output, "align", method, inputs, params,
                       lambda tmp: _fill(tmp, output.path, result, inputs, params, common), tracker=tr)
    s, out = result.aligned.loss_summary(), output.path
    click.echo(f"align: wrote {out}/weak and {out}/aligned ({method}, {s['steps']} steps, loss {s['first']:.4f} "
               f"-> {s['last']:.4f}, world size {result.aligned.world_size})")


def _fill(tmp, out, result, inputs: list[dict], params: dict, common: dict) -> None:
    """weak/ and aligned/ (PEFT dirs, each with its own lineage) in one output: both appear or neither."""
    from nlsr_core.lora.adapters import save_adapter
    from nlsr_core.io.lineage import recorded_path, sha256_dir, write_lineage

    method = common["method"]
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
                  train=result.aligned.loss_summary(), world_size=result.aligned.world_size,
                  on_policy=result.on_policy)


def _manifest_digest(data) -> str | None:
    from nlsr_core.io.lineage import sha256_file

    manifest = data / "manifest.json"
    return sha256_file(manifest) if manifest.is_file() else None
