"""A synthetic keyword-spotting dataset, spoken by Debian's ``espeak-ng``.

Every clip is one word in a random English accent (``en-us``, ``en-gb-scotland``, ``en-029``...)
with a random voice variant (``+f3``, ``+croak``, ``+klatt2``... about 90 of them), speed and
pitch; then random leading silence, gain and, for about half of the clips, white or brown noise
at 5-30 dB SNR. Files mix formats and rates on purpose (WAV 22.05 kHz mono or stereo, FLAC
16 kHz, OGG/Vorbis), so the resampling and decoding paths are exercised.

Layout (class-per-folder trees plus equivalent tables)::

    OUT/train/<word>/<word>-00012.wav     OUT/train.csv        (audio,label; relative paths)
    OUT/validation/...                    OUT/validation.csv
    OUT/test/...                          OUT/test.csv

Output is fully determined by the arguments and the installed espeak-ng
(``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_WORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off",
                                  "stop", "go")
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
ACCENTS: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                            "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
INSTALL_HINT = "install it with `apt-get install espeak-ng`"


class EspeakMissing(RuntimeError):
    pass


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakMissing(f"espeak-ng not found; {INSTALL_HINT}")
    return exe


@lru_cache(maxsize=1)
def available_accents() -> tuple[str, ...]:
    out = subprocess.run([espeak_binary(), "--voices=en"], capture_output=True, text=True,
                         check=True).stdout
    names = {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
    return tuple(a for a in ACCENTS if a in names) or ("en",)


@lru_cache(maxsize=1)
def available_variants() -> tuple[str, ...]:
    """Voice-variant file names (``f3``, ``croak``...) from ``espeak-ng --voices=variant``."""
    out = subprocess.run([espeak_binary(), "--voices=variant"], capture_output=True, text=True,
                         check=True).stdout
    variants = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        files = [p for p in parts if p.startswith("!v/")]
        if files and files[0][3:] and " " not in files[0][3:]:
            variants.append(files[0][3:])
    return tuple(sorted(set(variants)))


@dataclass(frozen=True)
class ClipSpec:
    word: str
    index: int
    voice: str
    speed: int
    pitch: int
    lead_silence: float
    gain_db: float
    noise: str          # "none" | "white" | "brown"
    snr_db: float
    fmt: str            # "wav" | "wav-stereo" | "flac" | "ogg"


def plan_clips(words: Sequence[str], per_word: int, seed: int, noise_fraction: float = 0.5
               ) -> list[ClipSpec]:
    accents, variants = available_accents(), ("",) + available_variants()
    rng = np.random.default_rng(seed)
    specs = []
    for word in words:
        for i in range(per_word):
            variant = variants[rng.integers(len(variants))]
            voice = accents[rng.integers(len(accents))] + (f"+{variant}" if variant else "")
            noisy = rng.random() < noise_fraction
            fmt = rng.choice(["wav", "wav", "wav", "wav", "wav", "wav", "wav-stereo", "flac", "flac", "ogg"])
            specs.append(ClipSpec(
                word=word, index=i, voice=voice, speed=int(rng.integers(100, 231)),
                pitch=int(rng.integers(10, 91)), lead_silence=float(rng.uniform(0.0, 0.25)),
                gain_db=float(rng.uniform(-12.0, 0.0)),
                noise=str(rng.choice(["white", "brown"])) if noisy else "none",
                snr_db=float(rng.uniform(5.0, 30.0)), fmt=str(fmt)))
    return specs


def synthesize(spec: ClipSpec) -> tuple[np.ndarray, int]:
    """Speak ``spec.word`` and apply silence, gain and noise: ``(float32 mono, sample rate)``."""
    import soundfile as sf

    cmd = [espeak_binary(), "-v", spec.voice, "-s", str(spec.speed), "-p", str(spec.pitch),
           "--stdout", spec.word]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(raw), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    peak = float(np.abs(audio).max()) or 1.0
    audio = audio / peak * 0.9
    rng = np.random.default_rng(zlib.crc32(f"{spec.word}/{spec.index}/{spec.voice}".encode()))
    audio = np.concatenate([np.zeros(int(spec.lead_silence * rate), np.float32), audio,
                            np.zeros(int(0.05 * rate), np.float32)])
    audio *= 10 ** (spec.gain_db / 20)
    if spec.noise != "none":
        noise = rng.standard_normal(len(audio)).astype(np.float32)
        if spec.noise == "brown":
            noise = np.cumsum(noise)
            noise -= np.linspace(noise[0], noise[-1], len(noise))  # no drift
        speech = audio[np.abs(audio) > 1e-4]
        power = float(np.mean(speech ** 2)) if len(speech) else 1e-4
        noise *= np.sqrt(power / 10 ** (spec.snr_db / 10) / max(float(np.mean(noise ** 2)), 1e-12))
        audio = audio + noise
    return np.clip(audio, -1.0, 1.0).astype(np.float32), rate


def write_clip(spec: ClipSpec, audio: np.ndarray, rate: int, path_stem: Path) -> Path:
    """Write in the clip's format; returns the file path (temp file + rename)."""
    import soundfile as sf

    from .audio import resample

    if spec.fmt == "flac":
        audio, rate, ext, kw = resample(audio, rate, 16000), 16000, ".flac", {"format": "FLAC"}
    elif spec.fmt == "ogg":
        ext, kw = ".ogg", {"format": "OGG", "subtype": "VORBIS"}
    else:
        ext, kw = ".wav", {"format": "WAV", "subtype": "PCM_16"}
    if spec.fmt == "wav-stereo":
        audio = np.stack([audio, audio * 0.8], axis=1)
    path = path_stem.with_suffix(ext)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), audio, rate, **kw)
    os.replace(tmp, path)
    return path


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = max(1, int(round(n * fractions[1])))
    n_test = max(1, int(round(n * fractions[2])))
    return n - n_val - n_test, n_val, n_test


