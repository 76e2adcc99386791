from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_weight_cache(tmp_path_factory, monkeypatch):
    """Converted catalog weights go to one cache per test session, not the user's."""
    monkeypatch.setenv("AUTOML_PT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def vision_host():
    """A fresh plugin manager with entry points off and the vision plugin registered."""
    import automl_pt_vision

    from automl_pt.plugins import create_plugin_host

    return create_plugin_host(entry_points=False, extra=[automl_pt_vision])


@pytest.fixture(scope="session")
def tiny_timm(tmp_path_factory) -> Path:
    from automl_pt_vision.testing import make_tiny_timm

    return make_tiny_timm(tmp_path_factory.mktemp("models") / "tiny-timm", image_size=32)
