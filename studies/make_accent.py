"""Synthesize the accented-speech recognition set into ``studies/data/accent`` with espeak-ng:
English sentences of the Debian ``fortunes`` package read by German, French and Spanish voices
(varied variant, speed, pitch, background noise), split by sentence.

Usage: ``python studies/make_accent.py [--train N] [--validation N] [--test N] [--seed S] [--out DIR]``
(works from any working directory; needs ``apt-get install espeak-ng fortunes``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    from automl_pt_speech import accent
except ImportError:
    sys.path.insert(0, str(HERE.parent / "plugins" / "automl-pt-speech"))
    from automl_pt_speech import accent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=160)
    p.add_argument("--validation", type=int, default=24)
    p.add_argument("--test", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "data" / "accent")
    args = p.parse_args()
    tables = accent.make_accent_set(args.out, args.train, args.validation, args.test, seed=args.seed)
    for split, path in tables.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
