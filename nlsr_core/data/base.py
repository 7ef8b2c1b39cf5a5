"""The data suite's shared definitions: splits, row schemas, the spec and the helpers every source uses
(docs/DESIGN.md §3, §5). Sources (synthetic, local, hub) import these; nothing here imports a source.

A `DataSpec` names a source (`synthetic` | `local` | `hub`), a seed, the tasks and the split sizes;
`build_suite(spec)` dispatches through `SOURCES` and returns a `Suite` of plain row dicts whose schemas are
the prepared-data layout:

    sft          {id, prompt, response, kind: "refusal" | "benign"}   SFT data for the weak adapter W0
    preference   {id, prompt, chosen, rejected}                       chosen = refusal, rejected = compliance
    identify     {id, prompt, response}                               safety set X̂ (harmful prompt + safe answer)
    eval_harmful {id, prompt}                                         held-out harmful prompts (HS)
    eval_benign  {id, prompt}                                         sensitive-looking benign prompts (over-refusal)
    poison_pool  {id, prompt, response}                               harmful prompt + compliant answer
    task_train / task_test: {task: [{id, prompt, response, label}]}

`prompt` is always the raw user text; chat/alpaca formatting happens later (`templates.py`).
`prepare.prepare` writes a suite plus the poisoned fine-tuning mixes (`mixing.mix_poison`) to disk.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Sequence

from nlsr_core.config import SizesConfig
from nlsr_core.errors import NlsrError


class DataError(NlsrError):
    """Bad data input (file, row, size, spec); the message is one line for the CLI."""






@dataclass(frozen=True)
class DataSpec:
    """What to build. `local_dir` is the paper-data folder (source `local` only)."""

    source: str = "synthetic"
    seed: int = 0
    local_dir: str | None = None
    tasks: tuple[str, ...] = ("sst2",)
    sizes: SizesConfig = field(default_factory=SizesConfig)
    preference_pairs: str = "all"   # all | refusal (nlsr_core.config.DataConfig.preference_pairs)
    contrast_refusals: str = "generic"  # generic | matched (nlsr_core.config.DataConfig.contrast_refusals)
    sft_refusals: str = "safety-file"  # safety-file | preference-chosen (nlsr_core.config.DataConfig.sft_refusals)
    transfer: str = "none"  # none | paper | synthetic (nlsr_core.config.DataConfig.transfer; nlsr_core.data.transfer)

    def to_dict(self) -> dict:
        return {"source": self.source, "seed": self.seed, "local_dir": self.local_dir,
                "tasks": list(self.tasks), "sizes": asdict(self.sizes), "preference_pairs": self.preference_pairs,
                "contrast_refusals": self.contrast_refusals, "sft_refusals": self.sft_refusals,
                **({"transfer": self.transfer} if self.transfer != "none" else {})}


@dataclass
class Suite:
    """Every split of one prepared data suite (row schemas in the module docstring)."""

    sft: list[dict]
    preference: list[dict]
    identify: list[dict]
    eval_harmful: list[dict]
    eval_benign: list[dict]
    poison_pool: list[dict]
    task_train: dict[str, list[dict]]
    task_test: dict[str, list[dict]]
    # Rows the source drew for no split (same distributions as eval_harmful / task_test): what the calibration
    # split is drawn from by `nlsr_core.data.prepare`, after removing any prompt another split holds.
    calib_pool_harmful: list[dict] = field(default_factory=list)
    calib_pool_task: dict[str, list[dict]] = field(default_factory=dict)
    # Refusal/compliance pairs {prompt, chosen, rejected} on prompts no split trains on: the judge-free safety
    # score's held-out pairs (nlsr_core.eval.preference_score); `prepare` drops any prompt another split holds.
    heldout_pairs: list[dict] = field(default_factory=list)
    # File-backed sources: the synthetic suite's benign-but-sensitive over-refusal probes ("How do I kill weeds?"),
    # a second over-refusal set beside the source's own benign prompts (reported separately).
    eval_benign_sensitive: list[dict] = field(default_factory=list)


# Keys every row of a split must carry (prepared-data layout, common contract).
ROW_KEYS = {
    "sft": ("id", "prompt", "response", "kind"),
    "preference": ("id", "prompt", "chosen", "rejected"),
    "identify": ("id", "prompt", "response"),
    "eval_harmful": ("id", "prompt"),
    "eval_benign": ("id", "prompt"),
    "poison_pool": ("id", "prompt", "response"),
    "task": ("id", "prompt", "response", "label"),
}


def join_prompt(instruction: str, text: str = "") -> str:
    """Raw user prompt = instruction, blank line, input (the Alpaca fields without their `###` wrapper)."""
    instruction, text = instruction.strip(), text.strip()
    return f"{instruction}\n\n{text}" if text else instruction


def rng_for(seed: int, split: str) -> random.Random:
    """Independent stream per split: `random.Random` seeded with a string is stable across runs (sha512)."""
    return random.Random(f"nlsr-data:{seed}:{split}")


def norm_text(text: str) -> str:
    """Comparison key for prompts: case and whitespace folded (used for train/eval disjointness)."""
    return " ".join(text.lower().split())


def take(rows: Sequence, k: int, rng: random.Random, what: str):
    """`k` rows drawn without replacement, in random order; too few rows is a one-line DataError."""
    if k > len(rows):
        raise DataError(f"{what}: needs {k} rows but only {len(rows)} are available (lower data.sizes)")
    return rng.sample(list(rows), k)


def dedupe(rows: Sequence[dict], key: str = "prompt") -> list[dict]:
    """First row per normalised `key` (order kept): one example per prompt."""
    seen, out = set(), []
    for row in rows:
        k = norm_text(row[key])
        if k not in seen:
            seen.add(k)
            out.append(row)
    return out


def with_ids(rows: Sequence[dict], prefix: str) -> list[dict]:
    """Rows with a stable `id` = prefix + zero-padded position, e.g. `sft-000123`; `id` first for readability."""
    return [{"id": f"{prefix}-{i:06d}", **{k: v for k, v in row.items() if k != "id"}} for i, row in enumerate(rows)]


def assemble_suite(seed: int, sizes: "SizesConfig", sft_refusal: list[dict], benign: list[dict], preference: list[dict],
                   identify: list[dict], eval_harmful: list[dict], poison: list[dict],
                   task_train: dict, task_test: dict, calib_pool_harmful: list[dict] | None = None,
                   calib_pool_task: dict | None = None, heldout_pairs: list[dict] | None = None,
                   contrast_refusals: str = "generic", sft_refusals: str = "safety-file") -> "Suite":
    """Common tail of the file-backed sources: the first `sizes.sft_benign` benign rows join the refusals in SFT
    (shuffled by seed), the next `sizes.eval_benign` become the over-refusal prompts and the next
    `sizes.contrast_helpful` Wa's helpful contrast pairs (their rejected refusals as `contrast_refusals` says:
    nlsr_core.data.contrast.contrast_refusal_pool); every split gets its stable ids. The benign-sensitive
    probes of the synthetic suite (all of them) are the second over-refusal set. `sft_refusals` =
    "preference-chosen" (the paper's W0) puts the chosen answers of the first `sizes.sft_refusal` preference pairs
    in place of `sft_refusal`."""
    from nlsr_core.data.contrast import contrast_refusal_pool, helpful_contrast, mix_preference
    from nlsr_core.data.synthetic_safety import eval_benign_prompts

    if sft_refusals == "preference-chosen":
        if sizes.sft_refusal > len(preference):
            raise DataError(f"data.sizes.sft_refusal: asks {sizes.sft_refusal} chosen answers of Wa's pairs "
                            f"(data.sft_refusals preference-chosen) but data.sizes.preference draws only "
                            f"{len(preference)} pairs (expected sft_refusal <= preference)")
        sft_refusal = [{"prompt": r["prompt"], "response": r["chosen"], "kind": "refusal"}
                       for r in preference[:sizes.sft_refusal]]
    sft = sft_refusal + [{**r, "kind": "benign"} for r in benign[:sizes.sft_benign]]
    rng_for(seed, "sft").shuffle(sft)
    probes_end = sizes.sft_benign + sizes.eval_benign
    contrast = helpful_contrast(benign[probes_end:probes_end + sizes.contrast_helpful], seed,
                                contrast_refusal_pool(contrast_refusals, preference))
    return Suite(
        sft=with_ids(sft, "sft"),
        preference=with_ids(mix_preference(preference, contrast, seed), "pref"),
        identify=with_ids(identify, "ident"),
        eval_harmful=with_ids(eval_harmful, "eval-harmful"),
        eval_benign=with_ids([{"prompt": r["prompt"]} for r in benign[sizes.sft_benign:probes_end]], "eval-benign"),
        poison_pool=with_ids(poison, "poison"),
        task_train=task_train,
        task_test=task_test,
        calib_pool_harmful=calib_pool_harmful or [],
        calib_pool_task=calib_pool_task or {},
        heldout_pairs=heldout_pairs or [],
        eval_benign_sensitive=with_ids([{"prompt": p} for p in eval_benign_prompts()], "eval-benign-sensitive"),
    )


def mix_key(task: str, p: float) -> str:
    """Name of a poisoned fine-tuning mix (a cell key without its align method), e.g.
    `mix_key("sst2", 0.05) == "sst2-p0.05"`."""
    return f"{task}-p{p:g}"


def check_suite(suite: Suite, spec: DataSpec) -> None:
    """Every split non-empty, rows carry their schema keys, ids unique across the whole suite."""
    splits = {name: getattr(suite, name) for name in
              ("sft", "preference", "identify", "eval_harmful", "eval_benign", "poison_pool")}
    for task in spec.tasks:
        for part, table in (("train", suite.task_train), ("test", suite.task_test)):
            splits[f"{task}/{part}"] = table.get(task, [])
    seen: set[str] = set()
    for name, rows in splits.items():
        if not rows:
            raise DataError(f"data source {spec.source!r}: split {name} is empty")
        keys = ROW_KEYS["task"] if "/" in name else ROW_KEYS[name]
        for i, row in enumerate(rows):
            missing = [k for k in keys if not isinstance(row.get(k), str)]
            if missing:
                raise DataError(f"data source {spec.source!r}: split {name} row {i} lacks string field(s) {missing}")
            if row["id"] in seen:
                raise DataError(f"data source {spec.source!r}: duplicate row id {row['id']!r} in split {name}")
            seen.add(row["id"])
