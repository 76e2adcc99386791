"""Build the named-entity quickstart data into ``studies/data/ner`` from sentence templates and
Faker's names, companies, cities, countries and dates (``pip install faker``, or the ``data``
extra; nothing is downloaded or committed): ``train.jsonl``, ``validation.jsonl`` and
``test.jsonl``, one sentence per line as ``{"tokens": [...], "tags": [...]}`` (BIO / IOB2 tags
of ``PER``, ``LOC``, ``ORG``, ``DATE``; see :mod:`automl_pt_text.ner_data`), and
``unlabeled.jsonl`` (``tokens`` only) for continued pre-training. The study is
``studies/tasks/token-classification.toml``.

Usage: ``python studies/make_ner.py [--out DIR] [--train N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-text"))

from automl_pt_text.ner_data import make_ner_rows  # noqa: E402


def build(out: Path, train: int = 800, seed: int = 0) -> dict[str, Path]:
    """Write the splits under ``out``; returns their paths. Validation has a quarter of
    ``train`` sentences, test and the unlabeled pool half; each split has its own seed, so
    they share templates but (almost) no names."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": train, "validation": max(train // 4, 20), "test": max(train // 2, 20),
             "unlabeled": max(train // 2, 20)}
    paths = {}
    for i, (split, n) in enumerate(sizes.items()):
        rows = make_ner_rows(n, seed * 10 + i)
        if split == "unlabeled":
            rows = [{"tokens": r["tokens"]} for r in rows]
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "data" / "ner"))
    parser.add_argument("--train", type=int, default=800, help="training sentences")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split, path in build(Path(args.out), args.train, args.seed).items():
        print(f"wrote {path} ({split})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
