"""Small helpers shared by the stage commands (no heavy imports here)."""
from __future__ import annotations

import click

from nlsr_core.errors import NlsrError


def split_list(values, cast=str, what: str = "value") -> list:
    """Accept repeated options and comma/space separated lists: ('sst2,agnews',) -> ['sst2', 'agnews']."""
    out = []
    for value in values:
        for part in str(value).replace(",", " ").replace("[", " ").replace("]", " ").split():
            try:
                out.append(cast(part))
            except ValueError:
                raise NlsrError(f"--{what}: '{part}' is not a valid {cast.__name__}") from None
    return out


def tracking_enabled() -> bool:
    """NLSR_TRACKING=off disables MLflow; read here (the CLI layer), never in nlsr_core."""
    import os

    return os.environ.get("NLSR_TRACKING", "on").lower() not in {"off", "0", "false", "no"}


def model_option(f):
    return click.option("--model", "model_name", default="smollm2-135m", show_default=True,
                        help="tiny-random | smollm2-135m | a Hugging Face id or model directory")(f)
