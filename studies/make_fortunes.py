"""Build the fortunes topic-classification dataset into ``studies/data/fortunes``.

Usage: ``python studies/make_fortunes.py [--per-topic N] [--seed S] [--topics a,b,c] [--out DIR]``
(works from any working directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from automl_pt_text import datasets
except ImportError:
    sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-text"))
    from automl_pt_text import datasets

if __name__ == "__main__":
    raise SystemExit(datasets.main(default_out=HERE / "data" / "fortunes"))
