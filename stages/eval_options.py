"""The judge's answering options, shared by `nlsr judge` and the study stages (frontier, calibrate, ablate,
finetune-seeds) so that every score comes from the same answers."""
from __future__ import annotations

from stages.options import config_option

# judge.* settings shared by `nlsr judge` and the study stages (frontier, calibrate, ablate), so all score with
# the same answers: (flag, field of nlsr_core.config.JudgeConfig).
EVAL_OPTIONS = (
    ("--max-new-tokens", "max_new_tokens"),
    ("--opening-tokens", "opening_tokens"),
    ("--label-tokens", "label_tokens"),
    ("--gsm8k-tokens", "gsm8k_tokens"),
    ("--fa-mode", "fa_mode"),
    ("--batch-size", "batch_size"),
)


def eval_options(f):
    """The EVAL_OPTIONS on a command (each also accepted with underscores, as DVC's ${judge} unpacking writes)."""
    for flag, key in reversed(EVAL_OPTIONS):
        underscored = "--" + flag[2:].replace("-", "_")
        f = config_option(f"judge.{key}", flag, underscored, dest=key)(f)
    return f


def eval_settings(kwargs: dict, template: str):
    """Pop the EVAL_OPTIONS from a command's kwargs into an EvalSettings (bad values: one-line NlsrError)."""
    from nlsr_core.eval.settings import EvalSettings

    return EvalSettings(template=template, **{key: kwargs.pop(key) for _, key in EVAL_OPTIONS})
