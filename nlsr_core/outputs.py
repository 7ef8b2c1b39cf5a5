"""Output directories: what a command may replace, and how it replaces it (docs/DESIGN.md §3.4).

A command writes its output directory whole or not at all, and never deletes what it did not write itself.
`claim` checks the rules before any compute, so a bad `--out` costs one line and writes nothing:

  * the output is not an input of the call, does not contain one (an ancestor directory) and does not lie inside
    an input directory; it is not the working directory or one of its ancestors;
  * when it exists it is an empty directory or one this command wrote earlier: `lineage.json` naming the
    command's stage, or the command's own recogniser (prepare-data: every file listed in its manifest).

`replace` writes the new output into a hidden temp sibling `.NAME.tmp-*`, renames the old output aside
(`.NAME.old-*`), renames the new one in and only then deletes the old one, so a kill at any instant leaves the
old or the new output complete. `claim` also finishes what a killed run left behind: temp siblings are removed;
an aside sibling is restored when the output itself is missing (the kill fell between the two renames), else
removed. Every file of an output gets mode 0644 and every directory 0755 (mkdtemp makes 0700, safetensors 0600).
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from nlsr_core.errors import NlsrError
from nlsr_core.lineage import LINEAGE_FILE

# None when `path` was written by the command, else the reason it was not (shown in the error).
Recogniser = Callable[[Path], "str | None"]
Inputs = Iterable["tuple[str, Path | str | None]"]   # (option, path) of every input of the call

# Test hook (tests/test_faults.py): called with a point name at each step below; the CLI installs it from the
# environment (stages/options.py), so nlsr_core itself reads no environment variable.
FAULT_HOOK: Callable[[str, Path], None] | None = None
FAULT_POINTS = ("claimed", "writing", "filled", "aside", "replaced")


class OutputError(NlsrError):
    """An output path this command may not write or replace; the message names the option and what is expected."""


@dataclass(frozen=True)
class Output:
    """An output directory checked by `claim`; `replace(output)` writes it."""

    path: Path
    command: str
    option: str
    recognise: Recogniser


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


def claim(path: Path | str, command: str, *, option: str = "--out", inputs: Inputs = (),
          recognise: Recogniser | None = None) -> Output:
    """Check that `command` may write `path` (rules in the module docstring), finish a killed run's leftovers
    (`recover`, only once the path itself is allowed) and return the Output to pass to `replace`. A refusal is
    one OutputError line, raised before the command computes or writes anything."""
    output = Output(Path(path), command, option, recognise or written_by(command))
    _check_place(output, inputs)
    recover(output.path)
    _check_existing(output)
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


def check_file_output(path: Path | str, option: str, inputs: Inputs = ()) -> Path:
    """A single-file output (written with fileio.atomic_file): not a directory, not an input, not inside an
    input directory."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; expected a file path")
    _refuse_input_clash(path, option, inputs, ("is", "inside"), expected="expected a path outside every input")
    return path


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
        raise OutputError(f"{option} {path}: is a symbolic link; expected a plain directory")
    if not path.exists():
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
    (killed between the two renames of `replace`), else drop it. Races with another rank are harmless."""
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return
    name = glob.escape(final.name)
    for stale in sorted(parent.glob(f".{name}.tmp-*")):
        _remove(stale)
    asides = sorted(parent.glob(f".{name}.old-*"))
    if asides and not os.path.lexists(final):
        with contextlib.suppress(FileNotFoundError):
            os.rename(asides.pop(0), final)
    for stale in asides:
        _remove(stale)


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
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        _fault("writing", final)
        yield tmp
        normalise_modes(tmp)
        _fault("filled", final)
        _check_existing(output)   # still ours: the output may have changed during a long compute
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap(tmp, final)


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
