"""Alignment recipes: which rows train W0 (SFT) and Wa (preference), how many, and with which settings.

NLSR can only restore safety that lives in Wa. A recipe therefore makes W0 *weak* (few refusal rows, many benign
helpful rows, few steps: M' = M + W0 is only partly safe) and Wa *strong but discriminating*: safety pairs
(chosen = refusal, rejected = compliance on a harmful prompt) next to **contrast pairs** on benign prompts
(chosen = the helpful answer, rejected = a refusal), so that "prefer refusals" does not become "refuse
everything".

    Recipe                      the numbers (rows, epochs, lr, beta, max length, steps) of one profile
    recipes() / find_recipe     the studied recipes: params overlays recipes/<name>.yaml (`load_recipe`)
    recipe_sizes(recipe, base)  the data.sizes that build its rows (contrast pairs: nlsr_core/data/contrast.py)
    recipe_rows(recipe, spec)   (sft rows, preference rows) of a data source with those sizes
    check_disjoint(rows, eval)  every training prompt is absent from every evaluation / calibration split
"""
from __future__ import annotations

import dataclasses
import functools
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
    sft_refusals: str = DataConfig.sft_refusals  # safety-file | preference-chosen (W0's refusal rows)
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

    @classmethod
    def from_params(cls, name: str, params) -> Recipe:
        """The recipe a params file describes (nlsr_core.params.Params: data.sizes, data.*, align.*), so a recipe
        is a params overlay (recipes/<name>.yaml) and params.yaml's own recipe is `from_params("default", ...)`."""
        values = {}
        for field_name, key in PARAMS_OF.items():
            section, *path = key.split(".")
            value = params.sections[section]
            for part in path:
                value = getattr(value, part)
            values[field_name] = value
        return cls(name, **values)


# Recipe field -> the params key it reads (both training phases share align.lr; sft/pref_max_steps have none)
PARAMS_OF = {
    "sft_refusal": "data.sizes.sft_refusal", "sft_benign": "data.sizes.sft_benign", "sft_lr": "align.lr",
    "sft_epochs": "align.epochs", "pairs_safety": "data.sizes.preference",
    "pairs_sensitive": "data.sizes.contrast_sensitive", "pairs_helpful": "data.sizes.contrast_helpful",
    "preference_pairs": "data.preference_pairs", "contrast_refusals": "data.contrast_refusals",
    "sft_refusals": "data.sft_refusals", "pref_lr": "align.lr",
    "pref_epochs": "align.pref_epochs", "beta": "align.beta", "max_length": "align.max_length",
    "batch_size": "align.batch_size", "precompute_ref": "align.precompute_ref", "chosen_nll": "align.chosen_nll",
    "on_policy_tokens": "align.on_policy_tokens", "seed": "align.seed",
}


# The studied recipes are params overlays, one file each (recipes/<name>.yaml; benchmarks/results/recipe-probe/
# FINDINGS.md, reports/alignment.md, reports/local-paper/alignment.md). r5 is params.yaml's recipe, lp6
# profiles/local-paper.yaml's (tests/test_recipes.py checks both).
RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def load_recipe(path: Path | str) -> Recipe:
    """The recipe of one overlay file: its keys over the params defaults, checked like a params file
    (nlsr_core.params.load_params: unknown keys and out-of-range values are one-line errors); named by the file."""
    from nlsr_core.params import load_params

    path = Path(path)
    recipe = Recipe.from_params(path.stem, load_params(path))
    try:
        recipe.check()
    except NlsrError as exc:
        raise NlsrError(f"{path}: {exc}") from None
    return recipe


def recipes(folder: Path | str | None = None) -> dict[str, Recipe]:
    """name -> Recipe of every <name>.yaml in `folder` (default recipes/), sorted by name; one dict per folder for
    the whole process, so a caller may add to it."""
    return _recipes(Path(folder or RECIPES_DIR).resolve())


@functools.cache
def _recipes(folder: Path) -> dict[str, Recipe]:
    return {p.stem: load_recipe(p) for p in sorted(folder.glob("*.yaml"), key=lambda p: p.stem)}


def find_recipe(name_or_path: str, folder: Path | str | None = None) -> Recipe:
    """A recipe by name (`folder`/<name>.yaml) or by the path of an overlay file."""
    known = recipes(folder)
    if name_or_path in known:
        return known[name_or_path]
    if name_or_path.endswith((".yaml", ".yml")):
        return load_recipe(name_or_path)
    raise NlsrError(f"recipe '{name_or_path}': unknown; expected one of {', '.join(known)} or an overlay .yaml file")


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
                                            contrast_refusals=recipe.contrast_refusals,
                                            sft_refusals=recipe.sft_refusals))
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
    """Prompts of every evaluation and calibration file of a prepared data directory (files that exist), the
    judge-free score's held-out pairs included."""
    from nlsr_core.data.prepare import HELDOUT_PAIRS
    from nlsr_core.io.fileio import read_jsonl

    files = ["eval/harmful.jsonl", "eval/benign.jsonl", "calib/harmful.jsonl", HELDOUT_PAIRS]
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
