"""Which installed plugin wrote an exported model folder, and what its manifest may tell the loader.

A model folder is data, never code (see :mod:`automl_pt.export.predictor`): the manifest
(``automl_pt.json``) may hold plain preprocessing values for the backbone loader
(:data:`LOADER_OPTIONS`) and *names* the plugin that wrote it, which must already be installed
(entry point or built-in) or be in the plugin host the caller passes. Nothing here imports a
module, and ``trust_remote_code`` is only ever the caller's argument.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

#: The only ``data_options`` a manifest may hold (name -> type; a positive value or null): the
#: plain preprocessing values the backbone loaders and preprocessors read.
LOADER_OPTIONS: dict[str, type] = {"max_length": int, "image_size": int}

#: How a caller allows code shipped with a model (loaders cite it when they refuse such a model).
TRUST_HINT = ("running code shipped with a model is the caller's choice only, for sources you trust: "
              "automl-pt predict --trust-remote-code, automl_pt.load(DIR, trust_remote_code=True)")


def loader_options(data_options: Any, where: Path, base_dir: Path,
                   trust_remote_code: bool = False) -> dict[str, Any]:
    """The options handed to the backbone loader and preprocessor of an exported model: the
    manifest's ``data_options`` (only :data:`LOADER_OPTIONS`), ``base_dir`` and the caller's
    ``trust_remote_code`` (true only when it is ``True``). Raises :class:`ModelLoadError` naming
    ``where`` (the manifest) and the key for any other key or a value of the wrong type."""
    data_options = {} if data_options is None else data_options
    if not isinstance(data_options, dict):
        raise ModelLoadError(f"{where}: data_options must be an object, got {type(data_options).__name__}")
    options: dict[str, Any] = {}
    for key, value in data_options.items():
        kind = LOADER_OPTIONS.get(key)
        if kind is None:
            hint = f"; {TRUST_HINT}" if "trust" in str(key) or "remote" in str(key) else ""
            raise ModelLoadError(f"{where}: data_options key {key!r} is not a preprocessing setting "
                                 f"(allowed: {', '.join(LOADER_OPTIONS)}){hint}")
        if value is not None and (type(value) is not kind or value < 1):
            raise ModelLoadError(f"{where}: data_options.{key} must be a positive {kind.__name__} or "
                                 f"null, got {value!r}")
        options[key] = value
    return {**options, "base_dir": str(base_dir), "trust_remote_code": trust_remote_code is True}


def class_path(obj: Any) -> str:
    """``module.QualName`` of ``type(obj)``: the backbone class an export records."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def plugin_provenance(host: Any, name: str) -> dict[str, str]:
    """What a manifest records about plugin ``name`` of ``host``: its pluggy name, module,
    installed distribution and version ("" / "?" where no installed package owns it)."""
    record = host.record(name)
    return {"plugin": name, "module": record.module if record else "",
            "distribution": record.distribution if record else "",
            "version": record.version if record else "?"}


def installed_plugin(host: Any, recorded: Any, what: str, where: Path) -> str:
    """The name under which ``host`` has the plugin a manifest records under ``what``
    (``backbone_plugin`` / ``task_plugin``): same name and module, else same module (an
    entry-point plugin registered under another name), else same name. Never imports anything.
    Raises :class:`ModelLoadError` naming the package to install when it is not there."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("plugin"), str) \
            or not recorded["plugin"]:
        raise ModelLoadError(f"{where}: {what} must name the plugin that wrote this model; "
                             "re-export it with this version of automl_pt")
    name, module = recorded["plugin"], str(recorded.get("module") or "")
    registered = {n: (host.record(n).module if host.record(n) else "") for n, _ in host.pm.list_name_plugin()}
    for found in ([n for n, m in registered.items() if n == name and m == module],
                  [n for n, m in registered.items() if module and m == module],
                  [n for n in registered if n == name]):
        if found:
            return found[0]
    dist, version = str(recorded.get("distribution") or ""), str(recorded.get("version") or "?")
    state = (f"which failed to load ({host.failed[name].splitlines()[-1]})" if name in host.failed
             else "which is not installed")
    from ..plugins import ALLOW_ENV, BLOCK_ENV

    blocked = [var for var in (ALLOW_ENV, BLOCK_ENV) if os.environ.get(var) is not None]
    if blocked and name not in host.failed:
        state += f" (or is left out by {' / '.join(blocked)})"
    if dist:
        raise ModelLoadError(f"{where}: this model was written by plugin {name!r} ({dist} {version}), "
                             f"{state}: pip install {dist}")
    raise ModelLoadError(f"{where}: this model was written by plugin {name!r} (module {module or '?'}, "
                         f"not from an installed package), {state}; install the package that "
                         "provides it, or pass a plugin host that has it: automl_pt.load(DIR, host=...)")


def check_backbone_class(backbone: Any, manifest: dict[str, Any], plugin: str, where: Path) -> None:
    """:class:`ModelLoadError` unless the loaded ``backbone`` is of the class the manifest
    records (``backbone_class``): another class would preprocess inputs differently."""
    want = manifest.get("backbone_class")
    got = class_path(backbone)
    if got != want:
        recorded = manifest.get("backbone_plugin") or {}
        raise ModelLoadError(f"{where}: plugin {plugin!r} loaded the backbone as {got}, but this model "
                             f"was exported with backbone class {want} (by {recorded.get('distribution') or plugin} "
                             f"{recorded.get('version', '?')}); install that version or re-export")
