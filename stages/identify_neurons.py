"""`nlsr identify-neurons`: safety-critical neurons of the reference adapter We (paper eqs. 3-6, Table 5).

Runs M' + We over the safety identification set X̂ (response tokens only), scores every LoRA entry with the
chosen method and writes, into --out (default masks/<method>/):
    stats.safetensors   the method's fp32 statistics (lowrank: the Gram K per module); they do not depend on
                        P_SR, so masks for any P_SR come from them (`nlsr realign --stats`, `masks_from_stats`)
                        without another pass over the model
    masks.safetensors   bool masks keyed by adapter tensor name, only with --sparsity (`nlsr realign --masks`)
    summary.json        per-module kept fraction, r*, spectrum energy retained; sample and token counts
    lineage.json
The base model and W0 come from the reference adapter's lineage (`model`, `weak`); --model / --weak override.
"""
from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(path_type=Path)


@click.command(name="identify-neurons")
@click.option("--reference", required=True, type=PATH, help="Reference adapter We (adapters/reference/<method>).")
@click.option("--model", default=None, help="Base model name; default: the reference adapter's lineage.")
@click.option("--weak", type=PATH, default=None, help="W0 adapter merged into M'; default: the reference's lineage.")
@click.option("--data", type=PATH, default=Path("data/prepared/identify/safety.jsonl"), show_default=True,
              help="Safety identification set X̂ (prompt + safe response rows).")
@click.option("--preference", type=PATH, default=Path("data/prepared/align/preference.jsonl"), show_default=True,
              help="Preference pairs for --method preference-snip.")
@click.option("--method", default="lowrank", show_default=True,
              help="lowrank | wanda | snip | preference-snip | random")
@click.option("--sparsity", type=float, default=None,
              help="P_SR in [0, 1): also write masks.safetensors; without it only the statistics are written and "
                   "`nlsr realign --stats FILE --sparsity P` makes the masks (the DVC pipeline does that).")
@click.option("--preset", default="paper", show_default=True, help="paper | official-code")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--max-length", type=int, default=160, show_default=True)
@click.option("--template", default="chat", show_default=True, help="chat | alpaca")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (random method).")
@click.option("--out", type=PATH, default=None, help="Output dir; default masks/<method>.")
def command(reference, model, weak, data, preference, method, sparsity, preset, batch_size, max_length,
            template, seed, out):
    """Find the safety-critical neurons of the reference adapter and write masks + stats + summary."""
    from nlsr_core.adapters import load_adapter
    from nlsr_core.errors import NlsrError
    from nlsr_core.neurons import check_sparsity, get_identifier, get_preset
    from nlsr_core.outputs import claim

    identifier = get_identifier(method)
    if sparsity is not None:
        check_sparsity(sparsity)
    get_preset(preset)
    for name, value in (("--batch-size", batch_size), ("--max-length", max_length)):
        if value < 1:
            raise NlsrError(f"identify-neurons {name} = {value}: expected a positive integer")
    out = out or Path("masks") / method
    ref = load_adapter(reference)
    base = base_of(reference, model, weak)
    needed = identification_files(identifier, data, preference)
    output = claim(out, "identify-neurons", inputs=[("--reference", reference), ("--data", data),
                                                    ("--preference", preference), ("--weak", base["weak"])])
    params = {"method": method, "sparsity": sparsity, "preset": preset, "batch_size": batch_size,
              "max_length": max_length, "template": template, "seed": seed}
    result = identify_model(ref, base, identifier.data, needed, params)
    _write(output, ref, reference, base, needed, params, result)


def identification_files(identifier, safety: Path, preference: Path) -> list[Path]:
    """The data file `identifier` reads (none for random), checked to exist."""
    from nlsr_core.errors import NlsrError

    needed = [Path({"safety": safety, "preference": preference}[identifier.data])] if identifier.data else []
    for f in needed:
        if not f.is_file():
            raise NlsrError(f"{f}: missing (expected the prepared {identifier.data} JSONL; run `nlsr prepare-data`)")
    return needed


def base_of(reference: Path, model: str | None, weak: Path | None) -> dict:
    """{'spec', 'identity', 'weak', 'lineage'} for M' from --model/--weak, else the reference's lineage
    (`model_spec` when recorded, else `model`)."""
    from nlsr_core.lineage import lineage_or_empty
    from nlsr_core.models import ModelSpec, model_identity, spec_from_record, spec_record

    record = lineage_or_empty(reference)
    weak = weak if weak is not None else record.get("weak")
    recorded = {k: record[k] for k in ("model", "model_spec", "method") if record.get(k) is not None}
    if model is not None:
        spec = ModelSpec(model)
        return {"spec": spec, "identity": model_identity(spec), "weak": weak,
                "lineage": {"model_spec": spec_record(spec)}}
    spec = spec_from_record(record.get("model_spec"), record.get("model"))
    if spec is None:
        return {"spec": None, "identity": None, "weak": weak, "lineage": recorded}
    return {"spec": spec, "identity": record.get("model") or model_identity(spec), "weak": weak,
            "lineage": recorded}


