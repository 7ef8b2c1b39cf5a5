"""Outputs: what a command may replace, and how it replaces it (docs/DESIGN.md §3.4).

A command writes its output (a directory, or one file: `claim_file`) whole or not at all, and never deletes what it
did not write itself. `claim` checks the rules before any compute, so a bad `--out` costs one line and writes
nothing:

  * the output is not an input of the call, does not contain one (an ancestor directory) and does not lie inside
    an input directory; it is not the working directory or one of its ancestors;
  * when it exists it is an empty directory or one this command wrote earlier: `lineage.json` naming the
    command's stage, or the command's own recogniser (prepare-data: every file listed in its manifest).

`replace` writes the new output into a hidden temp sibling `.NAME.tmp-*`, renames the old output aside
(`.NAME.old-*`), renames the new one in and only then deletes the old one, so a kill at any instant leaves the
old or the new output complete. `claim` also finishes what a killed run left behind: temp siblings are removed;
an aside sibling is restored when the output itself is missing (the kill fell between the two renames), else
removed. Every file of an output gets mode 0644 and every directory 0755 (mkdtemp makes 0700, safetensors 0600).

One writer at a time: `claim` takes the output's lock (nlsr_core.io.locks) before anything else and `replace` frees it,
so a second writer of the same path is refused in one line naming the first one's pid. Hidden siblings belong to
the lock's holder: `claim` cleans the leftovers of every output in the directory whose lock is free (`sweep`), and
never touches those of a live writer. The clean-up after a failure and the two renames run with SIGINT and SIGTERM
deferred, so an interrupt (the CLI turns SIGTERM into an exception) cannot leave them half done.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from nlsr_core.io import locks
from nlsr_core.errors import NlsrError
from nlsr_core.io.lineage import LINEAGE_FILE

# None when `path` was written by the command, else the reason it was not (shown in the error).
Recogniser = Callable[[Path], "str | None"]
Inputs = Iterable["tuple[str, Path | str | None]"]   # (option, path) of every input of the call

# Test hook (tests/test_faults.py): called with a point name at each step below; the CLI installs it from the
# environment (stages/options.py), so nlsr_core itself reads no environment variable.
FAULT_HOOK: Callable[[str, Path], None] | None = None
FAULT_POINTS = ("claimed", "writing", "filled", "aside", "replaced", "cleaning")

# A hidden sibling a write leaves while it runs: `.NAME.tmp-XXXX` (the new output) or `.NAME.old-XXXX` (the old one).
SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[A-Za-z0-9_]+$")


class OutputError(NlsrError):
    """An output path this command may not write or replace; the message names the option and what is expected."""


@dataclass(frozen=True)
class Output:
    """An output checked by `claim` (a directory; `replace` writes it) or `claim_file` (`replace_file`), with its
    lock (None until `replace` when its directory did not exist yet)."""

    path: Path
    command: str
    option: str
    recognise: Recogniser
    lock: "locks.OutputLock | None" = field(default=None, compare=False)
    is_file: bool = False

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # `with claim(...) as output:` frees the lock when the block fails before `replace` (a library caller; the
    # CLI frees every lock a failed command holds, nlsr_core.io.locks.release_all).
    def __enter__(self) -> "Output":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def written_by(*stages: str, within: tuple[str, ...] = ()) -> Recogniser:
    """Recognise an output by its lineage.json stage; with `within`, the output holds only those subdirectories,
    each with such a lineage (align's weak/ and aligned/)."""
    def check(path: Path) -> str | None:
        if not within:
            return _stage_reason(path, stages)
        extra = sorted(p.name for p in path.iterdir() if p.name not in within)
        if extra:
            return f"it holds {extra[0]}, which this command does not write"
        reasons = [_stage_reason(path / sub, stages) for sub in within if (path / sub).exists()]
        return next((r for r in reasons if r), None) if reasons else f"it has none of {', '.join(within)}"
    return check


def _stage_reason(path: Path, stages: tuple[str, ...]) -> str | None:
    try:
        record = json.loads((path / LINEAGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"it has no readable {LINEAGE_FILE} of stage {stages[0]}"
    stage = record.get("stage") if isinstance(record, dict) else None
    return None if stage in stages else f"its {LINEAGE_FILE} names stage '{stage}', not {stages[0]}"


def only_files(names: Iterable[str]) -> Recogniser:
    """Recognise an output without lineage by its file names (report's plots directory)."""
    allowed = set(names)

    def check(path: Path) -> str | None:
        other = sorted(p.name for p in path.iterdir() if p.name not in allowed or not p.is_file())
        return f"it holds {other[0]}, which this command does not write" if other else None
    return check


def titled(title: str) -> Recogniser:
    """Recognise a Markdown file by the title line its writer puts first (report's tables)."""
    def check(path: Path) -> str | None:
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline().rstrip("\n")
        except (OSError, UnicodeDecodeError):
            return "it is not a text file"
        return None if first == title else f"its first line is not '{title}'"
    return check


def json_of_mappings(path: Path) -> str | None:
    """Recognise a JSON file holding an object of objects (report's metrics.json: cell -> variant -> rate)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "it is not a JSON file"
    ok = isinstance(doc, dict) and all(isinstance(v, dict) for v in doc.values())
    return None if ok else "it is not a JSON object of cells"


def claim(path: Path | str, command: str, *, option: str = "--out", inputs: Inputs = (),
          recognise: Recogniser | None = None) -> Output:
    """Check that `command` may write `path` (rules in the module docstring), finish a killed run's leftovers
    (`recover`, only once the path itself is allowed) and return the Output to pass to `replace`. A refusal is
    one OutputError line, raised before the command computes or writes anything."""
    output = Output(Path(path), command, option, recognise or written_by(command))
    _check_place(output, inputs)
    return _lock_and_check(output)


def _lock_and_check(output: Output) -> Output:
    """Take the output's lock (refused in one line while another writer holds it), then clean the directory's
    stale siblings and check the existing output; the lock is freed again when a check refuses."""
    output = Output(output.path, output.command, output.option, output.recognise,
                    locks.acquire(output.path, output.command, output.option), output.is_file)
    try:
        sweep(output.path.parent, own=output.path)
        _check_existing(output)
    except BaseException:
        output.release()
        raise
    _fault("claimed", output.path)
    return output


def claim_container(path: Path | str, *, option: str = "--out", inputs: Inputs = ()) -> Path:
    """A parent directory that receives one output per input (`realign --finetuned A B --out DIR`): it is never
    replaced, only created, so it may hold other things; it must not be a file or lie inside an input directory.
    Each child is then claimed on its own."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file; expected a directory to hold one output per adapter")
    _refuse_input_clash(path, option, inputs, ("inside",))
    return path


def claim_file(path: Path | str, command: str, option: str, *, inputs: Inputs = (),
               recognise: Recogniser | None = None) -> Output:
    """A single-file output (report's tables, generate's JSONL), under the rules of `claim`: not a directory, not
    an input, not inside an input directory; when it exists, an empty file or one `recognise` says this command
    wrote (its contents). `replace_file(output)` writes it."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; expected a file path")
    _refuse_input_clash(path, option, inputs, ("is", "inside"), expected="expected a path outside every input")
    return _lock_and_check(Output(path, command, option, recognise or (lambda p: "no recogniser"), is_file=True))


def _given(inputs: Inputs) -> list[tuple[str, Path]]:
    return [(opt, Path(p)) for opt, p in inputs if p is not None and str(p) != ""]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    """inner == outer or inner lies below outer (both resolved)."""
    return inner == outer or outer in inner.parents


def _check_place(output: Output, inputs: Inputs) -> None:
    """The path relations: not the working directory (or above it), not an input, above one or inside one."""
    path, option = output.path, output.option
    real, cwd = _real(path), _real(Path.cwd())
    if _within(cwd, real):
        what = "the working directory" if real == cwd else "an ancestor of the working directory"
        raise OutputError(f"{option} {path}: is {what}; expected a new or empty directory below it for the output")
    _refuse_input_clash(path, option, inputs, ("is", "contains", "inside"))


# relation of an output to an input -> (its words in the error, the error's usual ending)
_CLASHES = {"is": ("is", "expected a different output directory"),
            "contains": ("contains", "expected a directory that holds no input of this call"),
            "inside": ("lies inside", "expected a directory outside every input")}


def _refuse_input_clash(path: Path, option: str, inputs: Inputs, relations: tuple[str, ...],
                        expected: str | None = None) -> None:
    """One OutputError naming the first input that `path` is (`is`), holds (`contains`) or lies inside (`inside`,
    input directories only), among the `relations` the caller forbids; `expected` replaces the usual ending."""
    real = _real(path)
    for opt, given in _given(inputs):
        other = _real(given)
        holds = {"is": other == real, "contains": _within(other, real),
                 "inside": given.is_dir() and _within(real, other)}
        found = next((r for r in relations if holds[r]), None)   # in the caller's order: "is" before the others
        if found is not None:
            words, ending = _CLASHES[found]
            raise OutputError(f"{option} {path}: {words} the input {opt} {given}; {expected or ending}")


def _check_existing(output: Output) -> None:
    """An existing output must be an empty directory or one this command wrote."""
    path, option = output.path, output.option
    if path.is_symlink():
        raise OutputError(f"{option} {path}: is a symbolic link; expected a plain "
                          f"{'file' if output.is_file else 'directory'}")
    if not path.exists():
        return
    if output.is_file:
        reason = output.recognise(path) if path.stat().st_size else None
        if reason is not None:
            raise OutputError(f"{option} {path}: an existing file that nlsr {output.command} did not write "
                              f"({reason}); expected a new path or an earlier output of this command")
        return
    if not path.is_dir():
        raise OutputError(f"{option} {path}: is a file; expected a directory for the output of nlsr {output.command}")
    if not any(path.iterdir()):
        return
    reason = output.recognise(path)
    if reason is not None:
        raise OutputError(f"{option} {path}: a non-empty directory that nlsr {output.command} did not write "
                          f"({reason}); expected a new or empty directory or an earlier output of this command")


def recover(final: Path) -> None:
    """Finish a killed run of `final`: drop its temp siblings; restore its aside sibling if `final` is missing
    (killed between the two renames of `replace`), else drop it. Only the holder of `final`'s lock calls it."""
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return
    name = glob.escape(final.name)
    with deferred_signals():
        for stale in sorted(parent.glob(f".{name}.tmp-*")):
            _remove(stale)
        asides = sorted(parent.glob(f".{name}.old-*"))
        if asides and not os.path.lexists(final):
            with contextlib.suppress(FileNotFoundError):
                os.rename(asides.pop(0), final)
        for stale in asides:
            _remove(stale)


def stale_siblings(directory: Path) -> dict[str, list[Path]]:
    """{output name: its hidden temp/aside siblings} in `directory`, for the outputs no live writer holds."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    found: dict[str, list[Path]] = {}
    for p in sorted(directory.iterdir()):
        m = SIBLING.match(p.name)
        if m:
            found.setdefault(m["name"], []).append(p)
    return {name: paths for name, paths in found.items() if locks.is_free(directory / name)}


def sweep(directory: Path, own: Path | None = None) -> None:
    """Recover every output of `directory` that an interrupted run left siblings of: `own` (whose lock the caller
    holds) and each other one whose lock is free, taken for the time of its recovery. A live writer's are kept."""
    directory = Path(directory)
    if own is not None:
        recover(own)
    if not directory.is_dir():
        return
    names = {m["name"] for m in map(SIBLING.match, os.listdir(directory)) if m}
    names |= {n[1:-len(".lock")] for n in os.listdir(directory) if n.startswith(".") and n.endswith(".lock")}
    for name in sorted(names - {own.name if own is not None else None}):   # a free lock file goes too
        with locks.held_if_free(directory / name, "sweep") as mine:
            if mine:
                recover(directory / name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def replace(output: Output) -> Iterator[Path]:
    """Yield an empty temp directory beside the output; when the block succeeds, swap it in (old aside, new in,
    old deleted); when it fails, remove it and leave the old output untouched."""
    final = output.path
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        output = locked(output)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            _fault("writing", final)
            yield tmp
            normalise_modes(tmp)
            _fault("filled", final)
            _check_existing(output)   # still ours: the output may have changed during a long compute
        except BaseException:
            with deferred_signals():
                _fault("cleaning", final)
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        with deferred_signals():
            _swap(tmp, final)
    finally:
        output.release()


@contextlib.contextmanager
def replace_file(output: Output) -> Iterator[Path]:
    """`replace` for an output claimed with `claim_file`: yield a temp file beside it, rename it in (mode 0644)
    when the block succeeds, remove it when it fails; the lock is freed either way."""
    final = output.path
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        output = locked(output)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are shared artifacts
            _check_existing(output)
        except BaseException:
            with deferred_signals():
                _fault("cleaning", final)
                tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, final)
    finally:
        output.release()


def locked(output: Output) -> Output:
    """The output with its lock: claimed before its directory existed, it is taken now (after mkdir)."""
    if output.lock is not None or not locks.ENABLED:
        return output
    return Output(output.path, output.command, output.option, output.recognise,
                  locks.acquire(output.path, output.command, output.option), output.is_file)


def _swap(tmp: Path, final: Path) -> None:
    aside = None
    if os.path.lexists(final):
        aside = final.parent / f".{final.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        os.rename(final, aside)
        _fault("aside", final)
    os.rename(tmp, final)
    if aside is not None:
        _fault("replaced", final)
        shutil.rmtree(aside)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (a clean-up or the two renames run to the end; a second ^C
    during them takes effect after). SIGKILL cannot be held: `recover` finishes what it interrupts.

    The handlers are swapped, not the signal mask: a signal sent to the process group reaches whichever thread
    does not block it (torch and tokenizers start threads), but Python runs every handler in the main thread."""
    if threading.current_thread() is not threading.main_thread():   # signal.signal works there only
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)   # None: set outside Python
        if received:
            signal.raise_signal(received[0])   # now, to the handler that was in place before the block


def normalise_modes(root: Path) -> None:
    """0755 for directories, 0644 for files, whatever the umask or the writer (same bytes, same modes)."""
    root = Path(root)
    root.chmod(0o755)
    for base, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(base, d), 0o755)
        for f in files:
            os.chmod(os.path.join(base, f), 0o644)


def _fault(point: str, path: Path) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(point, path)
