"""The `nlsr` command group. Commands load lazily so `nlsr --help` imports no torch/transformers/mlflow.

Library output (transformers' loading bars, log warnings, Python warnings during model loads) is off unless
`nlsr -v COMMAND ...`; our own progress bars follow NLSR_PROGRESS (nlsr_core.io.progress).

Each command is named exactly like its DVC stage and lives in `stages/<name with underscores>.py` as a
Click command called `command`.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

# command name -> (module, one-line help shown by `nlsr --help` without importing the module)
COMMANDS = {
    "prepare-data": ("stages.prepare_data", "Build the data suite and write data/prepared/ with its manifest."),
    "align": ("stages.align", "Train the weak (SFT) and aligned (preference) LoRA adapters."),
    "amplify": ("stages.amplify", "Extrapolate the aligned adapter into the super-aligned reference (eq. 2)."),
    "finetune": ("stages.finetune", "Continue the aligned adapter on a poisoned task mix."),
    "nonaligned": ("stages.nonaligned", "Fine-tune the bare base model on a poisoned mix (the paper's Non-Aligned)."),
    "identify": ("stages.identify", "Find the safety-critical neurons of the reference adapter."),
    "realign": ("stages.realign", "Transplant safety neurons into a fine-tuned adapter (NLSR) or SafeLoRA."),
    "safelora": ("stages.safelora", "The SafeLoRA baseline: project drifted modules onto the safety subspace."),
    "judge": ("stages.judge", "Generate with each variant and score harmfulness, task accuracy, over-refusal."),
    "frontier": ("stages.frontier", "Score a grid of realign settings and SafeLoRA thresholds (HS-FA frontier)."),
    "calibrate": ("stages.calibrate", "Pick the realign setting on a calibration split for an HS target."),
    "ablate": ("stages.ablate", "Score one-change variants of the NLSR setting (preset, identification, ...)."),
    "analyze": ("stages.analyze", "The paper's layer and neuron analyses and amplification studies of one cell."),
    "finetune-seeds": ("stages.finetune_seeds", "Fine-tune the study cell with other seeds; score each repair."),
    "report": ("stages.report", "Aggregate judged cells into metrics, tables and plots."),
    "recipe-study": ("stages.recipe_study", "Train alignment recipes and tabulate where each puts the safety."),
    "paper-tables": ("stages.paper_tables", "Set the paper's tables and figures beside the paper-tables runs'."),
    "audit": ("stages.audit", "Print an artifact's lineage chain back to the base model."),
    "generate": ("stages.generate", "Answer prompts with any produced adapter."),
}


class LazyGroup(click.Group):
    """Lists COMMANDS from the table above; imports a command's module only when that command is resolved."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).command

    def format_commands(self, ctx, formatter):
        # The listing uses the table's short help, so `nlsr --help` imports no command module.
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


def _set_verbose(ctx, param, value):
    from nlsr_core.io import progress

    progress.set_verbose(value)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nlsr")
@click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
              help="Let the libraries' own output through (transformers' loading bars, log warnings, "
                   "Python warnings); for debugging. Our progress bars follow NLSR_PROGRESS either way.")
def group():
    """nlsr: Neuron-Level Safety Realignment of LoRA adapters (Yi et al., AAAI 2025)."""


def _split_verbose(argv: list[str]) -> tuple[bool, list[str]]:
    """The group's leading -v/--verbose flags (before the command name) and the arguments without them."""
    verbose, rest = False, list(argv)
    while rest and (rest[0] == "--verbose" or (rest[0][:2] == "-v" and set(rest[0][1:]) == {"v"})):
        verbose = True
        rest.pop(0)
    return verbose, rest


def main(argv=None):
    """Entry point: bad input (NlsrError) becomes one line on stderr and exit status 1."""
    from nlsr_core.io import locks, progress
    from nlsr_core.errors import NlsrError
    from stages.run_env import (check_pipeline_params, install_fault_hook, install_interrupts, preflight_tracking,
                                progress_enabled, set_locking)

    args = list(sys.argv[1:] if argv is None else argv)
    verbose, command_args = _split_verbose(args)
    progress.set_enabled(progress_enabled())
    progress.set_verbose(verbose)  # before Click too: anything the checks below load is quiet unless -v
    if not verbose:
        # Deprecation notices the libraries raise at their own call sites during training and answering (e.g.
        # transformers' `is_gradient_checkpointing`, from inside TRL): advice for their developers, not ours.
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        install_interrupts()
        set_locking()
        install_fault_hook()
        check_pipeline_params()
        preflight_tracking(command_args)
        group.main(args=args, prog_name="nlsr", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except (NlsrError, FileNotFoundError) as exc:
        if os.environ.get("NLSR_DEBUG"):
            raise
        click.echo(f"nlsr: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        sys.exit(1)
    finally:
        locks.release_all()   # a command that stopped between claim and replace frees its outputs' locks


if __name__ == "__main__":
    main()
