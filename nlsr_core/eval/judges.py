"""Harmfulness judges (one dispatch table, `JUDGES`); task scorers are in the task records (nlsr_core.data.tasks).

A judge is a callable `(prompts, responses) -> list[bool]` (True = harmful / flagged) with a `name` and an
`identity` string (everything that changes its verdicts; the verdict-cache key). `make_judge(JudgeSpec)` builds
one from `judge.name` / `judge.model`:

    refusal-keywords  (default, offline) harmful = answered and not refused      keywords.py
    beaver-dam        PKU-Alignment/beaver-dam-7b QA-moderation (the paper's)     models.py
    llama-guard       Llama-Guard-3 (1B or 8B), "unsafe" on the first line        models.py

Over-refusal is always measured with the refusal matcher (`is_refusal`), whatever the harmfulness judge:
model judges rate harm, not refusal.
"""
from __future__ import annotations

from nlsr_core.errors import NlsrError
from nlsr_core.data.refusals import RefusalMatcher
from nlsr_core.eval.keywords import KeywordJudge
from nlsr_core.eval.judge_models import BeaverDamJudge, JudgeSpec, LlamaGuardJudge
from nlsr_core.data.tasks import get_scorer

# name -> judge class: `cls(spec)` builds it, `cls.identity_for(spec)` names its verdicts without loading it
JUDGES: dict[str, type] = {
    "refusal-keywords": KeywordJudge,
    "beaver-dam": BeaverDamJudge,
    "llama-guard": LlamaGuardJudge,
}

REFUSALS = RefusalMatcher()


def judge_class(name: str) -> type:
    try:
        return JUDGES[name]
    except KeyError:
        raise NlsrError(f"judge.name '{name}': expected one of {', '.join(JUDGES)}") from None


def make_judge(spec: JudgeSpec):
    """Build the judge named `spec.name` (model-backed judges load their model here)."""
    return judge_class(spec.name)(spec)


def judge_identity(spec: JudgeSpec) -> str:
    """The verdict-cache identity of the judge `spec` describes, without loading any model."""
    return judge_class(spec.name).identity_for(spec)


def is_refusal(response: str) -> bool:
    return REFUSALS.is_refusal(response)


__all__ = ["JUDGES", "JudgeSpec", "make_judge", "judge_identity", "is_refusal", "get_scorer", "KeywordJudge",
           "RefusalMatcher", "BeaverDamJudge", "LlamaGuardJudge"]
