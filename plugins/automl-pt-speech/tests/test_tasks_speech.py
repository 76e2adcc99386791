"""audio-regression and audio-multilabel on the shipped Whisper tiny.en encoder, from tables of
clips synthesised with espeak-ng: the frozen-feature probe beats a trivial baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

WORDS = ("yes", "stop", "left")


def _clips(tmp_path, specs_and_targets, column: str) -> None:
    from automl_pt_speech.keywords import synthesize, write_clip

    rows = []
    (tmp_path / "clips").mkdir(parents=True, exist_ok=True)
    for i, (spec, target) in enumerate(specs_and_targets):
        audio, rate = synthesize(spec)
        path = write_clip(spec, audio, rate, tmp_path / "clips" / f"{i:03d}")
        rows.append({"audio": f"clips/{path.name}", column: target})
    n = len(rows)
    cut = (int(n * 0.6), int(n * 0.8))
    for name, part in (("train", rows[:cut[0]]), ("validation", rows[cut[0]:cut[1]]), ("test", rows[cut[1]:])):
        pd.DataFrame(part).to_csv(tmp_path / f"{name}.csv", index=False)


def _spec(word: str, i: int, rng, speed: int | None = None):
    from automl_pt_speech.keywords import ClipSpec, available_accents

    accents = [a for a in available_accents() if a.startswith("en")] or list(available_accents())
    return ClipSpec(word=word, index=i, voice=str(rng.choice(accents)),
                    speed=int(speed if speed is not None else rng.integers(120, 200)),
                    pitch=int(rng.integers(20, 80)), lead_silence=float(rng.uniform(0, 0.2)),
                    gain_db=float(rng.uniform(-6, 0)), noise="none", snr_db=30.0, fmt="wav")


def _study(tmp_path, kind: str, label_column: str):
    import automl_pt_speech

    from automl_pt import Study
    from automl_pt.plugins import create_plugin_host

    host = create_plugin_host(entry_points=False, extra=[automl_pt_speech])
    return Study.from_config({
        "study": {"name": f"audio-{kind}", "trials": 1, "seed": 0},
        "task": {"type": f"audio-{kind}"},
        "data": {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv"),
                 "test": str(tmp_path / "test.csv"), "audio_column": "audio",
                 "label_column": label_column},
        "search": {"backbones": ["whisper-tiny-en"], "pruner": "none",
                   "space": {"strategy": "linear_probe", "pooling": "mean"}},
        "resources": {"devices": "cpu", "workers": "inline"},
        "storage": {"dir": str(tmp_path / "run")},
    }, host=host).run(progress=False)


@pytest.mark.slow
def test_audio_regression_predicts_the_speaking_rate(tmp_path, espeak, whisper_ct2):
    rng = np.random.default_rng(0)
    specs = []
    for i in range(80):
        speed = int(rng.integers(80, 320))
        specs.append((_spec(str(rng.choice(WORDS)), i, rng, speed), speed))
    _clips(tmp_path, specs, "wpm")
    results = _study(tmp_path, "regression", "wpm")
    test = json.loads((results.best_model_dir / "metrics.json").read_text())["test"]
    print(f"audio-regression (speaking rate) test r2 {test['r2']:.3f}, rmse {test['rmse']:.1f} wpm")
    assert test["r2"] > 0.3


@pytest.mark.slow
def test_audio_multilabel_hears_each_word_of_a_phrase(tmp_path, espeak, whisper_ct2):
    from automl_pt.builtin.metrics import micro_f1

    rng = np.random.default_rng(1)
    specs = []
    for i in range(80):
        words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 3)), replace=False)]
        specs.append((_spec(", ".join(words), i, rng), "|".join(sorted(words))))
    _clips(tmp_path, specs, "words")
    results = _study(tmp_path, "multilabel", "words")
    test = json.loads((results.best_model_dir / "metrics.json").read_text())["test"]
    names = sorted(WORDS)
    train = pd.read_csv(tmp_path / "train.csv")["words"]
    majority = set(train.value_counts().index[0].split("|"))
    truth = np.array([[n in s.split("|") for n in names] for s in pd.read_csv(tmp_path / "test.csv")["words"]])
    baseline = micro_f1(truth, np.array([[n in majority for n in names]] * len(truth)))
    print(f"audio-multilabel test micro_f1 {test['micro_f1']:.3f} vs majority {baseline:.3f}")
    assert test["micro_f1"] > baseline + 0.1
