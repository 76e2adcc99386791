"""The plugin host: hookspecs, fresh managers, entry points, allow / block lists, broken plugins."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from automl_pt import PluginError, hookimpl, hookspecs
from automl_pt.plugins import create_plugin_host
from automl_pt.registry import BackboneInfo, Metric, TaskInfo


def test_hookspecs_are_prefixed_typed_and_documented():
    specs = [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, "automl_pt_spec")]
    assert len(specs) >= 8
    for name, func in specs:
        assert name.startswith("automl_pt_")
        assert func.__doc__ and len(func.__doc__.strip()) > 40, name
        sig = inspect.signature(func)
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name


def test_builtins_only_when_entry_points_off():
    host = create_plugin_host(entry_points=False)
    names = {p.name for p in host.plugins}
    assert names == {"tables", "metrics", "search_space", "objectives", "export_formats"}
    assert all(p.builtin for p in host.plugins)
    assert list(host.registry.export_formats) == ["native", "safetensors", "onnx", "torchscript"]
    assert list(host.registry.objectives) == ["contrastive"]
    assert {"accuracy", "macro_f1"} <= set(host.registry.metrics)
    assert "table" in host.registry.readers
    assert host.registry.tasks == {}


class ToyPlugin:
    """A third-party plugin given as an object."""

    @hookimpl
    def automl_pt_register_tasks(self, register):
        from automl_pt.model import ClassificationTask

        register.task(TaskInfo("toy-task", "toy", ClassificationTask, ("accuracy",), "accuracy",
                               "toy_column"))

    @hookimpl
    def automl_pt_register_backbones(self, register):
        register.backbone(BackboneInfo("toy-net", "toy", load=lambda options: None, source="nowhere"))

    @hookimpl
    def automl_pt_resolve_backbone(self, name, modality):
        if modality == "toy" and name.startswith("toy:"):
            return BackboneInfo(name, "toy", load=lambda options: None)
        return None


def test_registering_a_plugin_object():
    host = create_plugin_host(entry_points=False, extra=[ToyPlugin()])
    assert host.registry.tasks["toy-task"].plugin == "ToyPlugin"
    assert host.registry.find_backbone("toy-net").source == "nowhere"
    assert host.hook.automl_pt_resolve_backbone(name="toy:x", modality="toy").name == "toy:x"
    assert host.hook.automl_pt_resolve_backbone(name="toy:x", modality="text") is None
    record = [p for p in host.plugins if not p.builtin][0]
    assert record.hooks == sorted(["automl_pt_register_tasks", "automl_pt_register_backbones",
                                   "automl_pt_resolve_backbone"])


def test_each_host_is_fresh():
    a = create_plugin_host(entry_points=False, extra=[ToyPlugin()])
    b = create_plugin_host(entry_points=False)
    assert "toy-task" in a.registry.tasks and "toy-task" not in b.registry.tasks


def test_unknown_hook_is_rejected_by_check_pending():
    class Typo:
        @hookimpl
        def automl_pt_register_taks(self, register):
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        create_plugin_host(entry_points=False, extra=[Typo()])


def test_duplicate_registration_names_both_plugins():
    class Dup:
        @hookimpl
        def automl_pt_register_metrics(self, register):
            register.metric(Metric("accuracy", lambda a, b, c: 0.0))

    host = create_plugin_host(entry_points=False, extra=[Dup()])
    with pytest.raises(PluginError, match="registered twice: by plugin 'metrics' and by plugin"):
        host.registry


def test_plugin_bug_is_reported_by_name():
    class Buggy:
        @hookimpl
        def automl_pt_register_backbones(self, register):
            raise RuntimeError("boom")

    host = create_plugin_host(entry_points=False, extra=[Buggy()])
    with pytest.raises(PluginError, match="failed in automl_pt_register_backbones: RuntimeError: boom"):
        host.registry


def test_missing_extra_module_is_a_clear_error():
    with pytest.raises(PluginError, match="'no_such_plugin_module' could not be loaded"):
        create_plugin_host(entry_points=False, extra=["no_such_plugin_module"])


@pytest.fixture
def fake_dists(tmp_path, monkeypatch):
    """Two installed distributions with automl_pt entry points: one fine, one broken."""
    for name, body in (("good_plugin", "from automl_pt import hookimpl\n"
                        "@hookimpl\ndef automl_pt_register_metrics(register):\n"
                        "    from automl_pt.registry import Metric\n"
                        "    register.metric(Metric('always_one', lambda a, b, c: 1.0))\n"),
                       ("broken_plugin", "import no_such_dependency_xyz\n")):
        (tmp_path / f"{name}.py").write_text(body)
        dist = tmp_path / f"{name}-1.2.3.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
        (dist / "entry_points.txt").write_text(f"[automl_pt]\n{name.split('_')[0]} = {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_points_load_and_broken_one_is_reported(fake_dists, monkeypatch):
    monkeypatch.delenv("AUTOML_PT_PLUGINS", raising=False)
    monkeypatch.delenv("AUTOML_PT_DISABLE_PLUGINS", raising=False)
    host = create_plugin_host()
    names = {p.name: p for p in host.plugins}
    assert names["good"].version == "1.2.3"
    assert "always_one" in host.registry.metrics
    assert "broken" in host.failed
    assert "no_such_dependency_xyz" in host.failed["broken"]
    assert "broken" not in names


def test_allow_and_block_lists(fake_dists, monkeypatch):
    monkeypatch.setenv("AUTOML_PT_PLUGINS", "good")
    host = create_plugin_host()
    assert "good" in {p.name for p in host.plugins} and not host.failed
    assert "text" not in {p.name for p in host.plugins}
    monkeypatch.delenv("AUTOML_PT_PLUGINS")
    monkeypatch.setenv("AUTOML_PT_DISABLE_PLUGINS", "broken,good")
    host = create_plugin_host()
    assert not host.failed and "good" not in {p.name for p in host.plugins}
    monkeypatch.setenv("AUTOML_PT_PLUGINS", "")
    monkeypatch.delenv("AUTOML_PT_DISABLE_PLUGINS")
    assert all(p.builtin for p in create_plugin_host().plugins)


def test_cli_plugins_lists_broken_plugin_and_does_not_import_torch(fake_dists):
    env = {**os.environ, "PYTHONPATH": str(fake_dists)}
    env.pop("AUTOML_PT_PLUGINS", None)
    env.pop("AUTOML_PT_DISABLE_PLUGINS", None)
    code = textwrap.dedent("""
        import sys
        from automl_pt.cli import main
        rc = main(["plugins", "--json"])
        assert "torch" not in sys.modules, "plugins imported torch"
        sys.exit(rc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert {"name": "broken", "error": "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"} in out["failed"]
    plugins = {p["name"]: p for p in out["plugins"]}
    assert plugins["text"]["hooks"] and plugins["good"]["version"] == "1.2.3"
    proc = subprocess.run([sys.executable, "-m", "automl_pt.cli", "plugins"], capture_output=True,
                          text=True, env={**env, "COLUMNS": "200"})
    assert "plugin 'broken' failed to load" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_help_does_not_import_torch():
    code = ("import sys\nfrom automl_pt.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "run" in proc.stdout and "backbones" in proc.stdout


# -- the core names no modality: plugins hold that knowledge ------------------------------------
CORE = Path(__file__).resolve().parent.parent / "automl_pt"
#: names of one backbone library's inputs, models or configs
LIBRARY_WORDS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "input_values",
                 "whisper", "wav2vec", "last_hidden_state", "id2label", "automodel", "autotokenizer",
                 "create_model")
#: the export and model-card code must not branch on a modality or name a library
EXPORT_MODULES = ("export/predictor.py", "export/formats.py", "export/model_card.py", "export/support.py",
                  "builtin/export_formats.py")
MODALITY_WORDS = ("text", "image", "audio", "timm", "soundfile")


def _code_words(path: Path, names: bool = True) -> list[tuple[int, str]]:
    """``(line, text)`` of every string constant (and identifier, with ``names``) in ``path``,
    docstrings left out (they may explain what plugins do)."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.Name) and names:
            out.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and names:
            out.append((node.lineno, node.attr))
    return out


def test_core_code_names_no_backbone_library_input():
    """Sample inputs, input names, pooling and load snippets live in the plugins (hook
    ``automl_pt_export_support``): no core module's code names a library's inputs or models."""
    found = [f"{path.relative_to(CORE)}:{line}: {text!r}"
             for path in sorted(CORE.rglob("*.py")) for line, text in _code_words(path)
             if any(word in text.lower() for word in LIBRARY_WORDS)]
    assert not found, "\n".join(found)


def test_export_code_names_no_modality():
    """The export formats and model cards say nothing about a modality: no string in their
    code is a modality's name or a library's."""
    found = []
    for name in EXPORT_MODULES:
        for line, text in _code_words(CORE / name, names=False):
            words = set(re.findall(r"[a-z]+", text.lower()))
            found += [f"{name}:{line}: {text!r}" for w in MODALITY_WORDS if w in words]
    assert not found, "\n".join(found)
