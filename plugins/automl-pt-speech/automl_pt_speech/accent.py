"""A synthetic accented-speech set for speech recognition: English sentences from the Debian
``fortunes`` package read by espeak-ng with *non-English* voices (German, French, Spanish...
phonology applied to English spelling), at varied speed and pitch, with background noise.
Zero-shot Whisper transcribes such speech poorly; a few hundred sentences teach it the accent.

Splits are by sentence: no sentence of validation or test is ever heard in training (the
voices are shared, as an accent is).
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

FORTUNES = Path("/usr/share/games/fortunes")
#: the fortune files sentences are drawn from (plain prose, little verse or code)
FORTUNE_FILES = ("people", "wisdom", "education", "work", "food", "pets", "love", "men-women",
                 "miscellaneous", "platitudes", "science", "politics", "humorists", "computers")
#: espeak-ng voices reading English text with their own language's sounds
ACCENT_VOICES = ("de", "fr", "es")
VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")
MIN_WORDS, MAX_WORDS = 4, 10


def sentences(files: tuple[str, ...] = FORTUNE_FILES, root: Path = FORTUNES,
              words: tuple[int, int] = (MIN_WORDS, MAX_WORDS)) -> list[str]:
    """Distinct plain sentences of ``words`` (default :data:`MIN_WORDS`-:data:`MAX_WORDS`)
    words (letters and ``,.?!'`` only, no attributions) from the fortune files, in file order."""
    out, seen = [], set()
    lo, hi = words
    for name in files:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="latin-1", errors="replace")
        for fortune in text.split("\n%\n"):
            fortune = re.sub(r"\s*--.*", "", fortune, flags=re.S)  # drop "-- Author"
            fortune = " ".join(fortune.split())
            for sent in re.split(r"(?<=[.?!])\s+", fortune):
                sent = sent.strip()
                tokens = sent.split()
                if not lo <= len(tokens) <= hi:
                    continue
                if not re.fullmatch(r"[A-Z][A-Za-z ,']*[a-z][.?!]", sent):
                    continue
                key = sent.lower()
                if key not in seen:
                    seen.add(key)
                    out.append(sent)
    return out


def synthesize(text: str, path: Path, voice: str, speed: int, pitch: int, espeak: str) -> np.ndarray:
    """espeak-ng ``text`` to a 16-bit wav at ``path``; returns the samples (float)."""
    import soundfile as sf

    subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True)
    audio, _ = sf.read(str(path), dtype="float32")
    return audio


def make_accent_set(out: Path, n_train: int = 240, n_validation: int = 40, n_test: int = 60,
                    seed: int = 0, voices: tuple[str, ...] = ACCENT_VOICES,
                    noise_snr_db: tuple[float, float] = (20.0, 35.0),
                    words: tuple[int, int] = (MIN_WORDS, MAX_WORDS)) -> dict[str, Path]:
    """Write ``out/clips/*.wav`` and ``out/{train,validation,test}.csv`` (columns ``audio``,
    relative to the table, and ``text``). Every clip: a random voice of ``voices`` with a
    random variant, speed 130-190 words a minute, pitch 25-75, white noise at a random SNR in
    ``noise_snr_db``; sentences of ``words`` (fewest, most) words. Raises ``RuntimeError`` without espeak-ng or enough sentences."""
    import soundfile as sf

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    pool = sentences(words=words)
    need = n_train + n_validation + n_test
    if len(pool) < need:
        raise RuntimeError(f"only {len(pool)} usable sentences in {FORTUNES} (the Debian package "
                           f"'fortunes'); {need} asked for")
    rng = np.random.default_rng(seed)
    picked = [pool[i] for i in rng.permutation(len(pool))[:need]]
    out = Path(out)
    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    splits = {"train": picked[:n_train], "validation": picked[n_train:n_train + n_validation],
              "test": picked[n_train + n_validation:]}
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, texts in splits.items():
            rows = []
            for i, text in enumerate(texts):
                voice = f"{voices[rng.integers(len(voices))]}+{VARIANTS[rng.integers(len(VARIANTS))]}"
                speed, pitch = int(rng.integers(130, 191)), int(rng.integers(25, 76))
                audio = synthesize(text, Path(tmp) / "x.wav", voice, speed, pitch, espeak)
                snr = rng.uniform(*noise_snr_db)
                power = float(np.mean(audio ** 2)) or 1e-8
                audio = audio + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), len(audio)).astype(np.float32)
                name = f"{split}-{i:04d}.wav"
                sf.write(str(clips / name), np.clip(audio, -1, 1), 22050, subtype="PCM_16")
                rows.append((f"clips/{name}", text, voice, speed, pitch, round(snr, 1)))
            tables[split] = out / f"{split}.csv"
            with tables[split].open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(("audio", "text", "voice", "speed", "pitch", "snr_db"))
                w.writerows(rows)
    return tables
