"""`nlsr audit PATH`: print an artifact's chain back to the base model from lineage files alone.

PATH is any produced artifact (adapter dir, masks dir or masks file, lineage.json). Each record's inputs are
listed with role, path and digest; inputs that have their own lineage.json (beside them, or in the directory
holding an input file, e.g. identify/<method>/ for masks.safetensors) are expanded recursively. Recorded relative
paths are resolved against the current directory first, then against PATH's directory and its ancestors.
By default nothing is hashed or loaded: the digests printed are the recorded ones. `--verify` re-hashes every
recorded input that still exists and marks each line ✓, changed or missing (exit status 1 when any input
changed or is missing); `--modules` adds the per-module record of a realign/safelora output (similarity, rank,
probability, draw, patched).
"""
from __future__ import annotations

from pathlib import Path

import click

from nlsr_core.api.recheck import OK, artifact_dir, input_mark, resolve

# Main line of descent, most specific first: realigned <- finetuned <- aligned <- weak <- base.
CHAIN_ROLES = ("finetuned", "aligned", "reference", "weak")
STANDARD_KEYS = {"stage", "code_version", "inputs", "params", "model", "model_spec", "weak", "modules", "seed"}
STAGE_LABELS = {"realign": "realigned", "safelora": "safelora", "identify": "masks", "amplify": "reference",
                "finetune": "finetuned", "align": "aligned"}


@click.command(name="audit")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="Re-hash every recorded input that still exists; exit 1 when any "
                                             "changed or is missing.")
@click.option("--modules", is_flag=True, help="Also list PATH's per-module records (realign / safelora).")
def command(path, verify, modules):
    """Print PATH's lineage chain (realigned <- finetuned <- aligned <- weak <- base)."""
    from nlsr_core.errors import NlsrError

    checks: list[str] = []
    for line in audit_lines(path, verify=checks if verify else None, modules=modules):
        click.echo(line)
    if verify:
        for line in leftover_lines(path):
            click.echo(line)
        bad = {mark: sum(c == mark for c in checks) for mark in ("changed", "missing")}
        click.echo(f"verify: {checks.count(OK)} of {len(checks)} recorded inputs unchanged, {bad['changed']} "
                   f"changed, {bad['missing']} missing")
        if bad["changed"] or bad["missing"]:
            raise NlsrError(f"audit --verify {path}: {bad['changed']} recorded input(s) changed and "
                            f"{bad['missing']} missing since the artifact was made (marked above)")


def leftover_lines(path: Path) -> list[str]:
    """What interrupted writes left beside the artifact: hidden temp/aside siblings no live writer holds (the
    next writing command in that directory removes them), and a run record listing the artifact as not rewritten
    (nlsr_core.io.batch_record)."""
    from nlsr_core.io.batch_record import pending_in
    from nlsr_core.io.outputs import stale_siblings

    top = artifact_dir(path)
    lines = [f"leftover: {p} (an interrupted write of {name}; the next writing command in {top.parent} removes it)"
             for name, paths in stale_siblings(top.parent).items() for p in paths]
    pending = pending_in(top)
    if pending is not None:
        lines.append(f"incomplete: {pending[0]}: the last nlsr {pending[1]} into {top.parent} stopped before "
                     f"rewriting {top.name}; it holds its earlier output")
    return lines


def _read(path: Path) -> dict:
    from nlsr_core.errors import NlsrError
    from nlsr_core.io.lineage import LINEAGE_FILE, read_lineage

    record = read_lineage(path)   # one-line LineageError for a damaged file
    if "stage" not in record:
        raise NlsrError(f"{path / LINEAGE_FILE}: not an nlsr lineage record (expected a 'stage' field)")
    return record




def audit_lines(path: Path, verify: list | None = None, modules: bool = False) -> list[str]:
    """The printed report: the artifact, its inputs as a tree (each artifact expanded once), base and chain.
    With `verify` (a list), every input line gets its re-hash mark, which is also appended to the list."""
    from nlsr_core.errors import NlsrError

    top = artifact_dir(path)
    if top is None:
        raise NlsrError(f"{path}: no lineage.json (expected an artifact produced by an nlsr stage)")
    record = _read(top)
    lines = [f"{record['stage']}: {path}", *_describe(record, "  ")]
    if modules:
        lines += _module_lines(record, "  ")
    lines += _inputs(record, top, "  ", {top.resolve()}, verify)
    labels, records = _chain(record, top)
    base = next((r["model"] for r in records if r.get("model")), None)
    lines.append(f"base model: {_model_text(base)}" if base else "base model: (not recorded)")
    lines.append("chain: " + " <- ".join(labels + [f"base {base.get('name')}" if base else "base ?"]))
    return lines


