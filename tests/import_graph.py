"""The import graph of nlsr's own code, read with `ast` (no module is imported), and what it implies:

- `closure(roots)`: every module of `nlsr_core` and `stages` that running `roots` can execute: imports at any depth
  (module level and inside functions) and the `__init__` of every package on the way;
- `stage_code(cmd)`: the files behind one `dvc.yaml` command `nlsr <command> ...` (its stage module, the CLI
  entry point, and their closure);
- `code_deps(files)`: the fewest `dvc.yaml` deps that cover exactly those files (a folder only when every module
  under it is in the set);
- `LAYERS`: the subpackages of `nlsr_core` from the bottom up (docs/DESIGN.md §2); a module imports its own layer
  and the layers below it.

`python -m tests.import_graph` rewrites the code deps of every stage in dvc.yaml from the graph (the data deps
stay as written) and prints the subpackage import table; tests/test_architecture.py checks both.
"""
from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("nlsr_core", "stages")

# bottom to top; the ground floor is the package's own top-level modules (errors, config, params, compute)
LAYERS = ("", "io", "data", "lora", "method", "repair", "train", "eval", "study", "report", "api")


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module and package of nlsr_core and stages (paths relative to the repo)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            parts = rel.with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = rel
    return found


def _with_packages(name: str) -> set[str]:
    """`a.b.c` and the packages whose `__init__` importing it runs: `a`, `a.b`."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules())


@lru_cache(maxsize=None)
def imports(name: str) -> frozenset[str]:
    """The nlsr modules `name` imports anywhere in its file (with the packages on the way)."""
    known = modules()
    tree = ast.parse((REPO / known[name]).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                if target not in known:
                    raise ValueError(f"{known[name]}: imports {target}, which is no module of this repo")
                found |= _with_packages(target)
    return frozenset(found - {name})


def closure(roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = [m for root in roots for m in _with_packages(root)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imports(name))
    return seen


def stage_command(cmd: str) -> str:
    """The `nlsr` command a dvc.yaml `cmd` runs (the first word after `nlsr`)."""
    match = re.match(r"\s*nlsr\s+([\w-]+)", cmd)
    if not match:
        raise ValueError(f"dvc.yaml cmd '{cmd[:40]}...': expected it to start with 'nlsr <command>'")
    return match.group(1)


def stage_code(cmd: str) -> set[Path]:
    """Files (relative to the repo) that `nlsr <command> ...` can execute: the entry point, the command module and
    everything they import."""
    sys.path.insert(0, str(REPO))
    try:
        from stages.cli import COMMANDS
    finally:
        sys.path.pop(0)
    module = COMMANDS[stage_command(cmd)][0]
    return {modules()[m] for m in closure(["stages.cli", module])}


def _all_files(folder: Path) -> set[Path]:
    return {p for p in modules().values() if folder in p.parents}


def code_deps(files: set[Path]) -> list[str]:
    """The fewest paths that cover exactly `files`: a folder when every module under it is in `files`, else the
    files one by one."""
    chosen: list[str] = []
    covered: set[Path] = set()
    folders = sorted({parent for f in files for parent in f.parents if parent != Path(".")},
                     key=lambda p: len(p.parts))
    for folder in folders:
        under = _all_files(folder)
        if under and under <= files and not any(Path(c) in folder.parents for c in chosen):
            chosen.append(folder.as_posix())
            covered |= under
    chosen += [f.as_posix() for f in sorted(files - covered)]
    return sorted(chosen)


def covered_files(deps: list[str]) -> set[Path]:
    """The nlsr modules a stage's deps cover (folders cover every module under them)."""
    out: set[Path] = set()
    for dep in deps:
        path = Path(dep)
        if path.parts and path.parts[0] in PACKAGES:
            out |= {path} if path.suffix == ".py" else _all_files(path)
    return out


def dvc_stages(text: str) -> dict[str, tuple[str, list[str]]]:
    """stage name -> (cmd, deps) from dvc.yaml's text, for plain, foreach and matrix stages."""
    import yaml

    out = {}
    for name, stage in yaml.safe_load(text)["stages"].items():
        body = stage.get("do", stage)
        out[name] = (" ".join(body["cmd"].split()), list(body.get("deps", [])))
    return out


def layer_of(name: str) -> str:
    """The layer of an nlsr_core module: its subpackage, or '' for the package's own top-level modules."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""


def upward_imports() -> list[str]:
    """'a -> b' for each nlsr_core module that imports a module of a higher layer."""
    bad = []
    for name in modules():
        if not name.startswith("nlsr_core"):
            continue
        for target in imports(name):
            if target.startswith("nlsr_core.") and LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(name)):
                bad.append(f"{name} -> {target}")
    return sorted(bad)


def layer_table() -> dict[str, list[str]]:
    """subpackage -> the other subpackages (and the ground floor, '') it imports."""
    table: dict[str, set[str]] = {layer: set() for layer in LAYERS}
    for name in modules():
        if name.startswith("nlsr_core"):
            for target in imports(name):
                if target.startswith("nlsr_core.") and layer_of(target) != layer_of(name):
                    table[layer_of(name)].add(layer_of(target))
    return {layer: sorted(targets, key=LAYERS.index) for layer, targets in table.items()}


def rewrite_dvc_yaml(text: str) -> str:
    """dvc.yaml with each stage's code deps replaced by `code_deps(stage_code(cmd))` (data deps kept, in place)."""
    stages = dvc_stages(text)
    lines = text.splitlines(keepends=True)
    out, stage, in_deps, indent = [], None, False, ""
    for line in lines:
        top = re.match(r"^  ([\w-]+):\s*$", line)
        if top:
            stage = top.group(1)
        deps_head = re.match(r"^(\s+)deps:\s*$", line)
        if deps_head:
            out.append(line)
            in_deps, indent = True, None
            continue
        if in_deps:
            item = re.match(r"^(\s+)- (\S+)\s*$", line)
            if item:
                indent = item.group(1)
                if item.group(2).split("/")[0] not in PACKAGES:
                    out.append(line)
                continue
            out += [f"{indent}- {dep}\n" for dep in code_deps(stage_code(stages[stage][0]))]
            in_deps = False
        out.append(line)
    return "".join(out)


if __name__ == "__main__":
    dvc_yaml = REPO / "dvc.yaml"
    dvc_yaml.write_text(rewrite_dvc_yaml(dvc_yaml.read_text(encoding="utf-8")), encoding="utf-8")
    for layer, targets in layer_table().items():
        print(f"{layer or '(ground)':8} -> {', '.join(t or '(ground)' for t in targets) or '-'}")
    for line in upward_imports():
        print("upward:", line)
