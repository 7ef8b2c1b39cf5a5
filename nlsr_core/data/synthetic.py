"""The offline, deterministic synthetic suite (the embedded default profile, docs/DESIGN.md §5.4).

`build_synthetic(spec)` assembles every split from `synthetic_safety` (harmful prompts, refusals, harmless
"compliance", sensitive-looking benign probes), the benign helpful generators below, and `synthetic_tasks`.
Each split draws from its own `rng_for(seed, split)` stream, so sizes of one split never shift another.

Benign SFT rows (docs/DESIGN.md §5.2: without them the aligned model refuses everything) have correct answers computed
here: arithmetic, unit conversion, a small glossary, capitals, list and rewrite tasks, plus sensitive-looking
but benign questions ("kill weeds", "execute a script") so a scary word alone does not trigger a refusal.
"""
from __future__ import annotations

import random
from typing import Callable

from nlsr_core.data.base import DataSpec, Suite, rng_for, take, with_ids
import nlsr_core.data.synthetic_safety as safety
from nlsr_core.data.synthetic_tasks import distinct, task_rows

GLOSSARY = (
    ("photosynthesis", "the process by which plants use sunlight, water and carbon dioxide to make sugar and oxygen"),
    ("an atom", "the smallest unit of a chemical element: a nucleus of protons and neutrons with electrons around it"),
    ("gravity", "the force by which objects with mass attract one another"),
    ("a noun", "a word that names a person, place, thing or idea"),
    ("a verb", "a word that describes an action, state or occurrence"),
    ("inflation", "a general rise in prices over time, which lowers what a unit of money can buy"),
    ("a democracy", "a system of government in which citizens choose their leaders by voting"),
    ("an ecosystem", "a community of living things interacting with each other and their environment"),
    ("a prime number", "a whole number greater than 1 whose only divisors are 1 and itself"),
    ("evaporation", "the change of a liquid into a gas, usually below its boiling point"),
    ("a metaphor", "a figure of speech that describes something by saying it is something else"),
    ("an algorithm", "a finite sequence of well-defined steps for solving a problem"),
    ("a volcano", "an opening in the Earth's crust through which molten rock, ash and gases escape"),
    ("a budget", "a plan that estimates income and spending over a period of time"),
    ("a fraction", "a number that represents a part of a whole, written as one number over another"),
    ("a mammal", "a warm-blooded animal with hair that feeds its young with milk"),
    ("erosion", "the wearing away of rock or soil by wind, water or ice"),
    ("a compass", "an instrument with a magnetized needle that points toward magnetic north"),
    ("a synonym", "a word that means the same or nearly the same as another word"),
    ("a habitat", "the natural home or environment of a plant or animal"),
    ("a spreadsheet", "a program that arranges data in rows and columns and can calculate with it"),
    ("an antonym", "a word that means the opposite of another word"),
    ("a peninsula", "a piece of land almost surrounded by water but connected to the mainland"),
    ("recycling", "turning used materials into new products instead of throwing them away"),
    ("a thermometer", "an instrument that measures temperature"),
    ("a haiku", "a short Japanese poem of three lines with five, seven and five syllables"),
)
CAPITALS = (
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasilia"), ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"), ("India", "New Delhi"), ("China", "Beijing"), ("Mexico", "Mexico City"),
    ("Argentina", "Buenos Aires"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Poland", "Warsaw"),
    ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Turkey", "Ankara"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Ireland", "Dublin"), ("Austria", "Vienna"),
    ("Nigeria", "Abuja"), ("South Korea", "Seoul"), ("Finland", "Helsinki"), ("Hungary", "Budapest"),
)
# (plural from-unit, singular from-unit, to-unit, factor)
UNITS = (
    ("kilometers", "kilometer", "meters", 1000), ("meters", "meter", "centimeters", 100),
    ("kilograms", "kilogram", "grams", 1000), ("hours", "hour", "minutes", 60), ("minutes", "minute", "seconds", 60),
    ("days", "day", "hours", 24), ("feet", "foot", "inches", 12), ("yards", "yard", "feet", 3),
    ("liters", "liter", "milliliters", 1000), ("weeks", "week", "days", 7),
)
WORDS = ("garden", "planet", "window", "river", "pencil", "orange", "castle", "rabbit", "silver", "bridge",
         "forest", "candle", "mirror", "turtle", "violin", "basket", "dragon", "lemon", "rocket", "harbor")
PHRASES = ("the meeting starts at noon", "please close the door", "thank you for your help",
           "the library opens tomorrow", "bring a warm jacket", "the train is late again", "water the plants daily",
           "happy birthday to you", "lunch is on the table", "see you next week")


