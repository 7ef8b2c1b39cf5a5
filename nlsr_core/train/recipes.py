"""Alignment recipes: which rows train W0 (SFT) and Wa (preference), how many, and with which settings.

NLSR can only restore safety that lives in Wa. A recipe therefore makes W0 *weak* (few refusal rows, many benign
helpful rows, few steps: M' = M + W0 is only partly safe) and Wa *strong but discriminating*: safety pairs
(chosen = refusal, rejected = compliance on a harmful prompt) next to **contrast pairs** on benign prompts
(chosen = the helpful answer, rejected = a refusal), so that "prefer refusals" does not become "refuse
everything".

    Recipe                      the numbers (rows, epochs, lr, beta, max length, steps) of one profile
    recipe_sizes(recipe, base)  the data.sizes that build its rows (contrast pairs: nlsr_core/data/contrast.py)
    recipe_rows(recipe, spec)   (sft rows, preference rows) of a data source with those sizes
    check_disjoint(rows, eval)  every training prompt is absent from every evaluation / calibration split
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from nlsr_core.config import AlignConfig, DataConfig, SizesConfig
from nlsr_core.errors import NlsrError

@dataclass(frozen=True)
class Recipe:
    """One alignment recipe. W0 = SFT on `sft_refusal` refusals + `sft_benign` helpful rows (`sft_*` settings);
    Wa = DPO on `pairs_safety` safety pairs + `pairs_sensitive` + `pairs_helpful` contrast pairs (`pref_*`)."""

    name: str
    # defaults: the pipeline's (nlsr_core.config), so `Recipe("default")` is params.yaml's recipe
    sft_refusal: int = SizesConfig.sft_refusal
    sft_benign: int = SizesConfig.sft_benign
    sft_lr: float = AlignConfig.lr
    sft_epochs: float = AlignConfig.epochs
    sft_max_steps: int = -1
    pairs_safety: int = SizesConfig.preference
    pairs_sensitive: int = SizesConfig.contrast_sensitive
    pairs_helpful: int = SizesConfig.contrast_helpful
    preference_pairs: str = DataConfig.preference_pairs  # all | refusal (the safety pairs' source rows)
    contrast_refusals: str = DataConfig.contrast_refusals  # generic | matched (what a contrast pair rejects)
    pref_lr: float = AlignConfig.lr
    pref_epochs: float = AlignConfig.pref_epochs
    pref_max_steps: int = -1
    beta: float = AlignConfig.beta
    max_length: int = AlignConfig.max_length
    batch_size: int = AlignConfig.batch_size
    precompute_ref: bool = AlignConfig.precompute_ref
    chosen_nll: float = AlignConfig.chosen_nll  # DPO + this weight x NLL of the chosen answer (RPO)
    on_policy_tokens: int = AlignConfig.on_policy_tokens  # > 0: M''s own harmful answers are the rejected side
    seed: int = AlignConfig.seed

    def check(self) -> None:
        counts = ("sft_refusal", "sft_benign", "pairs_safety", "pairs_sensitive", "pairs_helpful")
        for name in counts:
            if getattr(self, name) < 0:
                raise NlsrError(f"recipe {self.name}: {name}={getattr(self, name)} (expected >= 0)")
        if self.sft_refusal + self.sft_benign < 1:
            raise NlsrError(f"recipe {self.name}: no SFT rows (sft_refusal + sft_benign must be >= 1)")
        if self.pairs_safety + self.pairs_sensitive + self.pairs_helpful < 1:
            raise NlsrError(f"recipe {self.name}: no preference pairs")

    def sft_settings(self):
        """W0's TrainSettings; the shared fields (batch, length, seed, beta) are the recipe's."""
        from nlsr_core.train.trainers import TrainSettings

        return TrainSettings(lr=self.sft_lr, epochs=self.sft_epochs, batch_size=self.batch_size,
                             max_length=self.max_length, seed=self.seed, beta=self.beta, max_steps=self.sft_max_steps)

    def pref_settings(self):
        """Wa's TrainSettings: W0's with the preference phase's own fields."""
        return dataclasses.replace(self.sft_settings(), lr=self.pref_lr, epochs=self.pref_epochs,
                                   max_steps=self.pref_max_steps, precompute_ref=self.precompute_ref,
                                   chosen_nll=self.chosen_nll)

    def record(self) -> dict:
        return dataclasses.asdict(self)


