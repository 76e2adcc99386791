"""automl_pt: turn a pretrained backbone into the best fine-tuned model for your data.

The public API is imported lazily so that ``import automl_pt`` (and ``automl-pt --help``) does not
import torch.
"""

from __future__ import annotations

from typing import Any

from .errors import AutomlError, BackboneError, ConfigError, DataError, ModelLoadError, PluginError
from .plugins import create_plugin_host, hookimpl

__version__ = "0.1.0"

__all__ = ["AutomlError", "BackboneError", "ConfigError", "DataError", "ModelLoadError",
           "PluginError", "Study", "create_plugin_host", "fit", "hookimpl", "label_efficiency", "load",
           "load_config", "results", "run"]

_LAZY = {"Study": "study", "run": "study", "results": "study", "load": "export",
         "load_config": "config", "config_from_dict": "config", "Results": "store",
         "label_efficiency": "efficiency", "fit": "autofit"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'automl_pt' has no attribute {name!r}")
