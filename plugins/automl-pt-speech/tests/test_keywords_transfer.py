"""The espeak-ng keyword builder, and real transfer: the shipped Whisper tiny.en encoder,
fine-tuned on a few synthesised keywords, beats the same architecture trained from scratch."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import automl_pt_speech
from automl_pt.plugins import create_plugin_host
from automl_pt_speech.audio import check_audio_file
from automl_pt_speech.keywords import build_keywords_dataset, plan_clips


def test_keyword_builder_writes_trees_and_tables(tmp_path, espeak):
    folders = build_keywords_dataset(tmp_path / "kw", words=("yes", "no", "stop"), per_word=10,
                                     seed=3, unlabeled_per_word=2)
    unlabeled = sorted(folders["unlabeled"].iterdir())   # flat, named by number only
    assert len(unlabeled) == 6 and all(f.name.startswith("clip-") for f in unlabeled)
    assert all(check_audio_file(f) is None for f in unlabeled)
    for split, n in (("train", 6), ("validation", 2), ("test", 2)):
        table = pd.read_csv(tmp_path / "kw" / f"{split}.csv")
        assert len(table) == 3 * n and sorted(set(table["label"])) == ["no", "stop", "yes"]
        for path, label in zip(table["audio"], table["label"]):
            assert path.startswith(f"{split}/{label}/")
            assert check_audio_file(tmp_path / "kw" / path) is None, path
        assert sorted(p.name for p in folders[split].iterdir()) == ["no", "stop", "yes"]
    suffixes = {p.suffix for p in (tmp_path / "kw").rglob("*.*") if p.suffix != ".csv"}
    assert suffixes <= {".wav", ".flac", ".ogg"} and ".wav" in suffixes
    # the same seed plans the same clips; the voices vary
    again = plan_clips(("yes", "no", "stop"), 10, seed=3)
    assert again == plan_clips(("yes", "no", "stop"), 10, seed=3)
    assert len({c.voice for c in again}) > 10 and len({c.speed for c in again}) > 10


def keyword_study(tmp_path, data, backbone: str, name: str):
    from automl_pt import Study

    host = create_plugin_host(entry_points=False, extra=[automl_pt_speech])
    space = {"strategy": "full", "learning_rate": 3e-4, "head_lr_multiplier": 10.0, "epochs": 4,
             "batch_size": 16, "layer_decay": 1.0, "warmup_ratio": 0.1, "dropout": 0.0,
             "label_smoothing": 0.0, "weight_decay": 0.01, "schedule": "cosine",
             "pooling": "mean", "augmentation_strength": 0.0}
    return Study.from_config({
        "study": {"name": name, "trials": 1, "seed": 0},
        "task": {"type": "audio-classification"},
        "data": {"train": str(data / "train"), "validation": str(data / "validation"),
                 "test": str(data / "test.csv")},
        "search": {"backbones": [backbone], "pruner": "none", "space": space},
        "resources": {"devices": "cpu", "workers": "inline"},
        "storage": {"dir": str(tmp_path / name)},
    }, host=host).run(progress=False)


@pytest.mark.slow
def test_whisper_tiny_en_transfers_to_keywords(tmp_path, espeak, whisper_ct2):
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from automl_pt_speech.backbones import quiet_transformers
    from automl_pt_speech.whisper_ct2 import converted_whisper_dir

    quiet_transformers()

    data = tmp_path / "kw"
    build_keywords_dataset(data, words=("yes", "no", "up", "down", "left", "right"), per_word=30,
                           unlabeled_per_word=0, seed=7)
    # the same architecture, randomly initialised (a local encoder-only folder)
    config = WhisperConfig.from_pretrained(converted_whisper_dir(whisper_ct2, "whisper-tiny-en"))
    torch.manual_seed(0)
    WhisperEncoder(config).save_pretrained(str(tmp_path / "random-whisper-tiny"))

    pretrained = keyword_study(tmp_path, data, "whisper-tiny-en", "pretrained")
    scratch = keyword_study(tmp_path, data, str(tmp_path / "random-whisper-tiny"), "scratch")
    acc_pre = pretrained.test_metrics["accuracy"]
    acc_scratch = scratch.test_metrics["accuracy"]
    print(f"whisper-tiny-en {acc_pre:.3f} vs random init {acc_scratch:.3f} (chance 0.167)")
    (tmp_path / "transfer.json").write_text(json.dumps({"pretrained": acc_pre, "scratch": acc_scratch}))
    assert acc_pre >= 0.75
    assert acc_pre >= acc_scratch + 0.3
