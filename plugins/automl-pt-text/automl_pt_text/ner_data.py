"""A named-entity data set built on the fly from sentence templates and Faker's names, companies,
cities, countries and dates (``pip install faker``): nothing is downloaded or committed.

Four entity types, tagged BIO / IOB2 per word:

* ``PER``: a full name (``Mary Ann Smith``, sometimes with a middle name), a first name or a
  surname alone; a title before it (``Dr.``, ``Mrs.``) is not part of the entity;
* ``LOC``: a city (``Port Gabriellafort``, ``West Corey``), a country (``Sri Lanka``) or a US
  state;
* ``ORG``: a surname alone (``Shares of Wagner fell``: only the context tells it from a
  person), a company (``Wagner LLC``, ``Smith , Jones and Brown``: a comma inside an entity), a
  university named after a city or a surname (``University of Lake Heather``: a place inside an
  organisation is tagged as the organisation), a bank or a foundation;
* ``DATE``: ``March 3 , 2019``, ``June 2004``, ``2019``, ``3 March 2019``.

The task is not trivial: surnames name people, companies (``Wagner``, ``Wagner LLC``) and places
(``Port Gabriellafort``); entities are one to five words long; capitalised words that are no
entity open many sentences (``Yesterday``, ``According``); about one sentence in seven has no
entity at all; one in ten is in lower case (no capitals to go by); 45 templates in several
registers (news, business, biography, travel).

``make_ner_rows(n, seed)`` gives ``{"tokens": [...], "tags": [...]}`` rows; punctuation is split
off as its own word, as in CoNLL data.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable

TYPES = ("PER", "LOC", "ORG", "DATE")
#: sentence templates; slots ``{PER}``, ``{PER2}``, ``{LOC}``, ``{LOC2}``, ``{ORG}``, ``{ORG2}``,
#: ``{DATE}`` are filled with entities (the digit tells two entities of a type apart)
TEMPLATES: tuple[str, ...] = (
    "{PER} joined {ORG} in {DATE} .",
    "{PER} moved to {LOC} after leaving {ORG} .",
    "Yesterday {PER} met {PER2} in {LOC} .",
    "{ORG} opened a new office in {LOC} on {DATE} .",
    "According to {PER} , {ORG} will cut costs next year .",
    "The mayor of {LOC} , {PER} , visited {ORG} on {DATE} .",
    "Shares of {ORG} fell after {PER} resigned .",
    "{PER} was born in {LOC} on {DATE} .",
    "On {DATE} , {ORG} announced that {PER} would lead its team in {LOC} .",
    "Dr. {PER} studied at {ORG} before moving to {LOC} .",
    "{ORG} and {ORG2} signed an agreement in {LOC} .",
    "Flights from {LOC} to {LOC2} were cancelled on {DATE} .",
    "Mrs. {PER} said the deal with {ORG} was a mistake .",
    "In {DATE} the company moved its headquarters from {LOC} to {LOC2} .",
    "{PER} , a spokesperson for {ORG} , declined to comment .",
    "The report was written by {PER} and {PER2} .",
    "Thousands of people gathered in {LOC} to hear {PER} speak .",
    "{ORG} hired {PER} as chief financial officer .",
    "Police in {LOC} arrested a man on {DATE} .",
    "Last week {PER} flew to {LOC} to meet investors from {ORG} .",
    "{PER} has worked for {ORG} since {DATE} .",
    "A storm hit {LOC} early on {DATE} , closing schools .",
    "Prices rose again in {LOC} , said {PER} of {ORG} .",
    "{ORG} reported higher profits for {DATE} .",
    "Mr. {PER} will return to {LOC} in {DATE} .",
    "Visitors to {LOC} can tour the old factory of {ORG} .",
    "The new bridge between {LOC} and {LOC2} opened in {DATE} .",
    "{PER} thanked {PER2} for the support .",
    "Critics say {ORG} ignored warnings from {PER} .",
    "Born in {LOC} , {PER} graduated from {ORG} in {DATE} .",
    "Talks between {ORG} and {ORG2} broke down on {DATE} .",
    "{PER} sold the house in {LOC} to {PER2} .",
    "The festival in {LOC} drew a record crowd this year .",
    "Engineers at {ORG} built the prototype in {LOC} .",
    "{PER} told reporters that {LOC} needs more teachers .",
    "The contract with {ORG} ends on {DATE} .",
    "Students from {LOC} won the prize , {PER} said .",
    "After {DATE} , {PER} never spoke to {PER2} again .",
    # no entity: the words are not all lower case, but nothing is tagged
    "The meeting was postponed until further notice .",
    "Nobody expected the price of bread to double .",
    "Several schools closed because of the heat .",
    "The committee will publish its findings next month .",
    "Most of the staff work from home on Fridays .",
    "It was the coldest winter in a decade .",
    "Experts disagree about what caused the delay .",
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
ORG_KINDS = ("University of {}", "Bank of {}", "{} Foundation", "{} Institute", "{} Group")
#: share of sentences written in lower case (as in chat or search queries)
LOWER_SHARE = 0.1
_SLOT = re.compile(r"\{(PER|LOC|ORG|DATE)\d?\}")
_PUNCT = re.compile(r"[\w'.&-]+|[^\w\s]")


def words(text: str) -> list[str]:
    """``text`` split into words, punctuation (except ``'.&-`` inside a word) on its own: a
    trailing full stop is split off unless the word is a known abbreviation."""
    out: list[str] = []
    for w in _PUNCT.findall(text):
        if w.endswith(".") and len(w) > 1 and w not in ("Dr.", "Mr.", "Mrs.", "Ms.", "Jr.", "Inc.", "Ltd."):
            out += [w[:-1], "."]
        else:
            out.append(w)
    return out


def _faker(seed: int) -> Any:
    try:
        from faker import Faker
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ImportError("the NER data set needs Faker: pip install faker") from exc
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def _makers(fake: Any, rng: random.Random) -> dict[str, Callable[[], str]]:
    def person() -> str:
        r = rng.random()
        if r < 0.45:
            return f"{fake.first_name()} {fake.last_name()}"
        if r < 0.6:
            return f"{fake.first_name()} {fake.first_name()} {fake.last_name()}"
        if r < 0.8:
            return fake.last_name()
        return fake.first_name()

    def place() -> str:
        r = rng.random()
        if r < 0.5:
            return fake.city()
        if r < 0.8:
            return fake.country()
        return fake.state()

    def organisation() -> str:
        r = rng.random()
        if r < 0.15:
            return fake.last_name()   # "Shares of Wagner fell": only the context says ORG
        if r < 0.7:
            return fake.company()
        return rng.choice(ORG_KINDS).format(fake.city() if rng.random() < 0.5 else fake.last_name())

    def date() -> str:
        month, day, year = rng.choice(MONTHS), rng.randint(1, 28), rng.randint(1950, 2025)
        return rng.choice((f"{month} {day}, {year}", f"{month} {year}", str(year), f"{day} {month} {year}",
                           f"{month} {day}"))

    return {"PER": person, "LOC": place, "ORG": organisation, "DATE": date}


def _tags(kind: str, n: int) -> list[str]:
    return [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)


def make_ner_rows(n: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """``n`` sentences (see the module docstring) as ``{"tokens", "tags"}`` rows."""
    rng = random.Random(seed)
    fake = _faker(seed)
    makers = _makers(fake, rng)
    rows = []
    for _ in range(n):
        template = rng.choice(TEMPLATES)
        filled: dict[str, str] = {}
        tokens: list[str] = []
        tags: list[str] = []
        position = 0
        for match in _SLOT.finditer(template):
            text = template[position:match.start()]
            tokens += words(text)
            tags += ["O"] * len(words(text))
            slot, kind = match.group(0), match.group(1)
            while slot not in filled:
                value = makers[kind]()
                if value not in filled.values():
                    filled[slot] = value
            entity = words(filled[slot])
            tokens += entity
            tags += _tags(kind, len(entity))
            position = match.end()
        rest = words(template[position:])
        tokens += rest
        tags += ["O"] * len(rest)
        if rng.random() < LOWER_SHARE:   # no capitals to go by
            tokens = [w.lower() for w in tokens]
        rows.append({"tokens": tokens, "tags": tags})
    return rows
