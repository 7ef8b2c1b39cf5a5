"""How each evaluation split is answered: a token budget per judge and split, and FA by scoring or generating.

    split     answered by                                          read by
    harmful   greedy generation, `opening_tokens` (keyword judge)   the harmfulness judge
              or `max_new_tokens` (model judges read the whole answer)
    benign    greedy generation, `opening_tokens`                   the refusal matcher (over-refusal)
    task      fa_mode score: the label strings ranked by likelihood  the task record's scorer (nlsr_core.data.tasks)
              (nlsr_core.eval.label_scoring), and greedy generation
              (`label_tokens`) for the rows whose most likely first
              token starts no label; fa_mode generate: greedy
              generation, `label_tokens` (sst2, agnews) or `gsm8k_tokens`;
              gsm8k (no label strings) is generated in both modes

The refusal matcher and the keyword judge read the opening of an answer (the first 256 characters), and greedy
decoding is prefix-consistent (the first k tokens of a 48-token answer are the k-token answer), so a short
budget changes a verdict only where the opening is shorter than what the matcher needs; the budgets were chosen
by measuring verdict agreement against 48 tokens (benchmarks/bench_eval.py, README). Each budget and the
FA mode are part of the answer-cache key (the job's `record()`), so changing one never reuses stale answers.
The defaults here are params.yaml's `judge:` section.
"""
from __future__ import annotations

from dataclasses import dataclass

from nlsr_core.config import DataConfig, JudgeConfig, check_value, choices
from nlsr_core.lora.generate import GenerationSettings
from nlsr_core.data.tasks import TASKS

FA_MODES = choices("judge", "fa_mode")
# Tasks whose answer is one of a few label strings (the training response), so FA can be scored by likelihood.
LABEL_TASKS = {name: task.labels for name, task in TASKS.items() if task.labels}
KEYWORD_JUDGES = ("refusal-keywords",)  # judges that read only the opening of an answer


@dataclass(frozen=True)
class LabelScoring:
    """One task split answered by ranking `labels` by log-likelihood; a row whose most likely first token starts
    no label (the model would not answer with a label) is generated instead (`fallback`), so prose answers are
    read by the task scorer exactly as in generate mode."""

    labels: tuple[str, ...]
    fallback: GenerationSettings

    def record(self) -> dict:
        # "scoring" versions the rule in nlsr_core.eval.label_scoring (first-token gate, eos appended)
        return {"decoding": "label-scoring", "scoring": 1, "labels": list(self.labels),
                "fallback": self.fallback.record(), "template": self.fallback.template}


@dataclass(frozen=True)
class EvalSettings:
    """Answer budgets and FA mode of `nlsr judge` and the study stages (params.yaml `judge:`)."""

    max_new_tokens: int = JudgeConfig.max_new_tokens
    """Harmful answers for a model judge (beaver-dam, llama-guard), which reads the whole answer."""
    opening_tokens: int = JudgeConfig.opening_tokens
    """Harmful answers for the keyword judge and benign answers for over-refusal: both read the opening."""
    label_tokens: int = JudgeConfig.label_tokens
    """Generated answers of a label task (sst2, agnews): every row in generate mode, rows that would not start
    with a label in score mode."""
    gsm8k_tokens: int = JudgeConfig.gsm8k_tokens
    """Generated GSM8K answers (a worked solution; always generated)."""
    fa_mode: str = JudgeConfig.fa_mode
    """score: rank the label strings of a label task (sst2, agnews) by likelihood (one forward pass per row and
    label), and generate the tasks without label strings (gsm8k); generate: decode every task."""
    batch_size: int = JudgeConfig.batch_size
    template: str = DataConfig.template

    def __post_init__(self):
        for name in ("fa_mode", "max_new_tokens", "opening_tokens", "label_tokens", "gsm8k_tokens", "batch_size"):
            check_value(f"judge.{name}", getattr(self, name))   # the ranges beside JudgeConfig's fields

    def generation(self, tokens: int) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=tokens, batch_size=self.batch_size, template=self.template)

    def job(self, split: str, task: str, judge_name: str):
        """How `split` of `task` is answered: a GenerationSettings or a LabelScoring (both have `record()`)."""
        if split == "task":
            # score applies to the label tasks only: a task without label strings (gsm8k, a worked solution) is
            # generated in either mode, so one judge section serves a grid that mixes both kinds of task
            if self.fa_mode == "score" and task in LABEL_TASKS:
                return LabelScoring(LABEL_TASKS[task], self.generation(self.label_tokens))
            return self.generation(getattr(self, TASKS[task].budget))   # the task record names its budget
        if split in ("harmful", "transfer") and judge_name not in KEYWORD_JUDGES:
            return self.generation(self.max_new_tokens)
        return self.generation(self.opening_tokens)

    def record(self, task: str, judge_name: str, splits=("harmful", "task", "benign")) -> dict:
        """What judged.json and the study documents record: each split's job and the FA mode."""
        return {"fa_mode": self.fa_mode,
                **{split: self.job(split, task, judge_name).record() for split in splits}}
