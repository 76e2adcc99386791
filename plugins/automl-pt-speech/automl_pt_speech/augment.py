"""Training-time audio augmentation on the device, with one ``strength`` knob in [0, 1].

On every training batch (waveforms, see :class:`~automl_pt_speech.preprocess.AudioPreprocessor`):

* speed perturbation: resampled by a factor in ``1 ± 0.15·strength`` (tempo and pitch, like
  ``sox speed``), by linear interpolation;
* time shift: the clip moves by up to ``± 0.1·strength`` s inside its padded buffer;
* additive white noise at an SNR drawn from ``[40 − 30·strength, 40]`` dB, per clip, measured on
  the clip's own power;
* SpecAugment when the backbone consumes a spectrogram (Whisper, AST): two frequency masks up
  to ``10·strength`` % of the mel bins and two time masks up to ``10·strength`` % of the frames;
  the masked spectrogram is handed to the backbone as ``input_features``.

Random numbers come from the trial's generator (reproducible per seed), drawn on the device.
"""

from __future__ import annotations

import math

from typing import Any, Callable

import torch

MAX_SPEED_DELTA = 0.15
MAX_SHIFT_SECONDS = 0.1
SNR_HIGH_DB = 40.0
SNR_SPAN_DB = 30.0
MASK_FRACTION = 0.10
N_MASKS = 2


def as_float_audio(audio: torch.Tensor) -> torch.Tensor:
    """Waveforms as float in [-1, 1]: int16 PCM (the decode cache's format) is scaled."""
    if audio.dtype == torch.int16:
        return audio.float() / 32768.0
    return audio.float()


def _uniform(g: torch.Generator, n: int, low: Any, high: Any, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def speed_and_shift(audio: torch.Tensor, length: torch.Tensor, speed: torch.Tensor,
                    shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip: output sample ``i`` reads input position ``(i - shift) * speed`` (linear
    interpolation), zero outside the clip. Returns the new audio and valid lengths."""
    b, s = audio.shape
    i = torch.arange(s, device=audio.device, dtype=torch.float32)[None, :]
    pos = (i - shift[:, None]) * speed[:, None]
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long()
    valid = (pos >= 0) & (lo + 1 < length[:, None])
    lo_c = lo.clamp(0, s - 1)
    hi_c = (lo + 1).clamp(0, s - 1)
    out = torch.gather(audio, 1, lo_c) * (1 - frac) + torch.gather(audio, 1, hi_c) * frac
    out = out * valid
    # new valid end: one past the last output sample whose source lies inside the clip
    end = (valid * torch.arange(1, s + 1, device=audio.device)[None, :]).amax(dim=1)
    return out, end.clamp(min=1)


def add_noise(audio: torch.Tensor, length: torch.Tensor, snr_db: torch.Tensor,
              g: torch.Generator) -> torch.Tensor:
    mask = (torch.arange(audio.shape[1], device=audio.device)[None, :] < length[:, None]).float()
    power = (audio ** 2 * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    sigma = torch.sqrt(power / 10 ** (snr_db / 10))
    noise = torch.randn(audio.shape, generator=g, device=audio.device)
    return audio + noise * sigma[:, None] * mask


def spec_augment(features: torch.Tensor, valid_frames: torch.Tensor, strength: float,
                 g: torch.Generator, time_axis: int) -> torch.Tensor:
    """Mask ``N_MASKS`` frequency bands and time spans per example with the example's mean.
    ``features`` is ``(B, F, T)`` (``time_axis=2``) or ``(B, T, F)`` (``time_axis=1``)."""
    feats = features.clone()
    b = feats.shape[0]
    n_time, n_freq = feats.shape[time_axis], feats.shape[3 - time_axis]
    fill = feats.mean(dim=(1, 2), keepdim=True)
    t_idx = torch.arange(n_time, device=feats.device)[None, :]
    f_idx = torch.arange(n_freq, device=feats.device)[None, :]
    mask_t = torch.zeros(b, n_time, dtype=torch.bool, device=feats.device)
    mask_f = torch.zeros(b, n_freq, dtype=torch.bool, device=feats.device)
    for _ in range(N_MASKS):
        width = (torch.rand(b, generator=g, device=feats.device) * MASK_FRACTION * strength * n_freq).long()
        start = (torch.rand(b, generator=g, device=feats.device) * (n_freq - width).clamp(min=1)).long()
        mask_f |= (f_idx >= start[:, None]) & (f_idx < (start + width)[:, None])
        span = valid_frames.float().clamp(min=1)
        width = (torch.rand(b, generator=g, device=feats.device) * MASK_FRACTION * strength * span).long()
        start = (torch.rand(b, generator=g, device=feats.device) * (span - width).clamp(min=1)).long()
        mask_t |= (t_idx >= start[:, None]) & (t_idx < (start + width)[:, None])
    if time_axis == 2:
        full = mask_f[:, :, None] | mask_t[:, None, :]
    else:
        full = mask_t[:, :, None] | mask_f[:, None, :]
    return torch.where(full, fill.expand_as(feats), feats)


def make_augment(backbone: Any, strength: float) -> Callable | None:
    """The ``augment(batch, generator)`` callable for ``backbone``, or ``None`` at strength 0."""
    strength = float(strength)
    if strength <= 0:
        return None
    rate = int(getattr(backbone, "sample_rate", 16000))

    def augment(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        audio = as_float_audio(batch["audio"])
        length = batch["length"]
        device, b = audio.device, audio.shape[0]
        g = torch.Generator(device=device)
        g.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        speed = _uniform(g, b, 1 - MAX_SPEED_DELTA * strength, 1 + MAX_SPEED_DELTA * strength, device)
        max_shift = MAX_SHIFT_SECONDS * strength * rate
        shift = _uniform(g, b, -max_shift, max_shift, device).round()
        if getattr(backbone, "masks_padding", False):
            # batches are trimmed to their longest clip: leave it room to slow down or shift
            delta = MAX_SPEED_DELTA * strength
            room = int(math.ceil(audio.shape[1] * delta / (1 - delta) + max_shift))
            audio = torch.nn.functional.pad(audio, (0, room))
        audio, length = speed_and_shift(audio, length, speed, shift)
        snr = _uniform(g, b, SNR_HIGH_DB - SNR_SPAN_DB * strength, SNR_HIGH_DB, device)
        audio = add_noise(audio, length, snr, g)
        out = {**batch, "audio": audio, "length": length}
        if getattr(backbone, "takes_spectrogram", False):
            feats = backbone.spectrogram(audio, length)
            time_axis = 2 if backbone.kind == "whisper" else 1
            hop = int(getattr(backbone, "hop_length", 160))  # 10 ms frames for both front-ends
            valid = torch.div(length + hop - 1, hop, rounding_mode="floor").clamp(1, feats.shape[time_axis])
            out["input_features"] = spec_augment(feats, valid, strength, g, time_axis)
        return out

    return augment
