"""Audio decoding, resampling, bad-file checks, the folder reader and the preprocessor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from automl_pt.errors import DataError
from automl_pt_speech.audio import check_audio_file, read_audio, resample
from automl_pt_speech.preprocess import AudioPreprocessor


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_pitch_and_duration(rate):
    out = resample(sine(440.0, rate, 1.0), rate, 16000)
    assert abs(len(out) - 16000) <= 1
    assert abs(peak_frequency(out, 16000) - 440.0) < 2.0
    assert 0.45 < np.abs(out[1000:-1000]).max() < 0.55


def test_scipy_fallback_matches_soxr(monkeypatch):
    import builtins

    x = sine(1000.0, 44100, 0.5) + sine(3000.0, 44100, 0.5, 0.2)
    with_soxr = resample(x, 44100, 16000)
    real_import = builtins.__import__

    def no_soxr(name, *args, **kwargs):
        if name == "soxr":
            raise ImportError("no soxr")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_soxr)
    with_scipy = resample(x, 44100, 16000)
    assert len(with_scipy) == len(with_soxr)
    middle = slice(200, -200)
    assert np.abs(with_scipy[middle] - with_soxr[middle]).max() < 0.02


@pytest.mark.parametrize("fmt, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_formats_decode_and_stereo_is_averaged(tmp_path, fmt, subtype):
    left, right = sine(500.0, 22050, 0.5, 0.6), sine(500.0, 22050, 0.5, 0.2)
    path = tmp_path / f"clip.{fmt}"
    sf.write(str(path), np.stack([left, right], axis=1), 22050, subtype=subtype)
    audio = read_audio(path, 16000)
    assert audio.dtype == np.float32 and abs(len(audio) - 8000) <= 1
    assert abs(np.abs(audio[500:-500]).max() - 0.4) < 0.03     # the mean of 0.6 and 0.2
    assert abs(peak_frequency(audio, 16000) - 500.0) < 4.0
    assert len(read_audio(path, 16000, max_samples=3000)) == 3000


def test_bad_files_are_explained(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), sine(300, 16000, 0.2), 16000)
    text_as_wav = tmp_path / "notes.wav"
    text_as_wav.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, np.float32), 16000)
    silent = tmp_path / "silent.flac"
    sf.write(str(silent), np.zeros(8000, np.float32), 16000)
    wrong_ext = tmp_path / "clip.txt"
    wrong_ext.write_bytes(good.read_bytes())
    assert check_audio_file(good) is None
    assert "cannot decode as audio" in check_audio_file(text_as_wav)
    assert "zero-length" in check_audio_file(empty)
    assert "silent" in check_audio_file(silent)
    assert "unsupported extension '.txt'" in check_audio_file(wrong_ext)
    assert check_audio_file(tmp_path / "missing.wav") == "file not found"


def test_preprocessor_derives_max_duration_and_pads_or_cuts(tmp_path):
    paths = []
    for i, seconds in enumerate([0.25, 0.5, 1.23]):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(str(paths[-1]), sine(400, 8000, seconds), 8000)
    prep = AudioPreprocessor(16000, limit_seconds=30.0)
    before = prep.fingerprint
    prep.fit([str(p) for p in paths])
    assert prep.max_seconds == pytest.approx(1.3)              # longest clip, rounded up to 0.1 s
    assert prep.fingerprint != before
    enc = prep.encode([str(p) for p in paths])
    assert enc["audio"].dtype == torch.int16 and enc["audio"].shape == (3, 20800)
    assert enc["length"].tolist() == [4000, 8000, 19680]
    assert (enc["audio"][0, 4000:] == 0).all() and enc["audio"][0, :4000].abs().max() > 10000
    capped = AudioPreprocessor(16000, limit_seconds=0.5)
    capped.fit([str(p) for p in paths])
    assert capped.max_seconds == 0.5
    assert capped.encode([str(paths[2])])["length"].tolist() == [8000]   # cut to the maximum
    prep.save(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "automl_pt_speech_preprocessor.json").read_text())
    assert saved == {"sample_rate": 16000, "max_seconds": 1.3}


def test_whisper_log_mel_matches_transformers_feature_extractor(tiny_models):
    from transformers import WhisperFeatureExtractor

    from automl_pt_speech.backbones import load_audio_backbone

    backbone = load_audio_backbone(str(tiny_models["whisper"]), "w", {}, {"window": 30.0})
    rng = np.random.default_rng(0)
    clips = [sine(440, 16000, 1.0) + rng.normal(0, 0.01, 16000).astype(np.float32),
             sine(2000, 16000, 2.5, 0.1)]
    want = WhisperFeatureExtractor(feature_size=80)(clips, sampling_rate=16000,
                                                    return_tensors="np")["input_features"]
    batch = torch.zeros(2, 40000)
    batch[0, :16000], batch[1] = torch.from_numpy(clips[0]), torch.from_numpy(clips[1])
    got = backbone.spectrogram(batch, torch.tensor([16000, 40000])).numpy()
    assert got.shape == want.shape == (2, 80, 3000)
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_audio_folder_reader_lists_every_visible_file(speech_host, tmp_path):
    from automl_pt.spec.data import read_frame

    for label in ("go", "stop"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        sf.write(str(tmp_path / "tree" / label / "a.wav"), sine(300, 16000, 0.1), 16000)
    (tmp_path / "tree" / "go" / "README.txt").write_text("stray")
    (tmp_path / "tree" / "go" / ".DS_Store").write_text("hidden")
    frame = read_frame(tmp_path / "tree", speech_host.registry,
                       {"input_column": "clip", "label_column": "word"}, "data.train")
    assert list(frame.columns) == ["clip", "word"]
    assert sorted(frame["word"]) == ["go", "go", "stop"]
    assert {p.rsplit("/", 1)[1] for p in frame["clip"]} == {"a.wav", "README.txt"}


def bad_data_study(tmp_path, tones, on_bad_file: str, backbone: str):
    import shutil

    from automl_pt import Study

    train = tmp_path / "train"
    shutil.copytree(tones["train"], train)
    (train / "low" / "broken.wav").write_text("not audio at all")
    sf.write(str(train / "mid" / "silent.wav"), np.zeros(4000, np.float32), 16000)
    (train / "high" / "notes.txt").write_text("stray file")
    return Study.from_config({
        "study": {"name": "bad-files", "trials": 1},
        "task": {"type": "audio-classification"},
        "data": {"train": str(train), "on_bad_file": on_bad_file},
        "search": {"backbones": [backbone], "pruner": "none",
                   "space": {"strategy": "linear_probe", "epochs": 1, "batch_size": 16}},
        "resources": {"devices": "cpu"}, "storage": {"dir": str(tmp_path / "run")},
    })


def test_bad_files_stop_the_study_with_their_paths(tmp_path, tones, tiny_models, speech_host):
    study = bad_data_study(tmp_path, tones, "error", str(tiny_models["whisper"]))
    study._host = speech_host
    with pytest.raises(DataError) as info:
        study.prepare()
    message = str(info.value)
    assert "3 bad file(s) in train" in message
    for name, reason in (("broken.wav", "cannot decode"), ("silent.wav", "silent"),
                         ("notes.txt", "unsupported extension")):
        line = [x for x in message.splitlines() if name in x]
        assert line and reason in line[0], message
    assert not (tmp_path / "run").exists()          # nothing written before the data is valid


@pytest.mark.slow
def test_bad_files_are_skipped_and_counted(tmp_path, tones, tiny_models, speech_host):
    import duckdb

    study = bad_data_study(tmp_path, tones, "skip", str(tiny_models["whisper"]))
    study._host = speech_host
    results = study.run(progress=False)
    assert results.study_row["best_value"] is not None
    con = duckdb.connect(str(tmp_path / "run" / "results.duckdb"), read_only=True)
    data = json.loads(con.execute("SELECT data FROM studies").fetchone()[0])
    con.close()
    assert data["skipped_total"] == 3 and data["skipped_bad_files"] == {"train": 3}
    assert data["train"] + data["validation"] == 48
