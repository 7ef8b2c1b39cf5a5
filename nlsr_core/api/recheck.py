"""Re-check an artifact's recorded inputs: the digest each input has now against the one its lineage.json recorded.

`nlsr audit --verify` (stages/audit.py) prints these marks along the lineage tree; `nlsr_core.api.verify` returns
them. Recorded relative paths are resolved against the current directory first, then against the artifact's
directory and its ancestors (an artifact moved together with its inputs still verifies).
"""
from __future__ import annotations

from pathlib import Path

from nlsr_core.io.lineage import LINEAGE_FILE, sha256_dir

OK = "✓"


def artifact_dir(path: Path) -> Path | None:
    """The directory whose lineage.json describes `path` (itself, or the directory holding a file)."""
    path = Path(path)
    if path.is_dir() and (path / LINEAGE_FILE).is_file():
        return path
    if path.is_file() and (path.parent / LINEAGE_FILE).is_file():
        return path.parent
    return None


def resolve(recorded: str, origin: Path) -> Path | None:
    """A recorded input path: as is / against cwd, then against origin and its ancestors; None if absent."""
    p = Path(recorded)
    if p.is_absolute():
        return p if p.exists() else None
    for base in (Path.cwd(), origin, *origin.resolve().parents):
        if (base / p).exists():
            return base / p
    return None


def input_mark(record: dict, found: Path | None) -> tuple[str, str]:
    """(mark, text) of one recorded input: ("✓", "✓"), ("changed", "changed (now <digest>)") or
    ("missing", "missing")."""
    if found is None:
        return "missing", "missing"
    now = sha256_dir(found)
    if now == record.get("sha256"):
        return OK, OK
    return "changed", f"changed (now {now[:12]})"
