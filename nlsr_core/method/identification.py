"""The identify stage's model pass: M' rebuilt from the reference adapter's lineage, the identification set X̂
(or the preference pairs) encoded, and the chosen identifier's statistics collected (docs/DESIGN.md §4).

`identify_model` is what `nlsr identify` and the ablate stage (identifiers other than the pipeline's) run.
"""
from __future__ import annotations

from pathlib import Path

from nlsr_core.errors import NlsrError


def identification_files(identifier, safety: Path, preference: Path) -> list[Path]:
    """The data file `identifier` reads (none for random), checked to exist."""

    needed = [Path({"safety": safety, "preference": preference}[identifier.data])] if identifier.data else []
    for f in needed:
        if not f.is_file():
            raise NlsrError(f"{f}: missing (expected the prepared {identifier.data} JSONL; run `nlsr prepare-data`)")
    return needed


def base_of(reference: Path, model: str | None, weak: Path | None, compute=None) -> dict:
    """{'spec', 'identity', 'weak', 'lineage'} for M' from --model/--weak, else the reference's lineage
    (`model_spec` when recorded, else `model`); the spec is placed on `compute` (None: model.device / model.dtype's
    defaults)."""
    from nlsr_core.io.lineage import lineage_or_empty
    from nlsr_core.lora.models import ModelSpec, model_identity, spec_from_record, spec_record

    record = lineage_or_empty(reference)
    weak = weak if weak is not None else record.get("weak")
    recorded = {k: record[k] for k in ("model", "model_spec", "method") if record.get(k) is not None}
    if model is not None:
        spec = ModelSpec(model) if compute is None else ModelSpec(model).placed(compute)
        return {"spec": spec, "identity": model_identity(spec), "weak": weak,
                "lineage": {"model_spec": spec_record(spec)}}
    spec = spec_from_record(record.get("model_spec"), record.get("model"))
    if spec is None:
        return {"spec": None, "identity": None, "weak": weak, "lineage": recorded}
    if compute is not None:
        spec = spec.placed(compute)
    return {"spec": spec, "identity": record.get("model") or model_identity(spec), "weak": weak,
            "lineage": recorded}


def identify_model(ref, base: dict, kind: str | None, files: list[Path], params: dict):
    from nlsr_core.method.neurons import identify
    from nlsr_core.method.neurons_stats import CollectContext

    ctx = CollectContext(reference=ref, batch_size=params["batch_size"], seed=params["seed"])
    if kind is not None:
        if base["spec"] is None:
            raise NlsrError(f"{ref.path}: no lineage.json with a 'model'; pass --model NAME (and --weak DIR if any)")
        from nlsr_core.lora.stack import load_stack

        weak = Path(base["weak"]) if base["weak"] else None
        if weak is not None and not weak.is_dir():
            raise NlsrError(f"--weak {weak}: not an adapter directory (W0 recorded in the reference's lineage)")
        stack = load_stack(base["spec"], weak=weak, adapter=ref.path)
        ctx.model, ctx.pad_id = stack.model, stack.tokenizer.pad_token_id
        encode_rows(ctx, stack.tokenizer, kind, files[0], params)
    return identify(params["identifier"], ctx, params["sparsity"], params["preset"])


def encode_rows(ctx, tokenizer, kind: str, path: Path, params: dict) -> None:
    from nlsr_core.data.templates import format_example
    from nlsr_core.io.fileio import read_jsonl
    from nlsr_core.method.neurons_stats import encode_pairs

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
    # A pair is kept only when both answers keep a token after truncation (a long prompt can fill max_length, as
    # the paper's PKU-SafeRLHF and AlpacaEval prompts do); the statistics record how many pairs were used.
    pairs = []
    for chosen, rejected in zip(texts("chosen"), texts("rejected")):
        c, r = (encode_pairs(tokenizer, [text], params["max_length"]) for text in (chosen, rejected))
        if c and r:
            pairs.append((c[0], r[0]))
    if not pairs:
        raise NlsrError(f"{path}: every pair's chosen or rejected answer is cut away by --max-length "
                        f"{params['max_length']} (expected pairs whose prompt leaves room for an answer)")
    ctx.preference = pairs


def collect_statistics(adapter, base: dict, method: str, ident: dict) -> dict:
    """Identifier `method`'s statistics from one pass of the stack `base` (base_of) + `adapter` (an Adapter read
    from its directory, `adapter.path`) over ident's data: {"data", "preference", "batch_size", "max_length",
    "template", "seed"}. What statistics_pass, the API's identify and Antidote's realignment norms share."""
    from nlsr_core.method.neurons import get_identifier

    identifier = get_identifier(method)
    needed = identification_files(identifier, ident["data"], ident.get("preference"))
    params = {"identifier": method, "sparsity": None, "preset": "paper", **{k: ident[k] for k in
              ("batch_size", "max_length", "template", "seed")}}
    return identify_model(adapter, base, identifier.data, needed, params).stats


def statistics_pass(reference_dir: Path, ident: dict, announce=print):
    """collect(reference, identifier) -> stats: the identify stage's statistics pass (M' from the pipeline reference's
    lineage) over an in-memory reference, e.g. one re-amplified with another β or preset (written to a temporary
    directory, since the stack loads the adapter from disk)."""
    def collect(reference, method: str) -> dict:
        import tempfile

        from nlsr_core.lora.adapters import load_adapter, save_adapter

        with tempfile.TemporaryDirectory(prefix="nlsr-reference-") as tmp:
            save_adapter(reference, tmp)
            announce(f"statistics pass for identifier {method}")
            return collect_statistics(load_adapter(tmp), base_of(reference_dir, None, None, ident.get("compute")),
                                      method, ident)
    return collect
