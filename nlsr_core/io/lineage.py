"""Audit records: `lineage.json` beside every produced artifact (docs/DESIGN.md §3.3).

A record names the stage, the digests of its input artifacts, the params it used, the seed and the code
version. Records chain: each input that has its own lineage is referenced by path and digest, so
`nlsr audit` can walk from a realigned adapter back to the base model using these files alone.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nlsr_core import __version__
from nlsr_core.errors import NlsrError
from nlsr_core.io.fileio import write_json

LINEAGE_FILE = "lineage.json"


class LineageError(NlsrError):
    """A lineage.json that exists but cannot be read as a record: one line naming the file and the JSON error."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: Path, exclude: tuple[str, ...] = (LINEAGE_FILE,)) -> str:
    """Digest of a directory: relative path + file digest of every file, sorted; the lineage file excluded."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if f.name in exclude:
            continue
        h.update(f"{rel}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded_path(path: Path | str) -> str:
    """A path as lineage records it: as given when relative (stages run from the repository root); an absolute
    path below the working directory relative to it, so no record depends on where the repository is cloned.
    A path elsewhere (a customer's adapter) stays as given."""
    path = Path(path)
    if path.is_absolute():
        cwd = Path.cwd().resolve()
        real = path.resolve()
        if real == cwd or cwd in real.parents:
            return real.relative_to(cwd).as_posix()
    return str(path)


def input_record(path: Path, role: str) -> dict:
    """Reference to an input artifact: role, path (`recorded_path`), digest."""
    return {"role": role, "path": recorded_path(path), "sha256": sha256_dir(Path(path))}


def write_lineage(out_dir: Path, stage: str, inputs: list[dict], params: dict, **extra) -> dict:
    """Write `out_dir/lineage.json` and return the record. `extra` holds stage-specific fields."""
    record = {"stage": stage, "code_version": __version__, "inputs": inputs, "params": params, **extra}
    write_json(Path(out_dir) / LINEAGE_FILE, record)
    return record


# What a derived adapter copies from its parent's record, so it can be stacked on M' from its own lineage:
# the base identity, how to rebuild the base (ModelSpec), the W0 merged into M', and the alignment method.
INHERITED_FIELDS = ("model", "model_spec", "weak", "method")


def inherited_fields(record: dict) -> dict:
    """The INHERITED_FIELDS present in a parent's lineage record."""
    return {k: record[k] for k in INHERITED_FIELDS if k in record} if isinstance(record, dict) else {}


def base_fields(adapter_dir: Path) -> dict:
    """The inherited lineage fields of an adapter (empty when it has none), so an adapter derived from it can be
    stacked on M' from its own lineage, like every other adapter."""
    return inherited_fields(lineage_or_empty(adapter_dir))


def lineage_or_empty(path: Path) -> dict:
    """The lineage record of `path`, or {} when it has none: for inputs whose lineage is optional, e.g. a customer
    adapter given to `nlsr realign`. A lineage.json that exists but cannot be read is still an error
    (LineageError): an input whose history is damaged is not an input without history."""
    try:
        return read_lineage(path)
    except FileNotFoundError:
        return {}


def read_lineage(path: Path) -> dict:
    """Read the lineage record of an artifact directory (or a lineage.json path): the one reader every command
    uses. Missing: FileNotFoundError; not valid JSON or not a JSON object: one-line LineageError naming the file."""
    path = Path(path)
    f = path / LINEAGE_FILE if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no lineage record (expected a directory produced by an nlsr stage)")
    try:
        record = json.loads(f.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise LineageError(f"{f}: not UTF-8 text; expected the JSON lineage record of an nlsr artifact") from None
    except json.JSONDecodeError as exc:
        raise LineageError(f"{f}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected "
                           "the lineage record of an nlsr artifact") from None
    if not isinstance(record, dict):
        raise LineageError(f"{f}: a JSON {type(record).__name__}, not an object; expected the lineage record of an "
                           "nlsr artifact")
    return record
