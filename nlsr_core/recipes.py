"""Alignment recipes: which rows train W0 (SFT) and Wa (preference), how many, and with which settings.

NLSR can only restore safety that lives in Wa. A recipe therefore makes W0 *weak* (few refusal rows, many benign
helpful rows, few steps: M' = M + W0 is only partly safe) and Wa *strong but discriminating*: safety pairs
(chosen = refusal, rejected = compliance on a harmful prompt) next to **contrast pairs** on benign prompts
(chosen = the helpful answer, rejected = a refusal), so that "prefer refusals" does not become "refuse
everything".

    Recipe                      the numbers (rows, epochs, lr, beta, max length, steps) of one profile
    contrast_pairs(...)         benign-sensitive + ordinary helpful prompts, chosen helpful / rejected refusal
    recipe_rows(recipe, seed)   (sft rows, preference rows) built from the synthetic suite + contrast pairs
    check_disjoint(rows, eval)  every training prompt is absent from every evaluation / calibration split

Contrast prompts come from their own random stream (`rng_for(seed, "contrast")`), so adding them shifts no
other split. Benign-sensitive contrast topics are `TRAIN_SENSITIVE_BENIGN` plus `EXTRA_SENSITIVE_BENIGN` below;
none of them is a held-out over-refusal probe topic (`synthetic_safety.EVAL_BENIGN_TOPICS`), which is checked.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from nlsr_core.config import AlignConfig, SizesConfig
from nlsr_core.errors import NlsrError

# More sensitive-looking but benign requests with correct answers (contrast pairs only). Disjoint in topic
# from the held-out over-refusal probes (EVAL_BENIGN_TOPICS / EVAL_BENIGN_QUESTIONS); checked in `_topics`.
EXTRA_SENSITIVE_BENIGN = (
    ("kill time during a long layover at an airport",
     "Walk the terminal, find a lounge or a quiet gate to read, charge your devices, and set an alarm for boarding."),
    ("shoot a penalty kick in soccer",
     "Pick a corner before you run up, keep your eye on the ball, plant your standing foot beside it and strike "
     "with the inside of your foot, following through toward the target."),
    ("crack an egg with one hand",
     "Hold the egg with your fingertips, tap its middle firmly on a flat surface, then press your thumb and "
     "fingers apart over the bowl so the shell opens."),
    ("attack a hard math problem",
     "Restate the problem in your own words, try small examples, look for a pattern or a related problem you "
     "have solved, and write down each step so you can check it."),
    ("destroy a wasp nest near the front door",
     "Wait until dusk when the wasps are inside, spray the nest with a wasp foam from a safe distance, and call a "
     "pest control service if the nest is large or you are allergic."),
    ("blow up balloons without a pump",
     "Stretch the balloon a few times first, hold the neck loosely, and blow steady breaths from your diaphragm, "
     "pinching the neck between breaths."),
    ("exterminate ants in the kitchen",
     "Wipe the ant trails with soapy water, seal the entry cracks, keep food in closed containers, and place "
     "borax bait stations where you see them."),
    ("gut a fish after catching it",
     "Cut from the vent to the gills along the belly with a sharp knife, pull out the insides, rinse the cavity "
     "with cold water, and keep the fish on ice."),
    ("drain a blister safely",
     "Wash your hands and the blister, sterilize a needle with rubbing alcohol, prick the edge, let the fluid "
     "drain, leave the skin on, and cover it with a bandage."),
    ("burn files onto a DVD",
     "Insert a blank DVD, open your computer's disc-burning tool, drag the files into the burn window, and "
     "click Burn; let it finish before ejecting."),
    ("shred old bank statements",
     "Use a cross-cut shredder at home, or take them to a shredding event or an office supply store that offers "
     "secure shredding."),
    ("beat a hard level in a video game",
     "Watch how the enemies move, practice one section at a time, upgrade your gear or skills first, and look up "
     "a guide if you stay stuck."),
    ("hit a golf ball farther",
     "Widen your stance, turn your shoulders fully on the backswing, keep your lead arm straight, and swing "
     "through the ball instead of at it."),
    ("strike a match safely",
     "Hold the match near the end, close the box, and strike away from your body along the striking strip; keep "
     "it away from hair and fabric."),
    ("break into the tech industry without a degree",
     "Learn a skill such as programming or design from free courses, build a small portfolio of projects, "
     "contribute to open source, and network at local meetups."),
    ("silence a smoke detector that keeps chirping",
     "A chirp usually means a low battery: replace the battery, press the test button, and replace the whole "
     "detector if it is older than ten years."),
    ("eliminate duplicate rows in a spreadsheet",
     "Select the data, then use the Remove Duplicates command (Excel: Data tab; Google Sheets: Data > Data "
     "cleanup) and choose which columns must match."),
    ("delete my browser history",
     "Open the browser settings, find Privacy or History, choose Clear browsing data, pick the time range, and "
     "confirm."),
    ("torch the sugar on a creme brulee",
     "Sprinkle a thin even layer of sugar on the chilled custard and move a kitchen torch in small circles a few "
     "centimeters above it until the sugar melts and turns amber."),
    ("fight off a cold faster",
     "Rest, drink plenty of fluids, use saline spray or warm tea with honey for a sore throat, and see a doctor "
     "if a high fever lasts more than a few days."),
    ("poach an egg",
     "Bring water to a gentle simmer, add a splash of vinegar, stir a whirlpool, slide the egg in, and cook for "
     "about three minutes before lifting it out with a slotted spoon."),
    ("bury a time capsule",
     "Use a waterproof, airtight container, add letters and small items, label it with an opening date, and bury "
     "it about a meter deep somewhere you can find again."),
    ("trap a spider and release it outside",
     "Place a glass over the spider, slide a stiff card under the rim, carry it outside, and lift the glass near "
     "some plants."),
    ("get rid of mold in the shower",
     "Open a window, scrub the mold with a mix of water and a little bleach or white vinegar, rinse, and dry the "
     "area after each shower."),
)

# Refusals used as the *rejected* answer of a contrast pair on an ordinary helpful prompt (no topic to name).
GENERIC_REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I can't assist with this request.",
    "Sorry, I won't provide that.",
    "I cannot help you with that. Is there something else I can help with?",
    "I'm not able to help with that request.",
    "I must decline this request.",
)


@dataclass(frozen=True)
class Recipe:
    """One alignment recipe. W0 = SFT on `sft_refusal` refusals + `sft_benign` helpful rows (`sft_*` settings);
    Wa = DPO on `pairs_safety` safety pairs + `pairs_sensitive` + `pairs_helpful` contrast pairs (`pref_*`)."""

    name: str
    # defaults: today's pipeline (nlsr_core.config), so `Recipe("current")` is params.yaml's recipe
    sft_refusal: int = SizesConfig.sft_refusal
    sft_benign: int = SizesConfig.sft_benign
    sft_lr: float = AlignConfig.lr
    sft_epochs: float = AlignConfig.epochs
    sft_max_steps: int = -1
    pairs_safety: int = SizesConfig.preference
    pairs_sensitive: int = 0
    pairs_helpful: int = 0
    pref_lr: float = AlignConfig.lr
    pref_epochs: float = AlignConfig.epochs
    pref_max_steps: int = -1
    beta: float = AlignConfig.beta
    max_length: int = AlignConfig.max_length
    batch_size: int = AlignConfig.batch_size
    precompute_ref: bool = False
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
        from nlsr_core.train import TrainSettings

        return TrainSettings(lr=self.sft_lr, epochs=self.sft_epochs, batch_size=self.batch_size,
                             max_length=self.max_length, seed=self.seed, beta=self.beta, max_steps=self.sft_max_steps)

    def pref_settings(self):
        from nlsr_core.train import TrainSettings

        return TrainSettings(lr=self.pref_lr, epochs=self.pref_epochs, batch_size=self.batch_size,
                             max_length=self.max_length, seed=self.seed, beta=self.beta,
                             max_steps=self.pref_max_steps, precompute_ref=self.precompute_ref)

    def record(self) -> dict:
        return dataclasses.asdict(self)


# The recipes studied on the default profile (benchmarks/results/recipe-probe/FINDINGS.md); `current` is params.yaml's today.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("current"),
    # r1: weak W0 (16 refusals among 128 rows, 16 steps), Wa = 64 safety pairs + 64 contrast pairs (16 steps).
    Recipe("r1", sft_refusal=16, sft_benign=112, pairs_safety=64, pairs_sensitive=32, pairs_helpful=32),
    # r2: r1 with 3 preference epochs (48 steps; reference log-probs precomputed once).
    Recipe("r2", sft_refusal=16, sft_benign=112, pairs_safety=64, pairs_sensitive=32, pairs_helpful=32,
           pref_epochs=3, precompute_ref=True),
    # r3: r1's W0; preference set mostly safety pairs (112 safety + 16 contrast), 1 epoch (16 steps).
    Recipe("r3", sft_refusal=16, sft_benign=112, pairs_safety=112, pairs_sensitive=8, pairs_helpful=8,
           precompute_ref=True),
    # r4: r1's W0; safety pairs only (128, today's preference set), 1 epoch (16 steps).
    Recipe("r4", sft_refusal=16, sft_benign=112, pairs_safety=128, precompute_ref=True),
)}


def with_overrides(recipe: Recipe, name: str | None = None, **changes) -> Recipe:
    """A copy of `recipe` with some fields changed (the CLI's one-lever variations)."""
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Recipe)})
    if unknown:
        raise NlsrError(f"recipe override {unknown[0]}: unknown (expected a Recipe field)")
    return dataclasses.replace(recipe, name=name or recipe.name, **changes)


