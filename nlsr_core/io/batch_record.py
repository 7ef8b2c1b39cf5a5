"""The record of a run that writes several outputs into one container (`realign --finetuned A B --out DIR`,
docs/DESIGN.md §3.4).

Each child is replaced whole on its own, so a run stopped part way leaves some children new and some old. While
such a run writes, `DIR/nlsr-progress.json` lists which children are complete and which still hold their earlier
output (or none); it is removed when every child is written, or when none was, so it remains only where the
container is mixed. The file is claimed like any output (nlsr_core.io.outputs.claim_file): a second run into the same
container is refused while the first holds it, and a file of that name the command did not write is never replaced.
`nlsr audit --verify` reads it (`pending_in`).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

BATCH_RECORD = "nlsr-progress.json"
NOTE = ("written while a run wrote these outputs; it remains only when the run stopped part way: 'complete' "
        "outputs were rewritten, 'pending' ones hold their earlier output or none")


def _recognise(commands: tuple[str, ...]):
    def check(path: Path) -> str | None:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return "it is not a JSON run record"
        ok = isinstance(doc, dict) and doc.get("command") in commands and doc.get("note") == NOTE
        return None if ok else "it is not the run record of this command"
    return check


class BatchRecord:
    """The run record of one container: `begin()` before the first child is written, `done(name)` after each."""

    def __init__(self, output, command: str, names: list[str]):
        self.output, self.command, self.names, self.complete = output, command, list(names), []
        self.started = False

    def begin(self) -> None:
        from nlsr_core.io.outputs import locked

        if not self.started:
            self.output.path.parent.mkdir(parents=True, exist_ok=True)
            self.output = locked(self.output)   # claimed before the container existed: locked now
            self.started = True
            self._write()

    def done(self, name: str) -> None:
        self.complete.append(name)
        self._write()

    def _write(self) -> None:
        from nlsr_core.io.fileio import atomic_file, write_json

        with atomic_file(self.output.path) as tmp:
            write_json(tmp, {"command": self.command, "note": NOTE, "complete": self.complete,
                             "pending": [n for n in self.names if n not in self.complete]})

    def close(self) -> None:
        """Remove the record unless the container is mixed (some but not all children complete); free the lock."""
        try:
            if self.started and not 0 < len(self.complete) < len(self.names):
                self.output.path.unlink(missing_ok=True)
        finally:
            self.output.release()


@contextlib.contextmanager
def batch_record(container: Path, command: str, names: list[str],
                 commands: tuple[str, ...] | None = None) -> Iterator[BatchRecord]:
    """Claim the container's record (nothing is written until `begin()`) and yield it; `commands`: the commands
    whose earlier record may be replaced (default: `command`)."""
    from nlsr_core.io.outputs import claim_file

    output = claim_file(Path(container) / BATCH_RECORD, command, "--out",
                        recognise=_recognise(commands or (command,)))
    record = BatchRecord(output, command, names)
    try:
        yield record
    finally:
        record.close()


def pending_in(artifact: Path) -> tuple[Path, str] | None:
    """(the record, its command) when `artifact`'s container holds a run record listing it as pending."""
    artifact = Path(artifact)
    record = artifact.parent / BATCH_RECORD
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(doc, dict) and artifact.name in (doc.get("pending") or []):
        return record, str(doc.get("command"))
    return None