def _inputs(record: dict, origin: Path, indent: str, expanded: set, verify: list | None) -> list[str]:
    lines = []
    for rec in record.get("inputs") or []:
        role, recorded = rec.get("role", "?"), rec.get("path", "?")
        found = resolve(recorded, origin)
        head = f"{indent}<- {role}: {recorded}  sha256 {str(rec.get('sha256', ''))[:12]}"
        if verify is not None:
            head += "  " + _check(rec, found, verify)
        sub = artifact_dir(found) if found is not None else None
        if found is None:
            lines.append(head + ("" if verify is not None else "  (not found here)"))
        elif sub is not None and sub.resolve() in expanded:
            lines.append(head + "  (shown above)")
        else:
            lines.append(head)
            if sub is not None:
                expanded.add(sub.resolve())
                child = _read(sub)
                lines += _describe(child, indent + "     ")
                lines += _inputs(child, sub, indent + "     ", expanded, verify)
    return lines


def _check(rec: dict, found: Path | None, marks: list) -> str:
    """The verify mark of one recorded input (nlsr_core.api.recheck.input_mark), appended to `marks`."""
    mark, text = input_mark(rec, found)
    marks.append(mark)
    return text


def _module_lines(record: dict, indent: str) -> list[str]:
    """One line per module of a realign/safelora record: its similarity/cosine, rank, draw and patched flag."""
    from nlsr_core.lora.adapters import short_name

    rows = record.get("modules")
    if not isinstance(rows, list) or not rows:
        return [f"{indent}modules: (no per-module record in this artifact)"]
    lines = [f"{indent}modules ({len(rows)}):"]
    for row in rows:
        fields = " ".join(f"{k}={_short(v)}" for k, v in row.items() if k != "module")
        lines.append(f"{indent}  {short_name(str(row.get('module')))}  {fields}")
    return lines


def _chain(record: dict, origin: Path) -> tuple[list[str], list[dict]]:
    """Follow the main line (finetuned, then aligned, reference, weak) from `record` to the first adapter."""
    labels, records, seen = [_label(record, None)], [record], {origin.resolve()}
    while True:
        inputs = record.get("inputs") or []
        nxt = next((r for role in CHAIN_ROLES for r in inputs if r.get("role") == role), None)
        found = resolve(nxt["path"], origin) if nxt and nxt.get("path") else None
        sub = artifact_dir(found) if found is not None else None
        if sub is None or sub.resolve() in seen:
            return labels, records
        seen.add(sub.resolve())
        record, origin = _read(sub), sub
        labels.append(_label(record, nxt["role"]))
        records.append(record)


def _label(record: dict, role: str | None) -> str:
    return role or record.get("role") or STAGE_LABELS.get(record.get("stage"), record.get("stage", "?"))


def _describe(record: dict, indent: str) -> list[str]:
    """Stage, params and the stage-specific extras (patched count, poison rows...) of one record."""
    params = record.get("params") or {}
    lines = [f"{indent}stage {record.get('stage')}  " + " ".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))]
    extras = {k: v for k, v in record.items() if k not in STANDARD_KEYS}
    if extras:
        lines.append(f"{indent}" + " ".join(f"{k}={_short(v)}" for k, v in sorted(extras.items())))
    if record.get("weak"):
        lines.append(f"{indent}weak (W0 merged into M'): {record['weak']}")
    return lines


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if len(value) > 6:
            return f"[{len(value)} items: {', '.join(_short(v) for v in value[:3])}, ...]"
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def _model_text(model: dict) -> str:
    digest = str(model.get("digest", "?"))
    digest = digest if len(digest) <= 24 else digest[:16]
    return f"{model.get('name')} (source {model.get('source', '?')}, digest {digest})"
