"""A sentence-pair data set built on the fly from templates and Faker's names, companies, cities
and years (``pip install faker``): nothing is downloaded or committed.

Each sentence states one *event* (someone joined, left or founded a company, a company opened an
office...) with four *facts*: a person, a company, a city and a year. Every event has several
phrasings that say the same thing with other words and word order. A pair is

* a **paraphrase**: the same event and facts in two different phrasings;
* a **non-paraphrase**: a different phrasing of either the same event with one fact changed (a
  hard negative: another person, company, city or year), the opposite event with the same facts
  ("joined" / "left"), or an unrelated event with other facts.

``make_pair_rows(n, seed)`` gives ``{"text", "text_pair", "label"}`` rows (``paraphrase`` /
``different``); ``make_pair_rows(n, seed, scores=True)`` gives a similarity score in ``[0, 5]``
instead (``score``): 5 for a paraphrase, minus 1.25 per changed fact, at most 1 for another
event; a small jitter keeps ties apart.
"""

from __future__ import annotations

import random
from typing import Any

FACTS = ("person", "company", "city", "year")
#: phrasings of each event (the same meaning, other words)
EVENTS: dict[str, tuple[str, ...]] = {
    "join": ("{person} joined {company} in {city} in {year}.",
             "In {year}, {person} started working for {company} in {city}.",
             "{company} hired {person} at its {city} office in {year}.",
             "{person} became an employee of {company} ({city}) in {year}."),
    "leave": ("{person} left {company} in {city} in {year}.",
              "In {year}, {person} quit the job at {company} in {city}.",
              "{person} stopped working for the {city} office of {company} in {year}.",
              "{company} lost {person}, who resigned from its {city} office in {year}."),
    "found": ("{person} founded {company} in {city} in {year}.",
              "{company} was started by {person} in {city} in {year}.",
              "In {year}, {person} set up a company called {company}, based in {city}.",
              "The founder of {company} is {person}, who created it in {city} in {year}."),
    "open": ("{company} opened an office in {city} in {year}, led by {person}.",
             "In {year}, {company} launched its {city} branch with {person} in charge.",
             "{person} runs the {city} office that {company} opened in {year}.",
             "A new {company} site in {city}, headed by {person}, opened its doors in {year}."),
}
#: events that contradict each other on the same facts
OPPOSITE = {"join": "leave", "leave": "join", "found": "open", "open": "found"}
LABELS = ("paraphrase", "different")


def _faker(seed: int) -> Any:
    try:
        from faker import Faker
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ImportError("the sentence-pair data set needs Faker: pip install faker") from exc
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def _facts(fake: Any, rng: random.Random) -> dict[str, str]:
    return {"person": fake.name(), "company": fake.company(), "city": fake.city(),
            "year": str(rng.randint(1980, 2024))}


def _changed(facts: dict[str, str], key: str, fake: Any, rng: random.Random) -> dict[str, str]:
    out = dict(facts)
    while out[key] == facts[key]:
        out[key] = _facts(fake, rng)[key]
    return out


def _two_phrasings(rng: random.Random, event_a: str, event_b: str) -> tuple[str, str]:
    a = rng.choice(EVENTS[event_a])
    others = [t for t in EVENTS[event_b] if t != a]
    return a, rng.choice(others)


def make_pair_rows(n: int, seed: int = 0, scores: bool = False, paraphrase_share: float = 0.5,
                   hard_share: float = 0.5) -> list[dict[str, Any]]:
    """``n`` sentence pairs (see the module docstring): ``paraphrase_share`` of them paraphrases;
    of the others, ``hard_share`` change one or two facts, the rest take the opposite event
    (half of them) or another event with other facts. ``scores``: a similarity score column
    ``score`` instead of ``label``."""
    rng = random.Random(seed)
    fake = _faker(seed)
    rows = []
    for _ in range(n):
        event = rng.choice(list(EVENTS))
        facts = _facts(fake, rng)
        r = rng.random()
        if r < paraphrase_share:
            other_event, other, score = event, facts, 5.0
        else:
            kind = rng.random()
            if kind < hard_share:
                changed = rng.sample(FACTS, rng.choice((1, 1, 2)))
                other = facts
                for key in changed:
                    other = _changed(other, key, fake, rng)
                other_event, score = event, 5.0 - 1.25 * len(changed)
            elif kind < hard_share + (1 - hard_share) / 2:
                other_event, other, score = OPPOSITE[event], facts, 1.0
            else:
                other_event = rng.choice([e for e in EVENTS if e not in (event, OPPOSITE[event])])
                other, score = _facts(fake, rng), 0.0
        ta, tb = _two_phrasings(rng, event, other_event)
        a, b = ta.format(**facts), tb.format(**other)
        if rng.random() < 0.5:
            a, b = b, a
        row: dict[str, Any] = {"text": a, "text_pair": b}
        if scores:
            row["score"] = round(min(5.0, max(0.0, score + rng.uniform(-0.2, 0.2))), 2)
        else:
            row["label"] = LABELS[0] if score == 5.0 else LABELS[1]
        rows.append(row)
    return rows
