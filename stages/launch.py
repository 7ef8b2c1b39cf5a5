"""Launch prefix for the training stages (params.yaml `launch.prefix`).

`nlsr align ... --launch-prefix "torchrun --standalone --nproc_per_node 2 -m stages.cli"` re-executes the same
command under that prefix, with the same options, and returns its exit status; NLSR_LAUNCHED=1 in the child's
environment stops the recursion. The default prefix (`python -m stages.cli`) runs in-process: re-executing the
same interpreter would only cost start-up time. Standard library only (the CLI stays light).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click

from nlsr_core.errors import NlsrError

LAUNCHED_ENV = "NLSR_LAUNCHED"
IN_PROCESS = {"", "python -m stages.cli", "python3 -m stages.cli", "nlsr"}


def launch_option(f):
    from stages.options import config_option

    return config_option("launch.prefix", "--launch-prefix", dest="launch_prefix")(f)


def relaunch(ctx: click.Context, prefix: str) -> int | None:
    """Run this command under `prefix` and return its exit status, or None to go on in this process."""
    if " ".join(prefix.split()) in IN_PROCESS or os.environ.get(LAUNCHED_ENV):
        return None
    argv = _resolve(shlex.split(prefix)) + [ctx.info_name] + _options_argv(ctx)
    click.echo(f"nlsr: launching {shlex.join(argv)}", err=True)
    try:
        return subprocess.run(argv, env={**os.environ, LAUNCHED_ENV: "1"}, check=False).returncode
    except OSError as exc:
        raise NlsrError(f"launch.prefix '{prefix}': cannot start it ({exc.strerror or exc})") from None


def is_main_process() -> bool:
    """Rank 0 of a torchrun/accelerate launch (RANK is set by the launcher), or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def _resolve(parts: list[str]) -> list[str]:
    """`python` means this interpreter; other launchers are taken from this interpreter's bin dir when present."""
    if parts and parts[0] in {"python", "python3"}:
        return [sys.executable, *parts[1:]]
    if parts:
        local = Path(sys.executable).parent / parts[0]
        if local.is_file():
            return [str(local), *parts[1:]]
    return parts


def _options_argv(ctx: click.Context) -> list[str]:
    """The command's options as command-line words, from the parsed values (so defaults travel explicitly)."""
    argv: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or param.name == "launch_prefix" or value is None:
            continue
        if param.is_flag and param.secondary_opts:
            argv.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            if value:
                argv.append(param.opts[0])
        elif param.multiple:
            for item in value:
                argv += [param.opts[0], str(item)]
        else:
            argv += [param.opts[0], str(value)]
    return argv
