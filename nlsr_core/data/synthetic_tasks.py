"""Synthetic fine-tuning tasks in the paper's formats: SST-2 sentiment, AG News topics, GSM8K arithmetic.

Each generator maps a `random.Random` to one `(prompt, response, label)` example; `task_rows` draws distinct
prompts (train and test come from one pool of distinct prompts, so test ∩ train = ∅ by construction).
Prompts are written by each task's record (`nlsr_core.data.tasks.TASKS[task].prompt`: the paper's instruction and
the input), exactly as the local and hub sources write them.
"""
from __future__ import annotations

import random
from typing import Callable

from nlsr_core.data.base import DataError
from nlsr_core.data.tasks import GSM8K_ANSWER, TASKS

Example = tuple[str, str, str]  # (prompt, response, label)

# ---------------------------------------------------------------------------------------------------- SST-2
POSITIVE = ("charming", "moving", "delightful", "clever", "gripping", "funny", "beautiful", "heartfelt",
            "brilliant", "warm", "engaging", "inventive", "witty", "stunning", "tender", "thoughtful")
NEGATIVE = ("dull", "tedious", "clumsy", "boring", "lifeless", "predictable", "bland", "shallow", "confusing",
            "painful", "sloppy", "forgettable", "tiresome", "flat", "pointless", "irritating")
FILM_NOUNS = ("film", "movie", "script", "performance", "story", "cast", "dialogue", "direction", "soundtrack",
              "ending", "plot", "sequel", "comedy", "drama", "lead actor", "documentary", "screenplay")
ADVERBS = ("truly", "utterly", "surprisingly", "remarkably", "often", "consistently", "simply", "quite")
SST2_PATTERNS = (
    "the {n} is {adv} {a}", "a {a} and {a2} {n}", "i found the {n} {adv} {a}",
    "despite some {o} moments , the {n} is {a}", "what a {a} {n} ; {adv} {a2} from start to finish",
    "the {n2} is {a} and the {n} is {a2}", "{art} {adv} {a} {n} that never lets up", "{a} , {a2} and {adv} {a3}",
    "this {n} feels {a} , even when the {n2} is {o}",
)


def sst2_example(rng: random.Random) -> Example:
    label = rng.choice(("positive", "negative"))
    same, other = (POSITIVE, NEGATIVE) if label == "positive" else (NEGATIVE, POSITIVE)
    a, a2, a3 = rng.sample(same, 3)
    n, n2 = rng.sample(FILM_NOUNS, 2)
    adv = rng.choice(ADVERBS)
    sentence = rng.choice(SST2_PATTERNS).format(a=a, a2=a2, a3=a3, o=rng.choice(other), n=n, n2=n2, adv=adv,
                                                art="an" if adv[0] in "aeiou" else "a")
    return TASKS["sst2"].prompt(sentence), label, label


# -------------------------------------------------------------------------------------------------- AG News
COUNTRIES = ("France", "Brazil", "Japan", "Kenya", "India", "Canada", "Egypt", "Chile", "Norway", "Vietnam",
             "Mexico", "Poland", "Turkey", "Indonesia", "Argentina", "Nigeria")
TEAMS = ("Red Sox", "Yankees", "Lakers", "Celtics", "Arsenal", "Chelsea", "Real Madrid", "Bayern Munich",
         "Patriots", "Packers", "Maple Leafs", "Canucks")
COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella Holdings", "Stark Industries", "Wayne Enterprises",
             "Hooli", "Vandelay Imports", "Soylent Foods", "Cyberdyne Systems")
PRODUCTS = ("smartphone", "laptop", "search engine", "web browser", "chip", "operating system", "tablet",
            "satellite", "robot", "smartwatch")
