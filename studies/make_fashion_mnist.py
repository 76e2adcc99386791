"""Build the Fashion-MNIST subset for studies/quickstart-vision.toml into ``studies/data/fashion-mnist``.

Needs Debian's data: ``apt-get install dataset-fashion-mnist``.
Usage: ``python studies/make_fashion_mnist.py [--train-per-class N] [--validation-per-class N]
[--test-per-class N] [--seed S] [--out DIR]`` (works from any working directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from automl_pt_vision import datasets
except ImportError:
    sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-vision"))
    from automl_pt_vision import datasets

if __name__ == "__main__":
    raise SystemExit(datasets.main(default_out=HERE / "data" / "fashion-mnist"))
