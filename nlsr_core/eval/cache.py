"""Caches that let a new judge re-score old answers without regenerating them.

Layout under one cache directory (e.g. `judge/.cache/`):

    judge/<key>.jsonl                 answers of one (stack, prompt list, decoding settings); key = sha256
    verdicts/<judge>-<id16>/judge.json      the judge identity (model id, threshold, keyword-list digest ...)
    verdicts/<judge>-<id16>/<d16>.jsonl     {"item": sha256(prompt, response), "flagged": bool} rows

Verdict files are only ever *added* (one per scoring call, named by its content digest and renamed into place
atomically), never rewritten, so concurrent cells can share a cache without locking; a reader takes the union.
A verdict is keyed by (item digest, judge identity): the same answer judged by the same judge is never judged
twice, whichever variant or cell produced it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence

from nlsr_core.io.fileio import atomic_file, write_json
from nlsr_core.io.lineage import sha256_text

Judge = Callable[[list[str], list[str]], list[bool]]
# Bump when the decoder's output can change for the same inputs (EOS handling, decoding, prompt encoding, the
# numerics of a pass). 2: bf16 answering on LoRA stacks computes the adapter in bf16 and gives the output
# projection a contiguous input, which changes some greedy answers; answers cached before must not be served.
DECODER_VERSION = 2


def item_digest(prompt: str, response: str) -> str:
    """sha256 of the (prompt, response) pair (JSON-encoded, so no separator ambiguity)."""
    return sha256_text(json.dumps([prompt, response], ensure_ascii=False))


class VerdictCache:
    """Append-only store of judge verdicts keyed by (item digest, judge identity)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, identity: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity.split(":", 1)[0])[:40]
        return self.root / "verdicts" / f"{slug}-{sha256_text(identity)[:16]}"

    def load(self, identity: str) -> dict[str, bool]:
        """All cached verdicts of one judge: item digest -> flagged."""
        folder = self._dir(identity)
        known: dict[str, bool] = {}
        if folder.is_dir():
            for f in sorted(folder.glob("*.jsonl")):
                for line in f.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        row = json.loads(line)
                        known[row["item"]] = bool(row["flagged"])
        return known

    def add(self, identity: str, verdicts: dict[str, bool]) -> None:
        if not verdicts:
            return
        folder = self._dir(identity)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "judge.json").is_file():
            with atomic_file(folder / "judge.json") as tmp:
                write_json(tmp, {"identity": identity})
        text = "".join(json.dumps({"flagged": v, "item": k}, sort_keys=True) + "\n"
                       for k, v in sorted(verdicts.items()))
        with atomic_file(folder / f"{sha256_text(text)[:16]}.jsonl") as tmp:
            tmp.write_text(text, encoding="utf-8")


def judge_with_cache(judge: Judge, identity: str, prompts: Sequence[str], responses: Sequence[str],
                     cache: VerdictCache | None) -> tuple[list[bool], int]:
    """Verdicts for every pair, calling `judge` only on pairs not in the cache (each distinct pair once).

    Returns (flags in input order, number of pairs the judge was called on).
    """
    digests = [item_digest(p, r) for p, r in zip(prompts, responses)]
    known = cache.load(identity) if cache else {}
    todo: dict[str, tuple[str, str]] = {}
    for d, p, r in zip(digests, prompts, responses):
        if d not in known and d not in todo:
            todo[d] = (p, r)
    if todo:
        pairs = list(todo.values())
        flags = judge([p for p, _ in pairs], [r for _, r in pairs])
        if len(flags) != len(pairs):
            raise RuntimeError(f"judge {identity} returned {len(flags)} verdicts for {len(pairs)} items")
        fresh = {d: bool(f) for d, f in zip(todo, flags)}
        if cache:
            cache.add(identity, fresh)
        known = {**known, **fresh}
    return [known[d] for d in digests], len(todo)


class GenerationCache:
    """Answers of one generation job, keyed by everything that determines them (see `generation_key`)."""

    def __init__(self, root: Path):
        self.root = Path(root) / "generations"

    def get(self, key: str) -> list[str] | None:
        f = self.root / f"{key}.jsonl"
        if not f.is_file():
            return None
        return [json.loads(line)["response"] for line in f.read_text(encoding="utf-8").splitlines() if line]

    def put(self, key: str, responses: Sequence[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.root / f"{key}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps({"response": r}, ensure_ascii=False) + "\n" for r in responses),
                           encoding="utf-8")


def generation_key(stack: dict, prompts: Sequence[str], settings: dict) -> str:
    """sha256 over the stack identity (model identity, W0 and adapter digests), the prompts and decoding
    settings. `settings` must not hold the batch size: greedy answers do not depend on it."""
    payload = {"stack": stack, "prompts": list(prompts), "settings": settings, "decoder": DECODER_VERSION}
    return sha256_text(json.dumps(payload, sort_keys=True, ensure_ascii=False))