def build_keywords_dataset(out_dir: Path | str, words: Sequence[str] = DEFAULT_WORDS,
                           per_word: int = 120, splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
                           seed: int = 0, workers: int | None = None,
                           unlabeled_per_word: int = 60) -> dict[str, Path]:
    """Synthesize ``per_word`` clips per word, split them per word into train / validation /
    test, write folder trees and ``<split>.csv`` tables. ``unlabeled_per_word`` further clips
    per word (other voices and settings, drawn with another seed) go, named only by number, into
    the flat folder ``unlabeled/``: the in-domain pool for continued pre-training
    (``[pretrain] data``); 0 writes none. Returns ``{split: folder}``."""
    if per_word < 3:
        raise ValueError("per_word must be at least 3 (one clip per split)")
    out = Path(out_dir)
    specs = plan_clips(list(dict.fromkeys(words)), per_word, seed)
    rng = np.random.default_rng(seed + 1)
    assignment: dict[ClipSpec, str] = {}
    for word in dict.fromkeys(words):
        mine = [s for s in specs if s.word == word]
        order = rng.permutation(len(mine))
        n_train, n_val, _ = split_counts(len(mine), splits)
        for rank, k in enumerate(order):
            assignment[mine[k]] = "train" if rank < n_train else (
                "validation" if rank < n_train + n_val else "test")
    for name in SPLIT_NAMES:
        shutil.rmtree(out / name, ignore_errors=True)
        for word in words:
            (out / name / word).mkdir(parents=True, exist_ok=True)

    def make(spec: ClipSpec) -> tuple[str, str, str]:
        split = assignment[spec]
        audio, rate = synthesize(spec)
        path = write_clip(spec, audio, rate, out / split / spec.word / f"{spec.word}-{spec.index:05d}")
        return split, path.relative_to(out).as_posix(), spec.word

    extra = [replace(spec, index=per_word + spec.index)   # other clips than the labelled ones
             for spec in plan_clips(list(dict.fromkeys(words)), unlabeled_per_word, seed + 7919)]
    order = np.random.default_rng(seed + 2).permutation(len(extra))
    unlabeled, unlabeled_tmp = out / "unlabeled", out / ".unlabeled.tmp"
    shutil.rmtree(unlabeled_tmp, ignore_errors=True)
    if extra:
        unlabeled_tmp.mkdir(parents=True)

    def make_unlabeled(item: tuple[int, ClipSpec]) -> None:
        rank, spec = item
        audio, rate = synthesize(spec)
        write_clip(spec, audio, rate, unlabeled_tmp / f"clip-{rank:05d}")

    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        rows = list(pool.map(make, specs))
        list(pool.map(make_unlabeled, [(int(r), extra[k]) for r, k in enumerate(order)]))
    if extra:
        shutil.rmtree(unlabeled, ignore_errors=True)
        os.replace(unlabeled_tmp, unlabeled)
    for name in SPLIT_NAMES:
        table = out / f"{name}.csv"
        tmp = table.with_name(f".{table.name}.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(("audio", "label"))
            writer.writerows((path, word) for split, path, word in rows if split == name)
        os.replace(tmp, table)
    folders = {name: out / name for name in SPLIT_NAMES}
    if extra:
        folders["unlabeled"] = unlabeled
    return folders


def main(argv: Sequence[str] | None = None, default_out: Path | str = Path("studies/data/keywords")) -> int:
    parser = argparse.ArgumentParser(description="Synthesize a keyword-spotting set with espeak-ng.")
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output dir (default: %(default)s)")
    parser.add_argument("--words", default=",".join(DEFAULT_WORDS), help="comma-separated words")
    parser.add_argument("--per-word", type=int, default=120, help="clips per word (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--unlabeled-per-word", type=int, default=60,
                        help="clips per word for the unlabeled pool, 0: none (default: %(default)s)")
    args = parser.parse_args(argv)
    words = [w.strip() for w in args.words.split(",") if w.strip()]
    try:
        folders = build_keywords_dataset(args.out, words, args.per_word, seed=args.seed,
                                         unlabeled_per_word=args.unlabeled_per_word)
    except EspeakMissing as exc:
        parser.exit(1, f"error: {exc}\n")
    for name, folder in folders.items():
        n = sum(1 for p in folder.rglob("*") if p.is_file())
        print(f"{name}: {n} clips, {'no labels' if name == 'unlabeled' else f'{len(words)} words'} -> {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
