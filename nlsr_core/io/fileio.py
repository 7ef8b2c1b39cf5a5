"""Deterministic file IO: canonical JSON/JSONL, canonical safetensors and atomic single files.

JSON is written with sorted keys and no timestamps, safetensors with sorted metadata, so the same inputs give
byte-identical files (docs/DESIGN.md §3.4). Output directories are written through `nlsr_core.io.outputs`.
"""
from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


def dumps(obj) -> str:
    """Canonical JSON text: sorted keys, 2-space indent, UTF-8 kept, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, obj) -> None:
    Path(path).write_text(dumps(obj), encoding="utf-8")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a malformed line raises ValueError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    return rows


def write_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save torch tensors as safetensors with canonical bytes (see `canonical_header`)."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    head, start = canonical_header(data)
    with open(path, "wb") as fh:   # header, then the tensor bytes as a view: no copy of a GB-sized buffer
        fh.write(head)
        fh.write(memoryview(data)[start:])


def canonical_header(data: bytes) -> tuple[bytes, int]:
    """(the canonical 8-byte length + header, where the tensor bytes start in `data`): the header with its
    `__metadata__` keys sorted. The library keeps metadata in a hash map, so two saves of equal tensors gave
    {format, method} or {method, format} at random and DVC saw a changed output."""
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(bytes(data[8:8 + size]))
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)   # the data buffer stays 8-byte aligned, as the library writes it
    return struct.pack("<Q", len(text)) + text, 8 + size


def canonical_safetensors(data: bytes) -> bytes:
    """The same file with a canonical header (`canonical_header`), as bytes."""
    head, start = canonical_header(data)
    return head + data[start:]


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temp file path beside `final`; rename it into place on success. For files several processes may
    write at once with equal contents (the answer cache); a command's own output file goes through
    nlsr_core.io.outputs.claim_file instead. Temp siblings a killed earlier write left behind are removed only while
    this process holds the name's lock (nlsr_core.io.locks), never those of a live writer."""
    from nlsr_core.io import locks
    from nlsr_core.io.outputs import recover

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with locks.held_if_free(final, "write") as mine:
        if mine:
            recover(final)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are shared artifacts
        os.replace(tmp, final)
