"""Waveform and spectrogram augmentation."""

from __future__ import annotations

import math

import torch

from automl_pt_speech.augment import add_noise, make_augment, spec_augment, speed_and_shift


def test_speed_and_shift_identity_shift_and_speed():
    audio = torch.arange(1, 101, dtype=torch.float32)[None].repeat(3, 1)
    audio[:, 80:] = 0
    length = torch.tensor([80, 80, 80])
    out, new = speed_and_shift(audio, length, torch.tensor([1.0, 1.0, 2.0]),
                               torch.tensor([0.0, 10.0, 0.0]))
    torch.testing.assert_close(out[0, :79], audio[0, :79])
    torch.testing.assert_close(out[1, 10:89], audio[1, :79])
    assert (out[1, :10] == 0).all()
    torch.testing.assert_close(out[2, :39], audio[2, 0:78:2])     # twice as fast: every other sample
    assert new.tolist() == [79, 89, 40]


def test_noise_has_the_requested_snr():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    audio = (0.3 * torch.sin(2 * math.pi * 440 * t))[None].repeat(2, 1)
    noisy = add_noise(audio, torch.tensor([16000, 8000]), torch.tensor([10.0, 20.0]), g)
    noise = noisy - audio
    for i, (n, snr) in enumerate(((16000, 10.0), (8000, 20.0))):
        measured = 10 * torch.log10(audio[i, :n].pow(2).mean() / noise[i, :n].pow(2).mean())
        assert abs(float(measured) - snr) < 0.3
    assert (noise[1, 8000:] == 0).all()                          # padding stays silent


def test_spec_augment_masks_within_bounds():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4, 80, 200)
    masked = spec_augment(feats, torch.tensor([200, 200, 100, 50]), 1.0, g, time_axis=2)
    changed = masked != feats
    assert changed.any()
    frac = changed.float().mean(dim=(1, 2))
    assert (frac < 0.45).all()
    time_masked = changed.all(dim=1)          # (B, frames): whole columns are time masks
    assert time_masked.any()
    for i, valid in enumerate((200, 200, 100, 50)):
        assert not time_masked[i, valid:].any()    # time masks stay inside the valid frames
    freq_masked = changed.all(dim=2)          # whole rows are frequency masks
    assert freq_masked.any() and (freq_masked.sum(dim=1) <= 2 * 8).all()


class FakeSpecBackbone:
    sample_rate, takes_spectrogram, kind, hop_length = 16000, True, "whisper", 160

    def spectrogram(self, audio, length):
        return audio.unfold(1, 160, 160).transpose(1, 2).abs()   # (B, 160 "bins", frames)


def test_augment_is_reproducible_and_scales_with_strength():
    assert make_augment(FakeSpecBackbone(), 0.0) is None
    slow_wave = torch.sin(2 * math.pi * 5 * torch.arange(16000) / 16000)  # shifts change it smoothly
    batch = {"audio": (slow_wave * 16000).to(torch.int16)[None].repeat(8, 1),
             "length": torch.full((8,), 12000)}
    batch["audio"][:, 12000:] = 0

    def run(strength, seed):
        return make_augment(FakeSpecBackbone(), strength)(dict(batch), torch.Generator().manual_seed(seed))

    a, b, c = run(0.5, 3), run(0.5, 3), run(0.5, 4)
    torch.testing.assert_close(a["audio"], b["audio"])
    assert not torch.equal(a["audio"], c["audio"])
    assert a["input_features"].shape == (8, 160, 100)
    original = batch["audio"].float() / 32768
    weak = (run(0.1, 3)["audio"] - original).abs().mean()
    strong = (run(1.0, 3)["audio"] - original).abs().mean()
    assert strong > weak > 0
    assert a["audio"].dtype == torch.float32 and a["length"].dtype == torch.int64