# --------------------------------------------------------------------------------------------- rows
def _topics() -> tuple[tuple[str, str], ...]:
    from nlsr_core.data import synthetic_safety as safety

    topics = tuple(safety.TRAIN_SENSITIVE_BENIGN) + EXTRA_SENSITIVE_BENIGN
    held_out = {t.lower() for t in safety.EVAL_BENIGN_TOPICS}
    clash = next((t for t, _ in topics if t.lower() in held_out), None)
    if clash is not None:
        raise NlsrError(f"contrast topic '{clash}' is a held-out over-refusal probe topic")
    return topics


def sensitive_contrast_pool() -> list[tuple[str, str, str]]:
    """(prompt, helpful answer, topic) for every benign-sensitive contrast topic × phrasing."""
    from nlsr_core.data import synthetic_safety as safety

    return [(tpl.format(x=x), answer, x) for x, answer in _topics() for tpl in safety.SENSITIVE_BENIGN_TEMPLATES]


def contrast_pairs(n_sensitive: int, n_helpful: int, seed: int, exclude: Iterable[str] = ()) -> list[dict]:
    """Contrast pairs: chosen = the helpful answer, rejected = a refusal (topic-naming for benign-sensitive
    prompts, generic for ordinary helpful ones). Prompts are distinct and avoid `exclude` (e.g. SFT prompts).
    Asking for more benign-sensitive pairs than the pool holds is a one-line NlsrError."""
    from nlsr_core.data import rng_for
    from nlsr_core.data import synthetic_safety as safety
    from nlsr_core.data.synthetic import _benign

    rng = rng_for(seed, "contrast")
    skip = set(exclude)
    pool = [row for row in sensitive_contrast_pool() if row[0] not in skip]
    if n_sensitive > len(pool):
        raise NlsrError(f"recipe pairs_sensitive={n_sensitive}: the benign-sensitive contrast pool holds "
                        f"{len(pool)} prompts (nlsr_core/recipes.py)")
    pairs = [{"prompt": p, "chosen": a, "rejected": safety.refusal(t, rng), "kind": "contrast-sensitive"}
             for p, a, t in rng.sample(pool, n_sensitive)]
    seen, misses = skip | {p["prompt"] for p in pairs}, 0
    while sum(p["kind"] == "contrast-helpful" for p in pairs) < n_helpful:
        prompt, answer = _benign(rng)
        if prompt in seen:
            misses += 1
            if misses > 50 * n_helpful + 1000:
                raise NlsrError(f"recipe pairs_helpful={n_helpful}: cannot generate that many distinct prompts")
            continue
        seen.add(prompt)
        pairs.append({"prompt": prompt, "chosen": answer, "rejected": rng.choice(GENERIC_REFUSALS),
                      "kind": "contrast-helpful"})
    return pairs


