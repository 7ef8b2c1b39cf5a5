"""The fine-tuning tasks, one record each: how a prompt is written, the label strings, how an answer is scored
(fine-tuning accuracy, FA) and which answer budget its generated answers get.

    TASKS[name] = Task(name, instruction, labels, score, budget)

The instructions are the paper's (its `<task>/*.json` files); every source (synthetic, local, hub) writes a prompt
with `Task.prompt`, so a prompt looks alike whichever source it came from. Scoring rules:

* sst2   the **first** label word ("positive" / "negative", whole word, case-insensitive) in the response is
         the prediction; an answer naming neither is wrong. (Vaccine/Lisa check `label in output`; taking the
         first word also handles "positive, not negative".)
* agnews the first category name is the prediction: World, Sports, Business, Sci/Tech (also written
         "Sci-Tech", "Science/Technology", "Science", "Technology"). Integer labels 0-3 follow ag_news order.
* gsm8k  the first number after "The final answer is:" (the training answers' last line), else the last
         number in the response; compared numerically (1e-6) with the label, which may be a number, a numeric
         string or a full solution text ending in "The final answer is: N". Commas, "$" and "%" are ignored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from nlsr_core.data.base import DataError, join_prompt
from nlsr_core.errors import NlsrError

SST2_LABELS = ("negative", "positive")
AGNEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
GSM8K_ANSWER = "The final answer is:"      # the last line of a GSM8K training answer; the scorer reads after it


_AGNEWS_ALIASES = {
    "World": ("world",),
    "Sports": ("sports", "sport"),
    "Business": ("business",),
    "Sci/Tech": ("sci/tech", "sci-tech", "scitech", "science/technology", "science and technology",
                 "science", "technology", "sci"),
}
_NUMBER = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_FINAL = re.compile(r"the final answer is\s*:?", re.IGNORECASE)


def _first_match(text: str, names: dict[str, tuple[str, ...]]) -> str | None:
    """The key whose alias occurs first (as a whole word) in `text`; None when none does."""
    best: tuple[int, str] | None = None
    low = text.lower()
    for key, aliases in names.items():
        for alias in aliases:
            m = re.search(rf"(?<![a-z]){re.escape(alias)}(?![a-z])", low)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), key)
    return best[1] if best else None


def _label_name(label, names: tuple[str, ...], task: str) -> str:
    if isinstance(label, bool) or not isinstance(label, (int, str)):
        raise NlsrError(f"{task} label {label!r}: expected one of {list(names)} or its index")
    if isinstance(label, int) or label.strip().isdigit():
        i = int(label)
        if not 0 <= i < len(names):
            raise NlsrError(f"{task} label {label!r}: index out of range 0..{len(names) - 1}")
        return names[i]
    for name in names:
        if label.strip().lower() == name.lower():
            return name
    raise NlsrError(f"{task} label {label!r}: expected one of {list(names)}")


def score_sst2(response: str, label) -> bool:
    truth = _label_name(label, SST2_LABELS, "sst2")
    return _first_match(response, {n: (n,) for n in SST2_LABELS}) == truth


def score_agnews(response: str, label) -> bool:
    truth = _label_name(label, AGNEWS_LABELS, "agnews")
    return _first_match(response, _AGNEWS_ALIASES) == truth


def parse_number(text: str) -> float | None:
    """First number after "The final answer is:", else the last number in `text`; None when there is none."""
    final = _FINAL.search(text)
    if final:
        after = _NUMBER.search(text, final.end())
        if after:
            return _to_float(after.group())
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


def _to_float(token: str) -> float | None:
    clean = token.replace(",", "").replace("$", "")
    try:
        return float(clean)
    except ValueError:
        return None


def score_gsm8k(response: str, label) -> bool:
    if isinstance(label, bool):
        raise NlsrError(f"gsm8k label {label!r}: expected a number or a solution ending in a number")
    truth = float(label) if isinstance(label, (int, float)) else parse_number(str(label))
    if truth is None:
        raise NlsrError(f"gsm8k label {label!r}: expected a number or a solution ending in a number")
    got = parse_number(response)
    return got is not None and abs(got - truth) <= 1e-6 * max(1.0, abs(truth))


@dataclass(frozen=True)
class Task:
    """One fine-tuning task. `instruction` is joined before the input (`join_prompt`), or for a task with
    `instruction_after` written on its own line after the question (GSM8K); `labels` are the answers FA can be
    scored against by likelihood (empty: free-form, always generated); `budget` names the judge.* field that gives
    its generated answers' token budget."""

    name: str
    instruction: str
    labels: tuple[str, ...]
    score: Callable[[str, object], bool]
    budget: str
    instruction_after: bool = False

    def prompt(self, text: str) -> str:
        """The user prompt of one input: the paper's format for this task."""
        if self.instruction_after:
            return f"{text.strip()}\n{self.instruction}"
        return join_prompt(self.instruction, text)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("sst2", "Analyze the sentiment of the input, and respond only positive or negative", SST2_LABELS,
         score_sst2, "label_tokens"),
    Task("agnews", "Categorize the news article given in the input into one of the 4 categories:\n\n"
         + "\n".join(AGNEWS_LABELS), AGNEWS_LABELS, score_agnews, "label_tokens"),
    Task("gsm8k", "First think step by step and then answer the final number.", (), score_gsm8k, "gsm8k_tokens",
         instruction_after=True),
)}


def get_task(name: str) -> Task:
    """TASKS[name], or a one-line error listing the tasks."""
    if name not in TASKS:
        raise DataError(f"task '{name}': unknown; expected one of {', '.join(TASKS)}")
    return TASKS[name]


def get_scorer(task: str) -> Callable[[str, object], bool]:
    """The FA scorer of `task`: `score(response, label) -> correct?`."""
    if task not in TASKS:
        raise NlsrError(f"task '{task}': no scorer; expected one of {sorted(TASKS)}")
    return TASKS[task].score
