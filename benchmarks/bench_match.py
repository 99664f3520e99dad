"""Matcher throughput: feed-monitor's Matcher against one regular expression per term.

Stories are realistic news text: a headline and a 3-6 sentence summary, one in five with
a full article body; one in ten draws on the sample S-400 article, the rest on everyday
defense news. Terms are
a realistic watchlist mix: designators (Su-57, Kh-101), acronyms, words and phrases.
Both sides use the same term semantics (``term_pattern``); the baseline simply tries
every term's regex on every story, the obvious implementation. One core, one process.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor.config import Watchlist
from monitor.match import Matcher, term_pattern
from monitor.models import Entry

SAMPLE = Path(__file__).parent.parent / "tests" / "data" / "seed-article.txt"
PREFIXES = [
    "F",
    "S",
    "Su",
    "J",
    "Kh",
    "MiG",
    "T",
    "AH",
    "MQ",
    "B",
    "C",
    "KC",
    "HQ",
    "DF",
    "Tu",
    "Il",
    "Mi",
    "Ka",
    "P",
    "E",
    "RQ",
    "CH",
    "K",
    "M",
    "A",
    "R",
    "Yak",
    "An",
]
WORDS = [
    "hypersonic",
    "drone",
    "frigate",
    "corvette",
    "submarine",
    "howitzer",
    "radar",
    "interceptor",
    "sanctions",
    "embargo",
    "missile",
    "satellite",
    "warhead",
    "tanker",
    "destroyer",
    "carrier",
    "battalion",
    "brigade",
    "airbase",
    "stealth",
    "bomber",
    "helicopter",
    "artillery",
    "mortar",
    "rifle",
    "ammunition",
    "procurement",
    "tender",
    "contract",
    "exercise",
    "drill",
    "incursion",
    "airspace",
    "blockade",
    "convoy",
]
CORE_TERMS = ["S-400", "CAATSA", "F-35"]


SYLLABLES = [
    "ka",
    "ro",
    "tec",
    "lin",
    "mar",
    "vo",
    "dan",
    "ser",
    "gei",
    "al",
    "ma",
    "zov",
    "tur",
    "bay",
    "kar",
    "ha",
    "nis",
    "ov",
    "ich",
    "men",
    "dor",
    "as",
    "el",
    "sun",
]


def make_terms(count: int, rng: random.Random) -> list[str]:
    """A realistic OSINT watchlist: half designators, then acronyms, names and phrases."""
    terms = list(CORE_TERMS)
    seen = set(terms)
    while len(terms) < count:
        kind = rng.random()
        if kind < 0.5:
            term = f"{rng.choice(PREFIXES)}-{rng.randint(2, 999)}"
        elif kind < 0.7:
            term = "".join(rng.choice("ABCDEFGHIKLMNOPRSTUVWXYZ") for _ in range(rng.randint(3, 6)))
        elif kind < 0.9:
            name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).title()
            given = rng.choice(SYLLABLES).title() + rng.choice(SYLLABLES)
            term = name if rng.random() < 0.5 else f"{given} {name}"
        else:
            term = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        if term not in seen:
            seen.add(term)
            terms.append(term)
    return terms[:count]


# Everyday defense and world news: most stories in a feed mention no watched term.
GENERIC = [
    "The defense ministry said the new contract covers maintenance and training for ten years.",
    "Officials declined to comment on the timeline, citing ongoing negotiations with suppliers.",
    "The navy commissioned its third frigate of the class at a ceremony on Tuesday.",
    "Lawmakers in the budget committee questioned the rising cost of the modernization program.",
    "Satellite images published by analysts show new construction at the northern airbase.",
    "The exercise involved more than 4,000 troops from eleven countries and lasted two weeks.",
    "According to the report, the army plans to replace its ageing howitzers by 2030.",
    "The company reported quarterly revenue of $2.1 billion, up 8 percent from a year earlier.",
    "A spokesperson for the prime minister said the talks had been constructive.",
    "Drone attacks on energy infrastructure continued overnight, local authorities reported.",
    "The agreement still needs to be ratified by parliament before it takes effect.",
    "Engineers completed the first test flight of the prototype over the weekend.",
    "The shipyard said delays in steel deliveries pushed the launch back by six months.",
    "Analysts expect the tender to attract bids from at least three European consortia.",
    "The coast guard intercepted a vessel carrying undeclared cargo near the strait.",
    "Defense spending rose to 2.4 percent of gross domestic product last year.",
    "The minister visited troops stationed near the border and promised new equipment.",
    "Production of artillery shells will triple by the end of next year, the firm said.",
    "Cyber security officials warned of a phishing campaign targeting defense contractors.",
    "The air force grounded part of its transport fleet after an engine inspection.",
    "Negotiators met in Geneva for a third round of talks on a ceasefire.",
    "A new radar station will be built on the island to monitor the airspace.",
    "The committee approved funding for research into hypersonic propulsion.",
    "Veterans groups criticized the decision to close two military hospitals.",
    "The president signed a decree on the mobilization of reservists.",
    "Heavy rain disrupted the joint drills, which were moved to a later date.",
    "The export license was granted after a review by the foreign ministry.",
    "Investigators are examining the cause of the helicopter crash on Monday.",
    "The brigade will receive upgraded armored vehicles starting in the spring.",
    "Officials said the blockade had cut fuel supplies to the region by half.",
]


def make_stories(count: int, rng: random.Random) -> list[Entry]:
    """Headlines with a 3-6 sentence summary; one in five also carries a full body.

    About one story in ten draws on the sample S-400 article, the rest on everyday news.
    """
    text = SAMPLE.read_text(encoding="utf-8")
    article = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.split()) > 4]
    stories = []
    for i in range(count):
        pool = article + GENERIC if i % 10 == 0 else GENERIC
        title = rng.choice(pool)[:140]
        summary = " ".join(rng.sample(pool, rng.randint(3, 6)))
        content = " ".join(rng.choice(pool) for _ in range(25)) if i % 5 == 0 else ""
        stories.append(Entry(key=str(i), title=title, link=None, summary=summary, content=content))
    return stories


def rate(run: Callable[[Sequence[Entry]], int], stories: Sequence[Entry], repeats: int) -> float:
    """Median stories per second over ``repeats`` runs."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(stories)
        rates.append(len(stories) / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    rng = random.Random(42)
    stories = make_stories(2000, rng)
    all_terms = make_terms(1000, rng)
    average = statistics.mean(len(s.title) + len(s.summary) + len(s.content) for s in stories)
    full = Matcher([Watchlist(name="all", keywords=all_terms)])
    matching = sum(1 for story in stories if full.match(story))
    print(
        f"Matcher: {len(stories)} stories, {average:.0f} characters on average, "
        f"{matching} match one of the 1,000 terms; median of 5 runs, one core"
    )
    print()
    print("| terms | feed-monitor (stories/s) | one regex per term (stories/s) | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for count in (3, 100, 1000):
        terms = all_terms[:count]
        matcher = Matcher([Watchlist(name="bench", keywords=terms)])

        def ours(batch: Sequence[Entry], matcher: Matcher = matcher) -> int:
            return sum(1 for story in batch if matcher.match(story))

        patterns = [re.compile(term_pattern(term), re.IGNORECASE) for term in terms]

        def obvious(batch: Sequence[Entry], patterns: list[re.Pattern[str]] = patterns) -> int:
            hits = 0
            for story in batch:
                text = "\n".join((story.title, story.summary, story.content))
                if any([p.search(text) for p in patterns]):
                    hits += 1
            return hits

        baseline_sample = stories[: max(100, 20000 // count)]
        assert ours(baseline_sample) == obvious(baseline_sample), "the two disagree"
        fast = rate(ours, stories, 5)
        slow = rate(obvious, baseline_sample, 5)
        print(f"| {count:,} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |")


if __name__ == "__main__":
    main()