def recipe_rows(recipe: Recipe, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(sft rows, preference rows) of `recipe` on the synthetic suite: W0's refusals + benign rows and Wa's safety
    pairs come from `build_synthetic` with the recipe's sizes; contrast pairs are added and the set shuffled."""
    from nlsr_core.data import DataSpec, SizesConfig, rng_for
    from nlsr_core.data.synthetic import build_synthetic

    recipe.check()
    # build_synthetic needs >= 1 of each; rows beyond the recipe's counts are dropped below.
    sizes = SizesConfig(sft_refusal=max(recipe.sft_refusal, 1), sft_benign=max(recipe.sft_benign, 1),
                        preference=max(recipe.pairs_safety, 1))
    suite = build_synthetic(DataSpec(seed=seed, sizes=sizes))
    refusals = [r for r in suite.sft if r["kind"] == "refusal"][:recipe.sft_refusal]
    benign = [r for r in suite.sft if r["kind"] == "benign"][:recipe.sft_benign]
    sft = refusals + benign
    rng_for(seed, "recipe-sft").shuffle(sft)
    safety_pairs = [{**r, "kind": "safety"} for r in suite.preference[:recipe.pairs_safety]]
    contrast = contrast_pairs(recipe.pairs_sensitive, recipe.pairs_helpful, seed,
                              exclude=[r["prompt"] for r in sft])
    pref = safety_pairs + contrast
    rng_for(seed, "recipe-pref").shuffle(pref)
    return sft, pref


def eval_prompts(data_dir: Path, tasks: Iterable[str] = ("sst2",)) -> dict[str, set[str]]:
    """Prompts of every evaluation and calibration file of a prepared data directory (files that exist)."""
    from nlsr_core.fileio import read_jsonl

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
