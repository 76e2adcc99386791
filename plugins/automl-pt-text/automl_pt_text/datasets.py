"""Deterministic text topic-classification dataset built from Debian's ``fortunes``.

Each topic file in ``/usr/share/games/fortunes`` holds quotes separated by lines
containing only ``%``; the file name is used as the class label. Install the data
with ``apt-get install fortunes``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: Large, semantically distinct topics (usable entries after cleaning, fortunes-mod 1.99):
#: computers 869, science 537, politics 658, startrek 226, food 175, law 168.
DEFAULT_TOPICS: tuple[str, ...] = ("computers", "food", "law", "politics", "science", "startrek")
MAX_CHARS = 400
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")

_SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)
_OVERSTRIKE = re.compile(r"[^\x08\n]\x08")  # "_\bX" (underline/bold overstrike) -> "X"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s+")
_INSTALL_HINT = "install it with `apt-get install fortunes`"


def _clean(entry: str) -> str:
    """Resolve overstrikes, drop control characters and collapse whitespace."""
    while True:
        resolved = _OVERSTRIKE.sub("", entry)
        if resolved == entry:
            break
        entry = resolved
    entry = _CONTROL.sub("", entry)
    return _WHITESPACE.sub(" ", entry).strip()


def read_fortunes(topic: str, fortunes_dir: Path | str = FORTUNES_DIR) -> list[str]:
    """Return the cleaned, deduplicated (order-preserving) fortunes of ``topic``.

    Empty entries and entries longer than ``MAX_CHARS`` characters are dropped.
    Raises ``FileNotFoundError`` if the directory or topic file is missing.
    """
    fortunes_dir = Path(fortunes_dir)
    if not fortunes_dir.is_dir():
        raise FileNotFoundError(f"fortunes directory {fortunes_dir} not found; {_INSTALL_HINT}")
    path = fortunes_dir / topic
    if not path.is_file():
        raise FileNotFoundError(f"fortunes topic file {path} not found; {_INSTALL_HINT}")
    text = path.read_text(encoding="utf-8", errors="replace")
    entries = (_clean(e) for e in _SEPARATOR.split(text))
    return list(dict.fromkeys(e for e in entries if e and len(e) <= MAX_CHARS))


def _write_csv(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    """Atomically write ``rows`` as a ``text,label`` CSV."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(("text", "label"))
        writer.writerows(rows)
    os.replace(tmp, path)


def build_fortunes_dataset(
    out_dir: Path | str,
    topics: Sequence[str] = DEFAULT_TOPICS,
    per_topic: int | None = None,
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    fortunes_dir: Path | str = FORTUNES_DIR,
) -> dict[str, Path]:
    """Write stratified ``train.csv``/``validation.csv``/``test.csv`` under ``out_dir``.

    Texts occurring in more than one selected topic are dropped (ambiguous label).
    Each topic's entries are shuffled with ``random.Random(seed)``, optionally capped
    at ``per_topic``, and split by the ``splits`` fractions (train, validation, test;
    test takes the remainder). Each split is shuffled again. Output is fully
    determined by the arguments and the installed fortunes files.
    The entries beyond the ``per_topic`` cap become ``unlabeled.csv`` (a ``text`` column
    only): the in-domain unlabeled pool for continued pre-training (``[pretrain] data``).
    Returns ``{"train": path, "validation": path, "test": path, "unlabeled": path}``.
    """
    if len(splits) != 3 or any(f < 0 for f in splits) or sum(splits) > 1 + 1e-9:
        raise ValueError(f"splits must be three non-negative fractions summing to <= 1, got {splits}")
    if not topics:
        raise ValueError("at least one topic is required")
    by_topic = {topic: read_fortunes(topic, fortunes_dir) for topic in dict.fromkeys(topics)}
    seen = Counter(text for entries in by_topic.values() for text in entries)
    rng = random.Random(seed)
    rows: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLIT_NAMES}
    unlabeled: list[str] = []
    for topic, entries in by_topic.items():
        entries = [text for text in entries if seen[text] == 1]  # drop ambiguous cross-topic texts
        rng.shuffle(entries)
        if per_topic is not None:
            unlabeled.extend(entries[per_topic:])
            entries = entries[:per_topic]
        n_train = int(len(entries) * splits[0])
        n_val = int(len(entries) * splits[1])
        parts = (entries[:n_train], entries[n_train : n_train + n_val], entries[n_train + n_val :])
        for name, part in zip(SPLIT_NAMES, parts):
            rows[name].extend((text, topic) for text in part)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in SPLIT_NAMES:
        rng.shuffle(rows[name])
        paths[name] = out / f"{name}.csv"
        _write_csv(paths[name], rows[name])
    rng.shuffle(unlabeled)
    paths["unlabeled"] = out / "unlabeled.csv"
    tmp = out / ".unlabeled.csv.tmp"
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        writer.writerows([text] for text in unlabeled)
    tmp.replace(paths["unlabeled"])
    return paths


def _summarize(path: Path) -> str:
    """One-line summary of a written split: row count and per-label counts."""
    with path.open(encoding="utf-8", newline="") as fh:
        labels = Counter(row.get("label", "(unlabeled)") for row in csv.DictReader(fh))
    counts = ", ".join(f"{label}={n}" for label, n in sorted(labels.items()))
    return f"{path.stem}: {sum(labels.values())} rows ({counts}) -> {path}"


def main(argv: Sequence[str] | None = None, default_out: Path | str = Path("studies/data/fortunes")) -> int:
    """Command-line entry point; prints a one-line summary per split."""
    parser = argparse.ArgumentParser(description="Build the fortunes topic-classification dataset.")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output dir (default: %(default)s)")
    parser.add_argument("--per-topic", type=int, default=250, help="cap per topic, <=0: none (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--topics", default=",".join(DEFAULT_TOPICS), help="comma-separated topic files")
    parser.add_argument("--fortunes-dir", type=Path, default=FORTUNES_DIR, help="fortunes dir (default: %(default)s)")
    args = parser.parse_args(argv)
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    per_topic = args.per_topic if args.per_topic > 0 else None
    try:
        paths = build_fortunes_dataset(args.out, topics, per_topic, seed=args.seed, fortunes_dir=args.fortunes_dir)
    except FileNotFoundError as exc:
        parser.exit(1, f"error: {exc}\n")
    for path in paths.values():
        print(_summarize(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