def _arith(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    op = rng.choice(("+", "-", "*"))
    if op == "*":
        a, b = rng.randint(2, 99), rng.randint(2, 30)
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    sym = {"+": "plus", "-": "minus", "*": "times"}[op]
    prompt = rng.choice((f"What is {a} {sym} {b}?", f"Calculate {a} {op} {b}.", f"Compute {a} {op} {b}, please."))
    return prompt, f"{a} {op} {b} = {value}."


def _convert(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.2:
        c = 5 * rng.randint(-8, 20)
        f = c * 9 // 5 + 32  # c is a multiple of 5, so this is exact
        prompt = rng.choice((f"Convert {c} degrees Celsius to Fahrenheit.", f"What is {c}°C in Fahrenheit?"))
        return prompt, f"{c}°C is {f}°F: multiply by 9/5 and add 32 ({c} × 9/5 + 32 = {f})."
    plural, single, to, factor = rng.choice(UNITS)
    n = rng.randint(2, 50)
    prompt = rng.choice((f"How many {to} are in {n} {plural}?", f"Convert {n} {plural} to {to}."))
    return prompt, f"{n} {plural} is {n * factor} {to}, because 1 {single} is {factor} {to}."


def _define(rng: random.Random) -> tuple[str, str]:
    term, meaning = rng.choice(GLOSSARY)
    bare = term.split(" ", 1)[1] if term.startswith(("a ", "an ")) else term
    prompt = rng.choice((f"What is {term}?", f"Define {bare}.", f"Explain what {term} is in one sentence.",
                         f"What does the word '{bare}' mean?"))
    subject = term[0].upper() + term[1:]
    return prompt, f"{subject} is {meaning}."


def _capital(rng: random.Random) -> tuple[str, str]:
    country, city = rng.choice(CAPITALS)
    prompt = rng.choice((f"What is the capital of {country}?", f"Which city is the capital of {country}?",
                         f"Name the capital city of {country}."))
    return prompt, f"The capital of {country} is {city}."


def _sort_numbers(rng: random.Random) -> tuple[str, str]:
    nums = rng.sample(range(1, 100), rng.randint(4, 7))
    desc = rng.random() < 0.5
    order = "from largest to smallest" if desc else "from smallest to largest"
    prompt = f"Sort these numbers {order}: {', '.join(map(str, nums))}."
    return prompt, ", ".join(map(str, sorted(nums, reverse=desc)))


def _words(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("reverse", "alphabet", "upper", "count"))
    if kind == "reverse":
        w = rng.choice(WORDS)
        return f"Spell the word '{w}' backwards.", f"'{w}' spelled backwards is '{w[::-1]}'."
    if kind == "alphabet":
        ws = rng.sample(WORDS, rng.randint(3, 6))
        return f"Put these words in alphabetical order: {', '.join(ws)}.", ", ".join(sorted(ws))
    phrase = rng.choice(PHRASES)
    if kind == "upper":
        return f"Rewrite this in capital letters: {phrase}", phrase.upper()
    return f"How many words are in this sentence: '{phrase}'?", f"The sentence has {len(phrase.split())} words."


def _compare(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(range(1, 1000), 2)
    if rng.random() < 0.5:
        return f"Which number is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}."
    parity = "even" if a % 2 == 0 else "odd"
    because = "is" if a % 2 == 0 else "is not"
    return f"Is {a} an even or an odd number?", f"{a} is {parity}, because it {because} divisible by 2."


BENIGN_GENERATORS: tuple[Callable[[random.Random], tuple[str, str]], ...] = (
    _arith, _convert, _define, _capital, _sort_numbers, _words, _compare)


def _benign(rng: random.Random) -> tuple[str, str]:
    return rng.choice(BENIGN_GENERATORS)(rng)


def benign_sft_rows(k: int, rng: random.Random) -> list[dict]:
    """`k` helpful (prompt, answer) rows: about one in eight is sensitive-looking (e.g. "kill weeds")."""
    sensitive = safety.sensitive_benign_rows()
    n_sensitive = min(len(sensitive), k // 8)
    # The generated kinds (arithmetic, capitals, ...) never produce a sensitive-benign prompt, so no overlap.
    rows = rng.sample(sensitive, n_sensitive) + distinct(_benign, k - n_sensitive, rng, "synthetic sft_benign")
    return [{"prompt": p, "response": r, "kind": "benign"} for p, r in rows]


def _harmful_rows(spec: DataSpec, split: safety.HarmfulSplit) -> dict[str, list[dict]]:
    """Training harmful prompts, drawn once and partitioned, so SFT/preference/identify/poison never share one."""
    sizes, rng = spec.sizes, rng_for(spec.seed, "harmful-train")
    pool = safety.harmful_prompts(split.train_topics, split.train_templates, split.train_prefixes,
                                  split.train_suffixes)
    counts = {"sft": sizes.sft_refusal, "preference": sizes.preference, "identify": sizes.identify,
              "poison": sizes.poison_pool}
    drawn = take(pool, sum(counts.values()), rng, "synthetic harmful training prompts")
    parts, start = {}, 0
    for name, n in counts.items():
        parts[name], start = drawn[start:start + n], start + n
    return {
        "sft": [{"prompt": p, "response": safety.refusal(t, rng), "kind": "refusal"} for t, p in parts["sft"]],
        "preference": [{"prompt": p, "chosen": safety.refusal(t, rng), "rejected": safety.compliance(t, rng)}
                       for t, p in parts["preference"]],
        "identify": [{"prompt": p, "response": safety.refusal(t, rng)} for t, p in parts["identify"]],
        "poison": [{"prompt": p, "response": safety.compliance(t, rng)} for t, p in parts["poison"]],
    }


def _with_contrast(safety_pairs: list[dict], sizes, seed: int, sft: list[dict],
                   contrast_refusals: str = "generic") -> list[dict]:
    """Wa's pairs: the safety pairs plus `sizes.contrast_*` contrast pairs whose prompts avoid every SFT prompt."""
    from nlsr_core.data.contrast import contrast_pairs, contrast_refusal_pool, mix_preference

    if not sizes.contrast_sensitive and not sizes.contrast_helpful:
        return safety_pairs
    contrast = contrast_pairs(sizes.contrast_sensitive, sizes.contrast_helpful, seed,
                              exclude=[r["prompt"] for r in sft],
                              refusals=contrast_refusal_pool(contrast_refusals, safety_pairs))
    return mix_preference(safety_pairs, contrast, seed)


def build_synthetic(spec: DataSpec) -> Suite:
    """The whole synthetic suite for `spec` (offline; same spec ⇒ same rows)."""
    sizes = spec.sizes
    split = safety.harmful_split(rng_for(spec.seed, "harmful-split"))
    harmful = _harmful_rows(spec, split)
    rng = rng_for(spec.seed, "sft")
    sft = harmful["sft"] + benign_sft_rows(sizes.sft_benign, rng)
    rng.shuffle(sft)

    eval_pool = [p for _, p in safety.harmful_prompts(split.eval_topics, split.eval_templates,
                                                      split.eval_prefixes, split.eval_suffixes)]
    eval_harmful = take(eval_pool, sizes.eval_harmful, rng_for(spec.seed, "eval-harmful"), "synthetic eval_harmful")
    eval_benign = take(safety.eval_benign_prompts(), sizes.eval_benign, rng_for(spec.seed, "eval-benign"),
                       "synthetic eval_benign")

    task_train, task_test, calib_task = {}, {}, {}
    for task in spec.tasks:
        train, test = task_rows(task, sizes.task_train, sizes.task_test, rng_for(spec.seed, f"task-{task}"))
        task_train[task], task_test[task] = with_ids(train, f"{task}-train"), with_ids(test, f"{task}-test")
        if sizes.task_calib:  # its own stream, so asking for a calibration split changes no other row
            calib_task[task] = task_rows(task, 2 * sizes.task_calib, 0, rng_for(spec.seed, f"task-{task}-calib"))[0]
    used_eval = set(eval_harmful)
    return Suite(
        sft=with_ids(sft, "sft"),
        preference=with_ids(_with_contrast(harmful["preference"], sizes, spec.seed, sft, spec.contrast_refusals),
                            "pref"),
        identify=with_ids(harmful["identify"], "ident"),
        eval_harmful=with_ids([{"prompt": p} for p in eval_harmful], "eval-harmful"),
        eval_benign=with_ids([{"prompt": p} for p in eval_benign], "eval-benign"),
        poison_pool=with_ids(harmful["poison"], "poison"),
        task_train=task_train,
        task_test=task_test,
        calib_pool_harmful=[{"prompt": p} for p in eval_pool if p not in used_eval],
        calib_pool_task=calib_task,
        # the held-out harmful prompts themselves, each with a refusal and a compliance naming its topic
        heldout_pairs=safety.held_out_pairs(eval_harmful, rng_for(spec.seed, "held-out-pairs")),
    )