AGNEWS_PATTERNS = {
    "World": (
        "{c} and {c2} sign trade agreement after months of talks",
        "Thousands rally in the capital of {c} as election nears",
        "UN envoy urges ceasefire in border dispute between {c} and {c2}",
        "Flooding in {c} forces {k} families from their homes",
        "{c} recalls ambassador from {c2} over spying row",
        "Leaders of {c} and {c2} meet to discuss regional security",
    ),
    "Sports": (
        "{t} beat {t2} {s}-{s2} to move into first place",
        "{t} sign veteran striker to a {y}-year deal",
        "Coach of the {t} fired after {y} straight losses",
        "Injury forces star of the {t} out for the season",
        "{t} rally late to stun {t2} in overtime",
        "{c} wins gold in the relay at the world championships",
    ),
    "Business": (
        "{m} shares rise {p} percent after strong quarterly profit",
        "{m} to cut {k} jobs as sales slump",
        "{m} agrees to buy {m2} for {y} billion dollars",
        "Oil prices climb as supply worries grow in {c}",
        "Central bank of {c} raises interest rates to curb inflation",
        "{m} shares fall {p} percent after profit warning",
    ),
    "Sci/Tech": (
        "{m} unveils a faster {d} with longer battery life",
        "Scientists discover a new species of frog in the forests of {c}",
        "Space probe sends back first close-up images of a distant moon",
        "New update for the {m} {d} fixes {y} security flaws",
        "Researchers in {c} build a {d} that runs on solar power",
        "{m} opens a research lab to study artificial intelligence",
    ),
}


def agnews_example(rng: random.Random) -> Example:
    label = rng.choice(list(AGNEWS_PATTERNS))
    c, c2 = rng.sample(COUNTRIES, 2)
    t, t2 = rng.sample(TEAMS, 2)
    m, m2 = rng.sample(COMPANIES, 2)
    s2 = rng.randint(0, 4)
    headline = rng.choice(AGNEWS_PATTERNS[label]).format(
        c=c, c2=c2, t=t, t2=t2, m=m, m2=m2, d=rng.choice(PRODUCTS), s=s2 + rng.randint(1, 4), s2=s2,
        y=rng.randint(2, 9), k=rng.randint(2, 90) * 100, p=rng.randint(2, 30))
    return TASKS["agnews"].prompt(headline), label, label


# ---------------------------------------------------------------------------------------------------- GSM8K
NAMES = (("Ava", "she"), ("Liam", "he"), ("Mia", "she"), ("Noah", "he"), ("Zoe", "she"), ("Omar", "he"),
         ("Lena", "she"), ("Ravi", "he"), ("Sofia", "she"), ("Kenji", "he"), ("Amara", "she"), ("Diego", "he"))
ITEMS = ("apples", "marbles", "stickers", "pencils", "cookies", "books", "stamps", "cards", "shells", "balloons")


Problem = tuple[str, list[str], int]  # (question, solution steps, answer)


def _gsm_buy_give(rng: random.Random, name: str, he: str) -> Problem:
    a, b = rng.randint(5, 60), rng.randint(2, 40)
    c = rng.randint(1, a + b - 1)
    item = rng.choice(ITEMS)
    q = (f"{name} has {a} {item}. {he.capitalize()} buys {b} more and then gives {c} to a friend. "
         f"How many {item} does {name} have now?")
    return q, [f"After buying, {name} has {a} + {b} = {a + b} {item}.",
               f"After giving {c} away, {he} has {a + b} - {c} = {a + b - c} {item}."], a + b - c


def _gsm_boxes(rng: random.Random, name: str, he: str) -> Problem:
    per, boxes = rng.randint(4, 24), rng.randint(2, 9)
    total = per * boxes
    used = rng.randint(1, total - 1)
    item = rng.choice(ITEMS)
    q = (f"A box holds {per} {item}. {name} buys {boxes} boxes and uses {used} {item} for a project. "
         f"How many {item} are left?")
    return q, [f"{boxes} boxes hold {boxes} * {per} = {total} {item}.",
               f"After using {used}, {total} - {used} = {total - used} {item} are left."], total - used


def _gsm_wage(rng: random.Random, name: str, he: str) -> Problem:
    rate, hours, weeks = rng.randint(8, 30), rng.randint(4, 40), rng.randint(2, 6)
    week = rate * hours
    q = (f"{name} earns ${rate} per hour and works {hours} hours each week. "
         f"How many dollars does {he} earn in {weeks} weeks?")
    return q, [f"Each week {he} earns {rate} * {hours} = {week} dollars.",
               f"In {weeks} weeks {he} earns {week} * {weeks} = {week * weeks} dollars."], week * weeks


