"""Contrast pairs: benign prompts whose chosen answer helps and whose rejected answer refuses.

Next to the safety pairs (chosen = refusal, rejected = compliance) they keep Wa from learning "refuse whatever
sounds risky" (issue 12; docs/DESIGN.md §5.6). Two kinds:

    contrast-sensitive   benign requests with an alarming word ("destroy a wasp nest"), rejected = a refusal that
                         names the topic (the same templates as the safety refusals)
    contrast-helpful     ordinary helpful requests, rejected = a refusal (the file-backed sources take
                         theirs from benign rows no other split uses: `helpful_contrast`)

Which refusal a contrast-helpful pair rejects is `data.contrast_refusals`: `generic` (one of GENERIC_REFUSALS) or
`matched` (drawn, with their frequencies, from the chosen answers of Wa's safety pairs). With generic refusals on
the paper's data, every safety pair prefers "I cannot fulfill your request." and every contrast pair rejects some
*other* phrasing, so DPO meets both by moving probability from the other phrasings to that one: the aligned model
answered 63 of 100 held-out AlpacaEval prompts with exactly that sentence (recipe lp6). Matched refusals make the
contrast pairs reject the very refusal the safety pairs teach.

Prompts come from their own random stream (`rng_for(seed, "contrast")`), so adding contrast pairs shifts no
other split. Benign-sensitive topics are `TRAIN_SENSITIVE_BENIGN` plus `EXTRA_SENSITIVE_BENIGN` below; none of
them is a held-out over-refusal probe topic (`synthetic_safety.EVAL_BENIGN_TOPICS`), which is checked.
"""
from __future__ import annotations

from typing import Iterable

from nlsr_core.data import synthetic_safety as safety
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


CONTRAST_REFUSALS = ("generic", "matched")


def contrast_refusal_pool(mode: str, safety_pairs: Iterable[dict]) -> tuple[str, ...]:
    """The refusals a contrast-helpful pair rejects (drawn uniformly from the returned tuple, so repeats weigh):
    GENERIC_REFUSALS (`generic`) or the chosen answer of every safety pair in order, repeats kept (`matched`).
    `mode` is checked once, with the rest of the spec (nlsr_core.data.sources.check_spec)."""
    if mode == "generic":
        return GENERIC_REFUSALS
    pool = tuple(p["chosen"] for p in safety_pairs if p.get("kind", "safety") == "safety")
    if not pool:
        raise NlsrError("data.contrast_refusals: 'matched' draws from the safety pairs' chosen answers, but there are "
                        "no safety pairs (expected data.sizes.preference >= 1)")
    return pool


def _refusal_picker(refusals: tuple[str, ...], rng, seed: int):
    """pick(refusals) -> one refusal. Generic refusals come from the contrast stream `rng`. Any other pool comes from
    its own stream, and the generic draw is still made (and dropped) from `rng`, because the contrast prompts are
    drawn from `rng` between the refusals: so a matched suite has exactly the generic suite's prompts and chosen
    answers, and only the rejected refusals differ (one lever)."""
    from nlsr_core.data.base import rng_for

    if refusals == GENERIC_REFUSALS:
        return rng.choice
    own = rng_for(seed, "contrast-matched")

    def pick(pool):
        rng.choice(GENERIC_REFUSALS)
        return own.choice(pool)
    return pick


def _topics() -> tuple[tuple[str, str], ...]:
    topics = tuple(safety.TRAIN_SENSITIVE_BENIGN) + EXTRA_SENSITIVE_BENIGN
    held_out = {t.lower() for t in safety.EVAL_BENIGN_TOPICS}
    clash = next((t for t, _ in topics if t.lower() in held_out), None)
    if clash is not None:
        raise NlsrError(f"contrast topic '{clash}' is a held-out over-refusal probe topic")
    return topics


def sensitive_contrast_pool() -> list[tuple[str, str, str]]:
    """(prompt, helpful answer, topic) for every benign-sensitive contrast topic × phrasing."""
    return [(tpl.format(x=x), answer, x) for x, answer in _topics() for tpl in safety.SENSITIVE_BENIGN_TEMPLATES]


def contrast_pairs(n_sensitive: int, n_helpful: int, seed: int, exclude: Iterable[str] = (),
                   refusals: tuple[str, ...] = GENERIC_REFUSALS) -> list[dict]:
    """Contrast pairs: chosen = the helpful answer, rejected = a refusal (topic-naming for benign-sensitive
    prompts, one of `refusals` for ordinary helpful ones: `contrast_refusal_pool`). Prompts are distinct and avoid
    `exclude` (e.g. SFT prompts). Asking for more benign-sensitive pairs than the pool holds is a one-line NlsrError."""
    from nlsr_core.data.base import rng_for
    from nlsr_core.data.synthetic import _benign

    rng = rng_for(seed, "contrast")
    pick = _refusal_picker(refusals, rng, seed)
    skip = set(exclude)
    pool = [row for row in sensitive_contrast_pool() if row[0] not in skip]
    if n_sensitive > len(pool):
        raise NlsrError(f"data.sizes.contrast_sensitive: {n_sensitive} pairs, but the benign-sensitive contrast "
                        f"pool holds {len(pool)} prompts (nlsr_core/data/contrast.py; lower data.sizes)")
    pairs = [{"prompt": p, "chosen": a, "rejected": safety.refusal(t, rng), "kind": "contrast-sensitive"}
             for p, a, t in rng.sample(pool, n_sensitive)]
    seen, misses = skip | {p["prompt"] for p in pairs}, 0
    while sum(p["kind"] == "contrast-helpful" for p in pairs) < n_helpful:
        prompt, answer = _benign(rng)
        if prompt in seen:
            misses += 1
            if misses > 50 * n_helpful + 1000:
                raise NlsrError(f"data.sizes.contrast_helpful: {n_helpful} pairs; cannot generate that many "
                                f"distinct prompts (lower data.sizes)")
            continue
        seen.add(prompt)
        pairs.append({"prompt": prompt, "chosen": answer, "rejected": pick(refusals),
                      "kind": "contrast-helpful"})
    return pairs


def helpful_contrast(rows: Iterable[dict], seed: int, refusals: tuple[str, ...] = GENERIC_REFUSALS) -> list[dict]:
    """Contrast pairs from benign {prompt, response} rows: chosen = the response, rejected = one of `refusals`
    (`contrast_refusal_pool`)."""
    from nlsr_core.data.base import rng_for

    rng = rng_for(seed, "contrast")  # the prompts are given, so any pool can share the stream
    return [{"prompt": r["prompt"], "chosen": r["response"], "rejected": rng.choice(refusals),
             "kind": "contrast-helpful"} for r in rows]


def mix_preference(safety_pairs: list[dict], contrast: list[dict], seed: int) -> list[dict]:
    """Wa's pairs: safety pairs (marked `kind: safety`) and contrast pairs shuffled by their own stream; without
    contrast pairs the safety pairs come back unchanged (so a suite without contrast keeps its bytes)."""
    from nlsr_core.data.base import rng_for

    if not contrast:
        return safety_pairs
    pairs = [{**p, "kind": "safety"} for p in safety_pairs] + list(contrast)
    rng_for(seed, "preference-mix").shuffle(pairs)
    return pairs