def derived(parent: Recipe, name: str, **changes) -> Recipe:
    """`parent` with a new name and some fields changed: each studied recipe changes one lever of another."""
    return dataclasses.replace(parent, name=name, **changes)


# r0: the default before the recipe study (strong W0: 256 refusal + 256 benign rows; 128 safety pairs, 1 epoch).
R0 = Recipe("r0", sft_refusal=256, sft_benign=256, pairs_safety=128, pairs_sensitive=0, pairs_helpful=0,
            pref_epochs=1, precompute_ref=False, chosen_nll=0.0, on_policy_tokens=0)
# r1: weak W0 (16 refusals among 128 rows, 16 steps), Wa = 64 safety pairs + 64 contrast pairs (16 steps).
R1 = derived(R0, "r1", sft_refusal=16, sft_benign=112, pairs_safety=64, pairs_sensitive=32, pairs_helpful=32)
# r3: r1 with a preference set of mostly safety pairs (112 safety + 16 contrast); r4: safety pairs only.
R3 = derived(R1, "r3", pairs_safety=112, pairs_sensitive=8, pairs_helpful=8, precompute_ref=True)
# r3-e3 -> r3-e3-op -> r3-e3-op-nll -> r5: one lever each (docs/DESIGN.md §5.6).
R3_E3 = derived(R3, "r3-e3", pref_epochs=3)
R3_E3_OP = derived(R3_E3, "r3-e3-op", on_policy_tokens=48)
R3_E3_OP_NLL = derived(R3_E3_OP, "r3-e3-op-nll", chosen_nll=1.0)
R5 = derived(R3_E3_OP_NLL, "r5", pairs_sensitive=32, pairs_helpful=16)

# The paper's data (source local, profiles/local-paper.yaml; reports/local-paper/alignment.md). lp0: the profile's
# recipe before the study (strong W0, the paper's raw PKU-SafeRLHF pairs, 1 epoch); lp5: r5's levers on the real
# files (weak W0, 112 refusal/compliance pairs from the PKU prompts + 32 AlpacaEval contrast pairs, 3 epochs,
# on-policy rejected answers, chosen NLL); lp5-raw: lp5 on the raw pairs (one lever: which pairs).
LP0 = derived(R0, "lp0", sft_refusal=200, sft_benign=256)
LP5 = derived(R5, "lp5", pairs_sensitive=0, pairs_helpful=32, preference_pairs="refusal")
LP5_RAW = derived(LP5, "lp5-raw", preference_pairs="all")
# lp6: lp5 with as many AlpacaEval contrast pairs as safety pairs (lp5 refused 90% of the AlpacaEval probes)
LP6 = derived(LP5, "lp6", pairs_helpful=112)
# lp7: lp6 with contrast pairs that reject the safety pairs' own refusal (lp6 answered 63% of the AlpacaEval probes
# with exactly "I cannot fulfill your request.", the refusal its safety pairs prefer and no contrast pair rejects)
LP7 = derived(LP6, "lp7", contrast_refusals="matched")
# lp8: lp7 without the chosen NLL (lp7 refused nothing: HS 100; most of the NLL term's tokens are the long
# AlpacaEval answers, while plain DPO weighs each pair alike)
LP8 = derived(LP7, "lp8", chosen_nll=0.0)

