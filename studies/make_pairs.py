"""Build the sentence-pair quickstart data into ``studies/data/pairs`` from templates and Faker's
names, companies, cities and years (``pip install faker``; nothing is downloaded or committed):

* ``paraphrase/``: pairs labelled ``paraphrase`` (the same event and facts, said otherwise) or
  ``different`` (one or two facts changed, the opposite event, or an unrelated one), for
  ``text-pair-classification`` (``studies/tasks/text-pair-classification.toml``);
* ``similarity/``: the same kind of pairs with a similarity score in ``[0, 5]`` (5: a
  paraphrase; 1.25 less per changed fact; at most 1 for another event), for
  ``text-pair-regression`` (``studies/tasks/text-pair-regression.toml``).

Each has ``train.csv``, ``validation.csv`` and ``test.csv`` with columns ``text``, ``text_pair``
and ``label`` / ``score`` (see :mod:`automl_pt_text.pairs`).

Usage: ``python studies/make_pairs.py [--out DIR] [--train N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-text"))

from automl_pt_text.pairs import make_pair_rows  # noqa: E402


def build(out: Path, train: int = 600, seed: int = 0) -> dict[str, Path]:
    """Write both sets under ``out``; returns their folders. Validation and test have a quarter
    of ``train`` each, from their own seeds (no pair is shared)."""
    sizes = {"train": train, "validation": max(train // 4, 20), "test": max(train // 4, 20)}
    folders = {}
    for name, scores in (("paraphrase", False), ("similarity", True)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (split, n) in enumerate(sizes.items()):
            rows = make_pair_rows(n, seed * 10 + i + (5 if scores else 0), scores=scores)
            pd.DataFrame(rows).to_csv(folder / f"{split}.csv", index=False)
        folders[name] = folder
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "data" / "pairs"))
    parser.add_argument("--train", type=int, default=600, help="training pairs per set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, folder in build(Path(args.out), args.train, args.seed).items():
        print(f"wrote {folder} ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
