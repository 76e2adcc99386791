"""Contrastive views of audio batches for continued pre-training.

Each view of a batch of waveforms (``audio`` + ``length``, see
:class:`~automl_pt_speech.preprocess.AudioPreprocessor`) gets, per clip and at
``augmentation_strength`` ``s`` (``[pretrain.options]``, default 1): speed perturbation within
``1 ± 0.15 s`` and a time shift within ``± 0.1 s`` seconds
(:func:`~automl_pt_speech.augment.speed_and_shift`), white noise at an SNR in
``[40 - 30 s, 40]`` dB (:func:`~automl_pt_speech.augment.add_noise`) and time masking: up to
two spans of at most ``15 s`` % of the clip set to silence (:func:`time_mask`). Random numbers
come from the given CPU generator (reproducible for a seed).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .augment import (MAX_SHIFT_SECONDS, MAX_SPEED_DELTA, SNR_HIGH_DB, SNR_SPAN_DB, add_noise,
                      as_float_audio, speed_and_shift)

MASK_FRACTION = 0.15
N_TIME_MASKS = 2


def time_mask(audio: torch.Tensor, length: torch.Tensor, fraction: float,
              generator: torch.Generator) -> torch.Tensor:
    """Silence ``N_TIME_MASKS`` spans per clip, each up to ``fraction`` of its valid length."""
    b, s = audio.shape
    idx = torch.arange(s, device=audio.device)[None, :]
    keep = torch.ones(b, s, dtype=torch.bool, device=audio.device)
    span = length.float().cpu().clamp(min=1)
    for _ in range(N_TIME_MASKS):
        width = (torch.rand(b, generator=generator) * fraction * span).long()
        start = (torch.rand(b, generator=generator) * (span - width).clamp(min=1)).long()
        start, width = start.to(audio.device), width.to(audio.device)
        keep &= ~((idx >= start[:, None]) & (idx < (start + width)[:, None]))
    return audio * keep


def make_audio_views(backbone: Any, strength: float = 1.0) -> Callable:
    """``views(batch, generator) -> (a, b)`` for ``audio`` / ``length`` batches of ``backbone``."""
    strength = float(min(max(strength, 0.0), 1.0))
    rate = int(getattr(backbone, "sample_rate", 16000))

    def one(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        audio = as_float_audio(batch["audio"])
        length = batch["length"]
        device, b = audio.device, audio.shape[0]

        def uniform(low: float, high: float) -> torch.Tensor:
            return (low + (high - low) * torch.rand(b, generator=generator)).to(device)

        speed = uniform(1 - MAX_SPEED_DELTA * strength, 1 + MAX_SPEED_DELTA * strength)
        max_shift = MAX_SHIFT_SECONDS * strength * rate
        shift = uniform(-max_shift, max_shift).round()
        audio, length = speed_and_shift(audio, length, speed, shift)
        noise_gen = torch.Generator(device=device)
        noise_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        audio = add_noise(audio, length, uniform(SNR_HIGH_DB - SNR_SPAN_DB * strength, SNR_HIGH_DB),
                          noise_gen)
        audio = time_mask(audio, length, MASK_FRACTION * strength, generator)
        out = {k: v for k, v in batch.items() if k != "input_features"}
        return {**out, "audio": audio, "length": length}

    def views(batch: dict[str, torch.Tensor], generator: torch.Generator):
        return one(batch, generator), one(batch, generator)

    return views