# The recipes studied on the default profile (benchmarks/results/recipe-probe/FINDINGS.md, reports/alignment.md)
# and on the paper's data. r5 is params.yaml's recipe (tests/test_recipes.py checks `Recipe("default")` against
# it), lp5 profiles/local-paper.yaml's.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    R0, R1, derived(R1, "r2", pref_epochs=3, precompute_ref=True), R3,
    derived(R1, "r4", pairs_safety=128, pairs_sensitive=0, pairs_helpful=0, precompute_ref=True),
    R3_E3, R3_E3_OP, R3_E3_OP_NLL, R5, LP0, LP5, LP5_RAW, LP6, LP7, LP8,
)}


def with_overrides(recipe: Recipe, name: str | None = None, **changes) -> Recipe:
    """A copy of `recipe` with some fields changed (the CLI's one-lever variations)."""
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Recipe)})
    if unknown:
        raise NlsrError(f"recipe override {unknown[0]}: unknown (expected a Recipe field)")
    return dataclasses.replace(recipe, name=name or recipe.name, **changes)


def recipe_sizes(recipe: Recipe, base: SizesConfig | None = None) -> SizesConfig:
    """The data.sizes that make prepare-data build `recipe`'s rows: `base` (a profile's sizes; default the
    pipeline's) with the align split's sizes replaced by the recipe's."""
    # the sources need >= 1 of each; recipe_rows drops rows beyond the recipe's counts.
    return dataclasses.replace(base or SizesConfig(), sft_refusal=max(recipe.sft_refusal, 1),
                               sft_benign=max(recipe.sft_benign, 1), preference=max(recipe.pairs_safety, 1),
                               contrast_sensitive=recipe.pairs_sensitive, contrast_helpful=recipe.pairs_helpful)


def recipe_rows(recipe: Recipe, spec=None) -> tuple[list[dict], list[dict]]:
    """(sft rows, preference rows) of `recipe` on the data of `spec` (a DataSpec; default the synthetic suite):
    the rows `nlsr prepare-data` writes to data/prepared/align/ for that spec with the recipe's sizes and pairs."""
    from nlsr_core.data import DataSpec
    from nlsr_core.data.sources import build_suite

    recipe.check()
    spec = spec or DataSpec()
    suite = build_suite(dataclasses.replace(spec, sizes=recipe_sizes(recipe, spec.sizes),
                                            preference_pairs=recipe.preference_pairs,
                                            contrast_refusals=recipe.contrast_refusals))
    wanted, sft = {"refusal": recipe.sft_refusal, "benign": recipe.sft_benign}, []
    for row in suite.sft:  # the suite's order, so these are data/prepared/align/sft.jsonl's rows for these sizes
        if wanted[row["kind"]]:
            wanted[row["kind"]] -= 1
            sft.append(row)
    pref, kept = [], 0
    for row in suite.preference:  # safety pairs beyond the recipe's count are dropped, contrast pairs kept
        if row.get("kind", "safety") == "safety":
            if kept == recipe.pairs_safety:
                continue
            kept, row = kept + 1, {**row, "kind": "safety"}
        pref.append(row)
    return sft, pref


def eval_prompts(data_dir: Path, tasks: Iterable[str] = ("sst2",)) -> dict[str, set[str]]:
    """Prompts of every evaluation and calibration file of a prepared data directory (files that exist)."""
    from nlsr_core.io.fileio import read_jsonl

    files = ["eval/harmful.jsonl", "eval/benign.jsonl", "calib/harmful.jsonl"]
    for task in tasks:
        files += [f"tasks/{task}/test.jsonl", f"tasks/{task}/calib.jsonl"]
    out = {}
    for rel in files:
        path = Path(data_dir) / rel
        if path.is_file():
            out[rel] = {r["prompt"] for r in read_jsonl(path)}
    return out


def check_disjoint(rows: Iterable[dict], held_out: dict[str, set[str]], what: str) -> int:
    """NlsrError naming the first training prompt found in a held-out split; returns the number checked."""
    n = 0
    for row in rows:
        n += 1
        for split, prompts in held_out.items():
            if row["prompt"] in prompts:
                raise NlsrError(f"{what}: prompt {row['prompt']!r} is also in held-out split {split}")
    return n
