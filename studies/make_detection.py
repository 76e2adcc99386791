"""Build the synthetic detection set for studies/detection.toml into ``studies/data/detection``:
Fashion-MNIST items at random scales on 128-px canvases with noisy backgrounds, COCO JSON
train / validation / test (see ``automl_pt_vision.detection_data``).

Needs Debian's data: ``apt-get install dataset-fashion-mnist``.
Usage: ``python studies/make_detection.py [--train N] [--validation N] [--test N] [--size PX]
[--classes N] [--seed S] [--out DIR]`` (works from any working directory).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from automl_pt_vision import detection_data
except ImportError:
    sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-vision"))
    from automl_pt_vision import detection_data

if __name__ == "__main__":
    raise SystemExit(detection_data.main(default_out=HERE / "data" / "detection"))
