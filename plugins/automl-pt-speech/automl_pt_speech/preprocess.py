"""Decode + resample every clip once per study into fixed-length int16 PCM tensors."""

from __future__ import annotations

import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from automl_pt.errors import DataError
from automl_pt.model import Preprocessor

from .audio import audio_duration, read_audio

PREPROCESSOR_FILE = "automl_pt_speech_preprocessor.json"
#: the maximum duration is this percentile of the training durations when there are enough
#: clips (a few very long outliers do not pad every clip), else the longest clip
DURATION_PERCENTILE = 99.0
MIN_CLIPS_FOR_PERCENTILE = 200


class AudioPreprocessor(Preprocessor):
    """Clips become ``audio`` (``(N, max_samples)`` int16, zero-padded; longer clips are cut)
    and ``length`` (valid samples, int64).

    ``fit(train_inputs)`` derives ``max_seconds`` from the training clips' durations (read from
    file headers), rounded up to 0.1 s and capped at ``limit_seconds`` (the backbone's limit).

    ``trim``: the backbone masks padding (its features of a clip do not depend on the zeros
    after it), so :meth:`collate` cuts each batch to its longest clip and :meth:`lengths`
    (valid samples) lets training bucket clips of similar durations. Backbones whose output
    depends on the padded length (Whisper's window sized to the data's longest clip, group-norm
    wav2vec2 without attention masks) keep ``trim=False``: every batch padded as before.
    """

    def __init__(self, sample_rate: int, max_seconds: float | None = None,
                 limit_seconds: float = 30.0, trim: bool = False):
        self.sample_rate = int(sample_rate)
        self.max_seconds = max_seconds
        self.limit_seconds = float(limit_seconds)
        self.trim = bool(trim)

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        key = f"audio-v1|{self.sample_rate}|{self.max_samples}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def max_samples(self) -> int | None:
        if self.max_seconds is None:
            return None
        return int(round(self.max_seconds * self.sample_rate))

    def fit(self, train_inputs: Sequence[Any]) -> None:
        durations = np.array(_map(audio_duration, list(train_inputs)), dtype=np.float64)
        if len(durations) == 0:
            raise DataError("audio preprocessing: no training clips to derive a duration from")
        longest = (np.percentile(durations, DURATION_PERCENTILE)
                   if len(durations) >= MIN_CLIPS_FOR_PERCENTILE else durations.max())
        self.max_seconds = float(min(self.limit_seconds, max(0.1, math.ceil(longest * 10 - 1e-6) / 10)))

    def encode(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        if self.max_seconds is None:
            self.fit(inputs)
        n = self.max_samples
        audio = np.zeros((len(inputs), n), dtype=np.int16)
        length = np.zeros(len(inputs), dtype=np.int64)

        def one(i: int) -> None:
            try:
                wave = read_audio(inputs[i], self.sample_rate, max_samples=n)
            except Exception as exc:
                raise DataError(f"{inputs[i]}: cannot decode audio: {type(exc).__name__}: {exc}") from exc
            pcm = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)
            audio[i, :len(pcm)] = pcm
            length[i] = max(1, len(pcm))

        _map(one, range(len(inputs)))
        return {"audio": torch.from_numpy(audio), "length": torch.from_numpy(length)}

    def collate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.trim or not len(batch["length"]):
            return batch
        longest = max(1, int(batch["length"].max()))
        return {**batch, "audio": batch["audio"][:, :longest]}

    def lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return tensors["length"] if self.trim else None

    def save(self, directory: Any) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / PREPROCESSOR_FILE).write_text(json.dumps(
            {"sample_rate": self.sample_rate, "max_seconds": self.max_seconds}, indent=2))


def load_saved_max_seconds(directory: Path) -> float | None:
    path = Path(directory) / PREPROCESSOR_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("max_seconds")


def _map(fn, items) -> list:
    """``[fn(x) for x in items]`` on a few threads (libsndfile and soxr release the GIL)."""
    items = list(items)
    workers = min(8, torch.get_num_threads())  # the slot's share of the cores in a worker
    if len(items) < 64 or workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
