"""Synthesize the keyword-spotting dataset into ``studies/data/keywords`` with espeak-ng.

Usage: ``python studies/make_keywords.py [--per-word N] [--words yes,no,...] [--seed S] [--out DIR]``
(works from any working directory; needs ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from automl_pt_speech import keywords
except ImportError:
    sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-speech"))
    from automl_pt_speech import keywords

if __name__ == "__main__":
    raise SystemExit(keywords.main(default_out=HERE / "data" / "keywords"))
