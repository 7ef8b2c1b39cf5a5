"""Progress bars for the long loops (answers generated, rows scored, identification batches, study points).

One tqdm bar per loop on stderr, with rate and ETA. The CLI layer switches them off (`NLSR_PROGRESS=off`,
read in stages/cli.py: nlsr_core reads no environment) with `set_enabled(False)`, which also silences the
model-loading bars of transformers.
"""
from __future__ import annotations

import sys

_ENABLED = True


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


def bar(total: int | None = None, desc: str = "", unit: str = "it"):
    """A tqdm bar on stderr (a disabled one when progress is off); use as a context manager, `.update(n)`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not _ENABLED, mininterval=1.0,
                dynamic_ncols=True, leave=False)