def _gsm_pages(rng: random.Random, name: str, he: str) -> Problem:
    per_day, days = rng.randint(5, 40), rng.randint(2, 9)
    read = per_day * days
    total = read + rng.randint(1, 200)
    q = f"A book has {total} pages. {name} reads {per_day} pages a day for {days} days. How many pages are left to read?"
    return q, [f"{name} reads {per_day} * {days} = {read} pages.",
               f"{total} - {read} = {total - read} pages are left."], total - read


def _gsm_shopping(rng: random.Random, name: str, he: str) -> Problem:
    shirt, pants, n = rng.randint(6, 40), rng.randint(15, 80), rng.randint(2, 7)
    q = (f"A shirt costs ${shirt} and a pair of pants costs ${pants}. {name} buys {n} shirts and one pair of "
         f"pants. How many dollars does {he} spend?")
    return q, [f"The shirts cost {n} * {shirt} = {n * shirt} dollars.",
               f"In total {he} spends {n * shirt} + {pants} = {n * shirt + pants} dollars."], n * shirt + pants


def _gsm_groups(rng: random.Random, name: str, he: str) -> Problem:
    groups, size, extra = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 5)
    q = (f"{name} splits {groups * size} students evenly into {groups} groups. Then {extra} new students join "
         "each group. How many students are in each group now?")
    return q, [f"Each group starts with {groups * size} / {groups} = {size} students.",
               f"With the new students each group has {size} + {extra} = {size + extra} students."], size + extra


def _gsm_running(rng: random.Random, name: str, he: str) -> Problem:
    km, days, weekend = rng.randint(2, 15), rng.randint(2, 5), rng.randint(5, 30)
    q = (f"{name} runs {km} km on each of {days} weekdays and {weekend} km on the weekend. "
         f"How many km does {he} run in the whole week?")
    return q, [f"On weekdays {he} runs {km} * {days} = {km * days} km.",
               f"For the whole week that is {km * days} + {weekend} = {km * days + weekend} km."], km * days + weekend


GSM_PROBLEMS: tuple[Callable[[random.Random, str, str], Problem], ...] = (
    _gsm_buy_give, _gsm_boxes, _gsm_wage, _gsm_pages, _gsm_shopping, _gsm_groups, _gsm_running)


def gsm8k_example(rng: random.Random) -> Example:
    name, he = rng.choice(NAMES)
    question, steps, answer = rng.choice(GSM_PROBLEMS)(rng, name, he)
    solution = "\n".join(steps + [f"{GSM8K_ANSWER} {answer}"])
    return TASKS["gsm8k"].prompt(question), solution, str(answer)


TASK_GENERATORS: dict[str, Callable[[random.Random], Example]] = {
    "sst2": sst2_example, "agnews": agnews_example, "gsm8k": gsm8k_example,
}


def distinct(generate: Callable[[random.Random], tuple], k: int, rng: random.Random, what: str) -> list[tuple]:
    """`k` generated items with pairwise distinct first fields (prompts); DataError if the space runs dry."""
    out, seen, misses = [], set(), 0
    while len(out) < k:
        item = generate(rng)
        if item[0] in seen:
            misses += 1
            if misses > 50 * k + 1000:  # far more collisions than any reasonable size produces
                raise DataError(f"{what}: cannot generate {k} distinct rows (got {len(out)}; lower data.sizes)")
            continue
        seen.add(item[0])
        out.append(item)
    return out


def task_rows(task: str, n_train: int, n_test: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Train and test rows for `task` from one pool of distinct prompts (test drawn first)."""
    pool = distinct(TASK_GENERATORS[task], n_train + n_test, rng, f"synthetic task {task}")
    rows = [{"prompt": p, "response": r, "label": lab} for p, r, lab in pool]
    return rows[n_test:], rows[:n_test]
