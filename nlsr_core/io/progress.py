"""Progress bars for the long loops (answers generated, rows scored, identification batches, study points), and a
quiet console while the libraries load a model.

One tqdm bar per loop on stderr, with rate and ETA. The CLI layer switches them off (`NLSR_PROGRESS=off`,
read in stages/cli.py: nlsr_core reads no environment) with `set_enabled(False)`, which also silences the
model-loading bars of transformers.

`quiet_library_output()` wraps a model load (`from_pretrained`): unless verbose (`nlsr -v`, `set_verbose(True)`)
it hides the libraries' own bars (transformers' GGUF de-quantisation and "Loading weights" bars), transformers'
log records below ERROR and the Future/User/DeprecationWarnings raised inside the block. Hub download bars are
left alone (they appear only when something is actually downloaded). Everything is restored on exit.
"""
from __future__ import annotations

import contextlib
import sys
import warnings

_ENABLED = True
_VERBOSE = False

# Python warning categories the libraries (transformers, peft, trl, torch) raise while a model loads.
_QUIET_WARNINGS = (FutureWarning, UserWarning, DeprecationWarning)
# transformers modules that draw a bar with tqdm directly (`from tqdm.auto import tqdm`), bypassing
# transformers.utils.logging.tqdm and therefore disable_progress_bar() / set_tqdm_hook().
_DIRECT_TQDM_MODULES = ("transformers.modeling_gguf_pytorch_utils",)


def set_enabled(enabled: bool) -> None:
    global _ENABLED
    _ENABLED = bool(enabled)
    if not enabled:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # transformers absent: nothing else draws bars
            pass


def enabled() -> bool:
    return _ENABLED


def set_verbose(verbose: bool) -> None:
    """Let the libraries' own bars, log records and warnings through during model loads (`nlsr -v`)."""
    global _VERBOSE
    _VERBOSE = bool(verbose)


def verbose() -> bool:
    return _VERBOSE


def bar(total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr (a disabled one when progress is off); use as a context manager, `.update(n)`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not _ENABLED, mininterval=1.0,
                dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def quiet_library_output(verbose: bool | None = None):
    """Silence the libraries while the block runs (a `from_pretrained` call); `verbose` defaults to the
    module setting (`set_verbose`). Verbose lets everything through, except that bars stay off when progress
    is off (`set_enabled(False)`)."""
    loud = _VERBOSE if verbose is None else bool(verbose)
    with contextlib.ExitStack() as stack:
        if not loud or not _ENABLED:
            stack.enter_context(_library_bars_off())
        if not loud:
            stack.enter_context(_library_logs_off())
            stack.enter_context(warnings.catch_warnings())
            for category in _QUIET_WARNINGS:
                warnings.simplefilter("ignore", category)
        yield


@contextlib.contextmanager
def _library_bars_off():
    """transformers' bars off: those drawn through its logging tqdm (hook, where this version has one, else
    the global switch) and those of the modules that call tqdm directly (patched for the block)."""
    import importlib

    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    patched = []
    for name in _DIRECT_TQDM_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # moved or gone in another transformers version
            continue
        original = getattr(module, "tqdm", None)
        if callable(original):
            module.tqdm = _disabled_tqdm(original)
            patched.append((module, original))
    hook_set = hasattr(hf_logging, "set_tqdm_hook")
    was_active = hf_logging.is_progress_bar_enabled()
    if hook_set:
        previous_hook = hf_logging.set_tqdm_hook(_disabled_hook)
    elif was_active:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hook_set:
            hf_logging.set_tqdm_hook(previous_hook)
        elif was_active:
            hf_logging.enable_progress_bar()
        for module, original in reversed(patched):
            module.tqdm = original


def _disabled_tqdm(factory):
    def make(*args, **kwargs):
        kwargs["disable"] = True
        return factory(*args, **kwargs)

    return make


def _disabled_hook(factory, args, kwargs):
    return factory(*args, **{**kwargs, "disable": True})


@contextlib.contextmanager
def _library_logs_off():
    """transformers' logger at ERROR for the block (warnings and infos off), then back to its level."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