def identify_model(ref, base: dict, kind: str | None, files: list[Path], params: dict):
    from nlsr_core.errors import NlsrError
    from nlsr_core.neurons import identify
    from nlsr_core.neurons_stats import CollectContext

    ctx = CollectContext(reference=ref, batch_size=params["batch_size"], seed=params["seed"])
    if kind is not None:
        if base["spec"] is None:
            raise NlsrError(f"{ref.path}: no lineage.json with a 'model'; pass --model NAME (and --weak DIR if any)")
        from nlsr_core.stack import load_stack

        weak = Path(base["weak"]) if base["weak"] else None
        if weak is not None and not weak.is_dir():
            raise NlsrError(f"--weak {weak}: not an adapter directory (W0 recorded in the reference's lineage)")
        stack = load_stack(base["spec"], weak=weak, adapter=ref.path)
        ctx.model, ctx.pad_id = stack.model, stack.tokenizer.pad_token_id
        _encode(ctx, stack.tokenizer, kind, files[0], params)
    return identify(params["method"], ctx, params["sparsity"], params["preset"])


def _encode(ctx, tokenizer, kind: str, path: Path, params: dict) -> None:
    from nlsr_core.data.templates import format_example
    from nlsr_core.errors import NlsrError
    from nlsr_core.fileio import read_jsonl
    from nlsr_core.neurons_stats import encode_pairs

    try:
        rows = read_jsonl(path)
    except ValueError as exc:
        raise NlsrError(str(exc)) from None
    fields = ("prompt", "response") if kind == "safety" else ("prompt", "chosen", "rejected")
    for i, row in enumerate(rows, 1):
        if not all(isinstance(row.get(f), str) for f in fields):
            raise NlsrError(f"{path}: row {i} lacks string fields {', '.join(fields)}")
    if not rows:
        raise NlsrError(f"{path}: no rows (expected {', '.join(fields)} objects)")

    def texts(answer_field):
        return [format_example(tokenizer, r["prompt"], r[answer_field], params["template"]) for r in rows]

    if kind == "safety":
        ctx.safety = encode_pairs(tokenizer, texts("response"), params["max_length"])
        return
    chosen = encode_pairs(tokenizer, texts("chosen"), params["max_length"])
    rejected = encode_pairs(tokenizer, texts("rejected"), params["max_length"])
    if len(chosen) != len(rows) or len(rejected) != len(rows):
        raise NlsrError(f"{path}: some chosen/rejected answers are cut away by --max-length {params['max_length']}")
    ctx.preference = list(zip(chosen, rejected))


def _write(output, ref, reference: Path, base: dict, files: list[Path], params: dict, result) -> None:
    from nlsr_core.fileio import write_json
    from nlsr_core.lineage import input_record, recorded_path, write_lineage
    from nlsr_core.neurons import save_masks, save_stats
    from nlsr_core.outputs import replace
    from stages.options import tracked

    out = output.path
    inputs = [input_record(reference, "reference"), *(input_record(f, "data") for f in files)]
    if base["weak"]:
        inputs.append(input_record(Path(base["weak"]), "weak"))
    meta = {"method": params["method"], "preset": params["preset"], "sparsity": repr(params["sparsity"])}
    kept = result.summary.get("kept_fraction")
    with tracked("identify-neurons", out.name, params) as tr:  # keyed like the DVC stage (align method)
        for rec in inputs:
            tr.log_input(rec)
        with replace(output) as tmp:
            if result.masks:
                save_masks(result.masks, tmp / "masks.safetensors", meta)
            save_stats(result.stats, tmp / "stats.safetensors", {"method": params["method"]})
            write_json(tmp / "summary.json", result.summary)
            weak = recorded_path(base["weak"]) if base["weak"] else None
            extra = {**base["lineage"], "model": base["identity"], "weak": weak}
            write_lineage(tmp, "identify-neurons", inputs, params, seed=params["seed"], **extra)
        if kept is not None:
            tr.log_metric("kept_fraction", kept)
        tr.log_artifact(out)
    what = f"{len(result.masks)} masks, kept {kept:.3f}" if kept is not None else "statistics only (no --sparsity)"
    click.echo(f"identify-neurons: {out}: {what}")
