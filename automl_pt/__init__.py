"""automl_pt: turn a pretrained backbone into the best fine-tuned model for your data.

The public API is imported lazily so that ``import automl_pt`` (and ``automl-pt --help``) does not
import torch.
"""

from __future__ import annotations

from typing import Any

from .errors import AutomlError, BackboneError, ConfigError, DataError, ModelLoadError, PluginError
from .plugins import create_plugin_host, hookimpl

from .core.version import __version__

__all__ = ["AutomlError", "BackboneError", "ConfigError", "DataError", "ModelLoadError",
           "PluginError", "Study", "create_plugin_host", "fit", "hookimpl", "label_efficiency", "load",
           "load_config", "results", "run"]

_LAZY = {"Study": "engine.study", "run": "engine.study", "results": "engine.study",
         "load": "export.predictor", "load_config": "spec.config", "config_from_dict": "spec.config",
         "Results": "storage.store",
         "label_efficiency": "efficiency", "fit": "autofit"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'automl_pt' has no attribute {name!r}")
