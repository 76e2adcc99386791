"""The plugin host: builds a pluggy manager in a function, never at import time.

Built-in behaviour is registered as ordinary plugins (``automl_pt.builtin.*``); third-party
plugins come from the ``automl_pt`` entry-point group; a study can name extra plugin modules.

Escape hatches (comma-separated plugin names):

* ``AUTOML_PT_PLUGINS``: load only these entry-point plugins (empty string: none);
* ``AUTOML_PT_DISABLE_PLUGINS``: never load these.

A plugin that fails to import is recorded in :attr:`PluginHost.failed` with its error and reported
by ``automl-pt plugins``; it does not stop the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, PluginNotFoundError
from .registry import BackboneInfo, Registry

hookimpl = pluggy.HookimplMarker("automl_pt")

ENTRY_POINT_GROUP = "automl_pt"
ALLOW_ENV = "AUTOML_PT_PLUGINS"
BLOCK_ENV = "AUTOML_PT_DISABLE_PLUGINS"

BUILTIN_PLUGINS = (
    "automl_pt.builtin.tables",
    "automl_pt.builtin.metrics",
    "automl_pt.builtin.search_space",
    "automl_pt.builtin.objectives",
    "automl_pt.builtin.export_formats",
)


@dataclass
class PluginRecord:
    """One registered plugin: its pluggy ``name`` (the entry-point name, or the module / object
    name of a plugin registered by the caller), the ``module`` it came from, and the installed
    ``distribution`` that provides it with its ``version`` ("" and "?" when no installed package
    owns it)."""

    name: str
    module: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    distribution: str = ""


@dataclass
class PluginHost:
    """A plugin manager plus what was loaded, what failed and the merged registry."""

    pm: pluggy.PluginManager
    plugins: list[PluginRecord]
    failed: dict[str, str]
    _registry: Registry | None = None

    @property
    def hook(self) -> Any:
        return self.pm.hook

    @property
    def registry(self) -> Registry:
        """Collect registrations from every plugin (once; cached)."""
        if self._registry is None:
            registry = Registry()
            for hook_name in ("automl_pt_register_metrics", "automl_pt_register_data_readers",
                              "automl_pt_register_tasks", "automl_pt_register_backbones",
                              "automl_pt_register_objectives", "automl_pt_register_export_formats"):
                caller = getattr(self.pm.hook, hook_name)
                for impl in caller.get_hookimpls():
                    registry.current_plugin = self.pm.get_name(impl.plugin) or ""
                    try:
                        impl.function(register=registry)
                    except PluginError:
                        raise
                    except Exception as exc:  # a plugin bug: name the plugin
                        raise PluginError(
                            f"plugin {registry.current_plugin!r} failed in {hook_name}: "
                            f"{type(exc).__name__}: {exc}") from exc
            registry.current_plugin = ""
            self._registry = registry
        return self._registry

    def record(self, name: str) -> PluginRecord | None:
        """The :class:`PluginRecord` of the plugin registered as ``name`` (``None`` if unknown)."""
        return next((r for r in self.plugins if r.name == name), None)

    def resolve_backbone(self, name: str, modality: str, only: str | None = None) -> Any:
        """The first answer of the ``automl_pt_resolve_backbone`` hooks (pluggy's call order),
        as a :class:`BackboneInfo` whose ``plugin`` is the plugin that answered; ``None`` when
        none does. ``only``: ask that plugin alone (the one that wrote an exported model), so
        another plugin that claims the same folder is never asked."""
        from dataclasses import replace

        kwargs = {"name": name, "modality": modality}
        for impl in reversed(self.pm.hook.automl_pt_resolve_backbone.get_hookimpls()):
            plugin = self.pm.get_name(impl.plugin)
            if (only is not None and plugin != only) or impl.hookwrapper or getattr(impl, "wrapper", False):
                continue
            info = impl.function(*[kwargs[arg] for arg in impl.argnames])
            if info is not None:
                return info if info.plugin == plugin else replace(info, plugin=plugin)
        return None

    def failure_hint(self) -> str:
        if not self.failed:
            return ""
        return " (plugins that failed to load: " + "; ".join(
            f"{n}: {e.splitlines()[-1] if e else e}" for n, e in self.failed.items()) + ")"


def resolve_backbone(name: str, modality: str, host: Any) -> BackboneInfo | None:
    """A catalog backbone, else the first plugin's answer to ``automl_pt_resolve_backbone``;
    either way ``info.plugin`` names the plugin that provides it (the export records it)."""
    info = host.registry.find_backbone(name)
    if info is not None and info.modality == modality:
        return info
    return host.resolve_backbone(name, modality)


def _names_from_env(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _distribution(module_name: str, ep: metadata.EntryPoint | None = None) -> tuple[str, str]:
    """``(distribution name, version)`` of the installed package that provides ``module_name``
    (or entry point ``ep``); ``("", "?")`` when no installed package owns it."""
    if ep is not None and getattr(ep, "dist", None) is not None:
        return ep.dist.metadata["Name"] or ep.dist.name, ep.dist.version
    top = module_name.split(".")[0].split(":")[0]
    try:
        dists = metadata.packages_distributions().get(top, [])
        if dists:
            return dists[0], metadata.version(dists[0])
    except Exception:
        pass
    return "", "?"


def import_plugin(item: str, base_dir: Path | None = None) -> Any:
    """The module a study's ``plugins`` entry names. ``base_dir`` is the study file's folder:
    a ``.py`` path is relative to it, and a module name is looked up there first (a plugin kept
    next to the study file loads whatever the current directory), then on ``sys.path``.
    A file plugin is imported under its file name's stem, once per process."""
    if item.endswith(".py"):
        path = Path(item).expanduser()
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        name = path.stem
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
            return loaded
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    top = item.split(".")[0]
    if base_dir is not None and ((base_dir / f"{top}.py").is_file()
                                 or (base_dir / top / "__init__.py").is_file()):
        sys.path.insert(0, str(base_dir))
        try:
            return importlib.import_module(item)
        finally:
            sys.path.remove(str(base_dir))
    return importlib.import_module(item)


def create_plugin_host(*, entry_points: bool = True, extra: Iterable[Any] = (),
                       builtins: bool = True, base_dir: str | Path | None = None) -> PluginHost:
    """Build a fresh plugin manager.

    ``entry_points=False`` skips installed plugins (tests use this for isolation); ``extra`` are
    plugin objects or module names / ``.py`` files to register too (a study's ``plugins`` list,
    resolved against ``base_dir``, the study file's folder: see :func:`import_plugin`).
    """
    pm = pluggy.PluginManager("automl_pt")
    pm.add_hookspecs(hookspecs)
    records: list[PluginRecord] = []
    failed: dict[str, str] = {}
    core_dist, core_version = _distribution("automl_pt")

    if builtins:
        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            pm.register(module, name=module_name.rsplit(".", 1)[-1])
            records.append(PluginRecord(module_name.rsplit(".", 1)[-1], module_name,
                                        core_version, True, distribution=core_dist))

    if entry_points:
        allow = _names_from_env(ALLOW_ENV)
        block = _names_from_env(BLOCK_ENV) or set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in block or (allow is not None and ep.name not in allow):
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:
                failed[ep.name] = f"{type(exc).__name__}: {exc}"
                continue
            dist, version = _distribution(ep.value, ep)
            records.append(PluginRecord(ep.name, ep.value, version, False, distribution=dist))

    for item in extra:
        try:
            plugin = (import_plugin(item, Path(base_dir) if base_dir is not None else None)
                      if isinstance(item, str) else item)
            name = item if isinstance(item, str) else (getattr(item, "__name__", None)
                                                        or type(item).__name__)
            if pm.has_plugin(name) or pm.is_registered(plugin):
                continue
            pm.register(plugin, name=name)
        except Exception as exc:  # a module the caller named: their input, not a plugin's bug
            raise PluginNotFoundError(f"plugin {item!r} could not be loaded: {type(exc).__name__}: "
                                      f"{exc}") from exc
        module_name = getattr(plugin, "__name__", None) or f"{type(plugin).__module__}:{name}"
        dist, version = _distribution(module_name)
        records.append(PluginRecord(name, module_name, version, False, distribution=dist))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {getattr(exc, 'plugin', '?')!r} implements an unknown hook: {exc}") from exc

    for record in records:
        plugin = pm.get_plugin(record.name)
        record.hooks = sorted(h.name for h in (pm.get_hookcallers(plugin) or []))
    return PluginHost(pm=pm, plugins=records, failed=failed)
