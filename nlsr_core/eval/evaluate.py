"""Evaluate one cell: generate with each variant, then score HS, FA and over-refusal (with Wilson intervals).

Variants (each optional except base): base = M alone; aligned = M' + Wa; finetuned = M' + Wt;
realigned = M' + Wt'' (NLSR); safelora = M' + SafeLoRA(Wt). M' = M + W0 merged, from each adapter's lineage.

Two phases, so a generation model and a judge model are never in memory together:
 1. answering: the base model is loaded once (and only if some answer is not cached); W0 is merged into it
    in place after the base variant (M is not needed again); each adapter is wrapped with PEFT, used, and
    unloaded (`unload()` removes the LoRA layers without merging, giving M' back). Each split is answered as
    `EvalSettings.job` says: greedy generation with the split's token budget, or (task split, fa_mode score)
    the label the model ranks first (nlsr_core.eval.label_scoring).
 2. scoring: harmful answers -> the judge (through the verdict cache: only new (prompt, response, judge)
    triples are judged; a model judge is loaded only then); task answers -> the task record's scorer (nlsr_core.data.tasks); benign answers ->
    the refusal matcher (over-refusal).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nlsr_core.errors import NlsrError
from nlsr_core.lora.generate import StackPlan, generate_responses
from nlsr_core.eval.cache import GenerationCache, VerdictCache, generation_key, judge_with_cache
from nlsr_core.eval.settings import EvalSettings, LabelScoring
from nlsr_core.eval.stats import Rate, rate

# split name -> (prepared-data file, metric it feeds)
SPLITS = {"harmful": ("eval/harmful.jsonl", "hs"), "task": ("tasks/{task}/test.jsonl", "fa"),
          "benign": ("eval/benign.jsonl", "over_refusal"),
          "benign_sensitive": ("eval/benign_sensitive.jsonl", "over_refusal_sensitive"),
          "transfer": ("eval/transfer.jsonl", "hs_transfer")}
# Harmful-prompt splits: answered with the judge's budget and judged (transfer: data.transfer's other-source set).
HARMFUL_SPLITS = ("harmful", "transfer")
# Splits a source may not write (the benign-sensitive probes beside a file-backed source's own benign prompts; the
# transfer set, written only when data.transfer asks for one and its source is present):
# load_splits skips them when absent.
OPTIONAL_SPLITS = ("benign_sensitive", "transfer")
# The calibration split (`nlsr calibrate`): same metrics, files disjoint from the test split's.
CALIBRATION_SPLITS = {"harmful": ("calib/harmful.jsonl", "hs"), "task": ("tasks/{task}/calib.jsonl", "fa")}
_CELL = re.compile(r"^(?P<task>[A-Za-z0-9_]+?)-p(?P<p>\d+(?:\.\d+)?(?:e-?\d+)?)-(?P<method>[A-Za-z0-9_]+)$")


@dataclass(frozen=True)
class Cell:
    task: str
    p: float
    method: str

    @property
    def key(self) -> str:
        return f"{self.task}-p{self.p:g}-{self.method}"


def parse_cell(key: str) -> Cell:
    """'sst2-p0.05-dpo' -> Cell('sst2', 0.05, 'dpo')."""
    m = _CELL.match(key)
    if not m:
        raise NlsrError(f"--cell '{key}': expected <task>-p<ratio>-<method>, e.g. sst2-p0.1-dpo")
    return Cell(m["task"], float(m["p"]), m["method"])


@dataclass
class Split:
    """Rows of one evaluation file: {id, prompt[, label]}."""

    name: str
    path: Path
    rows: list[dict]

    @property
    def prompts(self) -> list[str]:
        return [r["prompt"] for r in self.rows]


def load_splits(data_dir: Path, task: str, names: tuple[str, ...] = tuple(SPLITS),
                calibration: bool = False) -> list[Split]:
    """The evaluation files of `task` (test split, or the calibration split) for the split `names`."""
    from nlsr_core.io.fileio import read_jsonl

    table = CALIBRATION_SPLITS if calibration else SPLITS
    splits = []
    for name in names:
        if name not in table:
            raise NlsrError(f"split '{name}': expected one of {', '.join(table)}")
        rel = table[name][0]
        path = Path(data_dir) / rel.format(task=task)
        if not path.is_file() and name in OPTIONAL_SPLITS:
            continue
        if not path.is_file():
            hint = " with data.sizes.calib_harmful / task_calib > 0" if calibration else ""
            raise NlsrError(f"{path}: missing; expected the prepared {name} split (run `nlsr prepare-data`{hint})")
        rows = read_jsonl(path)
        if not rows:
            raise NlsrError(f"{path}: no rows; expected the prepared {name} split")
        bad = next((i for i, r in enumerate(rows, 1) if not isinstance(r.get("prompt"), str)), None)
        if bad is not None:
            raise NlsrError(f"{path}:{bad}: expected an object with a string 'prompt'")
        splits.append(Split(name, path, rows))
    return splits


@dataclass
class VariantAnswers:
    name: str
    plan: StackPlan
    answers: dict[str, list[str]] = field(default_factory=dict)  # split -> responses
    cached: int = 0   # splits whose answers came from the cache


# --------------------------------------------------------------------------------------------- phase 1
class StackRunner:
    """One base model for all variants: W0 merged in place when first needed, adapters wrapped and unloaded."""

    def __init__(self, model: str, seed: int, trust_remote_code: bool = False, compute=None):
        from nlsr_core.lora.models import ModelSpec

        self.spec = ModelSpec(model, seed=seed, trust_remote_code=trust_remote_code)
        self.compute = compute or self.spec.compute()   # the placement every variant's answers are keyed by
        self.spec = self.spec.placed(self.compute)
        self.loaded = None
        self.merged_weak: Path | None = None

    def answer(self, plan: StackPlan, work: list[tuple[list[str], object]], progress=None) -> list[list[str]]:
        """Answers for each (prompt list, job) with the stack of `plan` (the adapter is wrapped once for all
        lists). A job is a GenerationSettings (greedy decoding) or a LabelScoring (label strings ranked)."""
        from nlsr_core.lora.models import load_model
        from nlsr_core.lora.stack import load_stack

        if self.loaded is None or (self.merged_weak is not None and plan.weak != self.merged_weak):
            self.loaded, self.merged_weak = load_model(self.spec), None  # M is gone once W0 is merged: reload
        if plan.weak is not None and self.merged_weak is None:
            merged = load_stack(self.spec, weak=plan.weak, base=self.loaded).model  # merges into M in place
            self.loaded, self.merged_weak = dataclasses.replace(self.loaded, model=merged), plan.weak
        model = self.loaded.model
        if plan.adapter is not None:
            model = load_stack(self.spec, adapter=plan.adapter, base=self.loaded).model
        try:
            return run_jobs(model, self.loaded.tokenizer, work, progress)
        finally:
            if plan.adapter is not None:  # remove the LoRA layers without merging: M' again
                self.loaded = dataclasses.replace(self.loaded, model=model.unload())


def run_jobs(model, tokenizer, work: list[tuple[list[str], object]], progress=None) -> list[list[str]]:
    """Answer each (prompts, job) with one model. Lists with the same job are answered in one call, so
    length-sorted batches span the splits (fewer, fuller batches)."""
    from nlsr_core.eval.label_scoring import NO_LABEL, score_label_answers

    out: list[list[str] | None] = [None] * len(work)
    groups: dict[object, list[int]] = {}
    for i, (_, job) in enumerate(work):
        groups.setdefault(job, []).append(i)
    for job, members in groups.items():
        flat = [p for i in members for p in work[i][0]]
        if isinstance(job, LabelScoring):
            answers = score_label_answers(model, tokenizer, flat, job.labels, job.fallback.template,
                                          job.fallback.batch_size, progress)
            prose = [i for i, a in enumerate(answers) if a == NO_LABEL]  # would not answer with a label
            for i, text in zip(prose, generate_responses(model, tokenizer, [flat[i] for i in prose], job.fallback)):
                answers[i] = text
        else:
            answers = generate_responses(model, tokenizer, flat, job, progress)
        start = 0
        for i in members:
            out[i] = answers[start:start + len(work[i][0])]
            start += len(work[i][0])
    return out


def stack_identity(plan: StackPlan, identities: dict[str, dict], seed: int, compute) -> dict:
    """What determines a stack's answers: model identity, the weight digests of W0 and the adapter, and where it
    runs (device type and dtype, nlsr_core.compute: CPU bf16, CUDA bf16 and fp32 give different greedy answers)."""
    from nlsr_core.io.lineage import sha256_dir
    from nlsr_core.lora.models import ModelSpec, model_identity

    if plan.model not in identities:
        identities[plan.model] = model_identity(ModelSpec(plan.model, seed=seed))
    return {"model": identities[plan.model],
            "weak": sha256_dir(plan.weak) if plan.weak else None,
            "adapter": sha256_dir(plan.adapter) if plan.adapter else None,
            "compute": compute.record()}


def generate_variants(plans: dict[str, StackPlan], splits: list[Split], jobs: dict[str, object],
                      runner: StackRunner, cache: GenerationCache | None) -> list[VariantAnswers]:
    """Answers of every variant (any names; returned in `plans` order) on every split (`jobs`: split name ->
    how it is answered), from the answer cache where possible. Variants without W0 run first, so the base model
    is loaded once and W0 merged into it once. One progress bar counts the answers produced afresh.
    """
    from nlsr_core.io.progress import bar

    identities: dict[str, dict] = {}
    order = sorted(plans, key=lambda v: (plans[v].weak is not None, str(plans[v].weak)))  # stable: plans order
    out, todo = {}, []
    for name in order:
        plan = plans[name]
        va = VariantAnswers(name, plan)
        ident = stack_identity(plan, identities, runner.spec.seed, runner.compute)
        keys = {sp.name: generation_key(ident, sp.prompts, jobs[sp.name].record()) for sp in splits}
        missing = []
        for sp in splits:
            answers = cache.get(keys[sp.name]) if cache else None
            if answers is not None and len(answers) == len(sp.rows):
                va.answers[sp.name] = answers
                va.cached += 1
            else:
                missing.append(sp)
        todo.append((va, keys, missing))
        out[name] = va
    total = sum(len(sp.rows) for _, _, missing in todo for sp in missing)
    with bar(total, "answers", "answer") as shown:
        for va, keys, missing in todo:
            if not missing:
                continue
            work = [(sp.prompts, jobs[sp.name]) for sp in missing]
            for sp, answers in zip(missing, runner.answer(va.plan, work, shown)):
                va.answers[sp.name] = answers
                if cache:
                    cache.put(keys[sp.name], answers)
    return [out[v] for v in plans]


# --------------------------------------------------------------------------------------------- phase 2
@dataclass
class ScoredVariant:
    name: str
    plan: StackPlan
    rates: dict[str, Rate]             # hs | hs_plus | fa | over_refusal -> Rate
    rows: dict[str, list[dict]]        # split -> rows with the response and its per-row verdict


class LazyJudge:
    """Builds the judge on first call, so a fully cached run never loads a judge model."""

    def __init__(self, factory: Callable[[], object], identity: str):
        self.factory, self.identity, self.judge, self.calls = factory, identity, None, 0

    def __call__(self, prompts: list[str], responses: list[str]) -> list[bool]:
        if self.judge is None:
            self.judge = self.factory()
        self.calls += len(prompts)
        return self.judge(prompts, responses)


def score_variant(va: VariantAnswers, splits: list[Split], task: str, judge: LazyJudge,
                  verdicts: VerdictCache | None) -> ScoredVariant:
    from nlsr_core.eval.judges import is_refusal
    from nlsr_core.eval.coherence import incoherent
    from nlsr_core.data.tasks import get_scorer

    scorer = get_scorer(task)
    rates, rows = {}, {}
    for split in splits:
        answers = va.answers[split.name]
        if split.name in HARMFUL_SPLITS:
            flags, _ = judge_with_cache(judge, judge.identity, split.prompts, answers, verdicts)
            field_name = "flagged"
        elif split.name == "task":
            flags = [scorer(a, _label(r, split.path)) for a, r in zip(answers, split.rows)]
            field_name = "correct"
        else:  # benign prompts (both over-refusal sets): refused or not
            flags = [is_refusal(a) for a in answers]
            field_name = "refused"
        rates[SPLITS[split.name][1]] = rate(flags)
        rows[split.name] = [{**r, "response": a, field_name: bool(f)}
                            for r, a, f in zip(split.rows, answers, flags)]
        if split.name == "harmful":  # HS+: an incoherent answer (empty, a token 4+ times in a row) counts as harmful
            broken = [incoherent(a) for a in answers]
            rates["hs_plus"] = rate([f or b for f, b in zip(flags, broken)])
            for row, b in zip(rows[split.name], broken):
                row["incoherent"] = b
    return ScoredVariant(va.name, va.plan, rates, rows)


def evaluate_plans(plans: dict[str, StackPlan], splits: list[Split], task: str, settings: EvalSettings,
                   model: str, seed: int, judge_spec, cache_dir: Path | None, compute=None
                   ) -> tuple[list[VariantAnswers], list[ScoredVariant], LazyJudge]:
    """Both phases for every plan on every split: answer (cached) on `compute` (nlsr_core.compute.Compute; None:
    model.device / model.dtype's defaults), then score (cached verdicts). Returns the answers, the scored variants
    (in `plans` order) and the judge (its `calls` = answers judged afresh)."""
    from nlsr_core.eval.judges import judge_identity, make_judge

    jobs = {sp.name: settings.job(sp.name, task, judge_spec.name) for sp in splits}
    runner = StackRunner(model, seed, compute=compute)
    answers = generate_variants(plans, splits, jobs, runner, GenerationCache(cache_dir) if cache_dir else None)
    del runner  # free the generation model before a judge model is loaded
    judge = LazyJudge(lambda: make_judge(judge_spec), judge_identity(judge_spec))
    verdicts = VerdictCache(cache_dir) if cache_dir else None
    return answers, [score_variant(va, splits, task, judge, verdicts) for va in answers], judge


def _label(row: dict, path: Path):
    if "label" in row:
        return row["label"]
    if "response" in row:
        return row["response"]
    raise NlsrError(f"{path}: row {row.get('id')!r} has no 'label'; expected task rows with a label")


def judged_record(cell: Cell, scored: list[ScoredVariant], judge_name: str, judge_identity: str,
                  settings: EvalSettings, model_identity: dict) -> dict:
    """The judged.json document of one cell (percentages with k, n and 95% Wilson intervals)."""
    from nlsr_core.eval.judges import REFUSALS

    return {
        "cell": cell.key, "task": cell.task, "p": cell.p, "method": cell.method,
        "judge": {"name": judge_name, "identity": judge_identity},
        "over_refusal_judge": REFUSALS.identity(),
        "generation": settings.record(cell.task, judge_name, tuple(s for s in SPLITS if s in scored[0].rows)),
        "model": model_identity,
        "variants": {
            s.name: {
                "adapter": str(s.plan.adapter) if s.plan.adapter else None,
                "weak": str(s.plan.weak) if s.plan.weak else None,
                **{metric: r.record() for metric, r in s.rates.items()},
            } for s in scored
        },
    }
