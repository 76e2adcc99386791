"""An exported model folder is data, never code: loading one (``automl_pt.load``, ``automl-pt
predict``) never runs code the folder brings (``trust_remote_code`` is the caller's choice only),
never imports a module the manifest names, and asks only the installed plugin that wrote the
folder to load it, checking that it builds the backbone class that was exported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import automl_pt
from automl_pt import hookimpl
from automl_pt.cli import main
from automl_pt.errors import ModelLoadError
from automl_pt.export.predictor import MANIFEST
from tests.support.exported import cached, text_best

TEXTS = ["rocket orbit the moon tonight", "bread and cheese soup", "the judge and the jury"]
ZEN = "Beautiful is better than ugly"


@pytest.fixture(scope="session")
def text_model(tmp_path_factory) -> Path:
    return cached(tmp_path_factory.getbasetemp() / "exported-models", "text", text_best)


@pytest.fixture
def model(text_model, tmp_path) -> Path:
    """A private copy of the exported text model, free to edit."""
    return Path(shutil.copytree(text_model, tmp_path / "model"))


def edit_manifest(folder: Path, **changes) -> dict:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest, indent=2))
    return manifest


def plant_remote_code(folder: Path, marker: Path) -> None:
    """``backbone/config.json`` points transformers' auto classes at ``backbone/evil.py``, which
    writes ``marker`` when it runs (and otherwise builds the same BERT, so nothing else fails)."""
    (folder / "backbone" / "evil.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the model folder ran its code')\n"
        "from transformers import BertConfig, BertModel\n\n"
        "class EvilConfig(BertConfig):\n    pass\n\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n")
    config_path = folder / "backbone" / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    config_path.write_text(json.dumps(config, indent=2))


@pytest.fixture
def modules_cache(tmp_path, monkeypatch) -> Path:
    """transformers copies remote code it runs into HF_MODULES_CACHE: keep that in tmp_path."""
    cache = tmp_path / "hf-modules"
    monkeypatch.setenv("HF_MODULES_CACHE", str(cache))
    import transformers.dynamic_module_utils as dmu

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(cache), raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return cache


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl_pt.cli", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)


def same(a, b) -> None:
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


# -- 1. remote code: only the caller can allow it ---------------------------------------------------
@pytest.mark.parametrize("data_options, key", [
    ({"max_length": 32, "trust_remote_code": True}, "trust_remote_code"),
    ({"max_length": True}, "max_length"),
    ({"max_length": "32"}, "max_length"),
    ({"image_size": [32, 32]}, "image_size"),
])
def test_manifest_data_options_are_only_plain_preprocessing_values(model, text_model, tmp_path,
                                                                    modules_cache, data_options, key):
    marker = tmp_path / "marker"
    plant_remote_code(model, marker)
    edit_manifest(model, data_options=data_options)
    with pytest.raises(ModelLoadError, match=rf"{MANIFEST}.*data_options.*{key}"):
        automl_pt.load(model)
    assert not marker.exists()
    edit_manifest(model, data_options={"max_length": 32})
    prediction = automl_pt.load(model).predict(TEXTS)   # transformers' own BERT, not evil.py
    assert not marker.exists()
    same(prediction, automl_pt.load(text_model).predict(TEXTS))


def test_trust_remote_code_is_the_callers_choice(model, monkeypatch):
    """``load(..., trust_remote_code=True)`` reaches transformers (checked on a folder without
    custom code, so nothing from a hub runs); without it transformers is told False."""
    import transformers

    asked = []
    for cls in (transformers.AutoModel, transformers.AutoTokenizer):
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=cls.__name__, **kwargs):
            asked.append((_name, kwargs.get("trust_remote_code")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    automl_pt.load(model)
    assert asked and all(trust is False for _, trust in asked)
    asked.clear()
    automl_pt.load(model, trust_remote_code=True)
    assert {name for name, _ in asked} == {"AutoModel", "AutoTokenizer"}
    assert all(trust is True for _, trust in asked)


def test_predict_cli_runs_folder_code_only_with_the_flag(model, tmp_path, modules_cache):
    marker = tmp_path / "marker"
    plant_remote_code(model, marker)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    edit_manifest(model, data_options={"max_length": 32, "trust_remote_code": True})
    proc = cli(["predict", str(model), "in.txt"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "trust_remote_code" in proc.stderr and "--trust-remote-code" in proc.stderr
    assert not marker.exists()

    edit_manifest(model, data_options={"max_length": 32})
    proc = cli(["predict", str(model), "in.txt"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 + len(TEXTS)
    assert not marker.exists()

    proc = cli(["predict", str(model), "in.txt", "--trust-remote-code"], tmp_path)  # the caller's choice
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_custom_code_model_without_trust_is_a_clear_error(model, tmp_path, modules_cache, capsys):
    """A folder whose architecture exists only as custom code refuses to load (exit 2) and says
    how the caller can allow it."""
    marker = tmp_path / "marker"
    plant_remote_code(model, marker)
    config_path = model / "backbone" / "config.json"
    config = json.loads(config_path.read_text())
    config["model_type"] = "evil-bert"
    config_path.write_text(json.dumps(config))
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["predict", str(model), str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err
    assert "custom code" in err and "--trust-remote-code" in err
    assert not marker.exists()


# -- 2. a manifest never names a module to import ----------------------------------------------------
def test_manifest_plugins_are_never_imported(model, tmp_path):
    marker = tmp_path / "marker"
    work = tmp_path / "work"
    work.mkdir()
    (work / "helpers.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n")
    (work / "in.txt").write_text("\n".join(TEXTS) + "\n")
    edit_manifest(model, plugins=["this", "helpers"])
    proc = cli(["predict", str(model), "in.txt"], work)     # python -m puts the cwd on sys.path
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert ZEN not in proc.stdout and ZEN not in proc.stderr
    assert proc.stdout.splitlines()[0].startswith("label,confidence")


def test_manifest_plugins_are_never_imported_in_process(model, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    (tmp_path / "helpers_from_cwd.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")
    edit_manifest(model, plugins=["helpers_from_cwd"])
    automl_pt.load(model).predict(TEXTS)
    assert not marker.exists() and "helpers_from_cwd" not in sys.modules


# -- 3. the plugin that wrote the folder loads it ---------------------------------------------------
def test_export_records_the_plugin_and_backbone_class(text_model):
    from importlib import metadata

    manifest = json.loads((text_model / MANIFEST).read_text())
    assert manifest["format_version"] == 2
    assert "plugins" not in manifest
    text = {"plugin": "automl_pt_text", "module": "automl_pt_text", "distribution": "automl-pt-text",
            "version": metadata.version("automl-pt-text")}
    assert manifest["backbone_plugin"] == text
    assert manifest["task_plugin"] == text
    assert manifest["backbone_class"] == "automl_pt_text.backbone.TransformersTextBackbone"
    assert manifest["data_options"] == {"max_length": 32}


@pytest.mark.parametrize("field", ["backbone_plugin", "task_plugin"])
def test_a_plugin_that_is_not_installed_is_named(model, tmp_path, capsys, field):
    edit_manifest(model, **{field: {"plugin": "text3d", "module": "automl_pt_text3d",
                                    "distribution": "automl-pt-text3d", "version": "2.0"}})
    with pytest.raises(ModelLoadError, match=r"plugin 'text3d'.*automl-pt-text3d 2\.0.*not installed"
                                             r".*pip install automl-pt-text3d"):
        automl_pt.load(model)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    assert main(["predict", str(model), str(tmp_path / "in.txt")]) == 2
    err = capsys.readouterr().err
    assert "pip install automl-pt-text3d" in err and len(err.strip().splitlines()) == 1


def test_a_different_backbone_class_is_refused(model):
    edit_manifest(model, backbone_class="automl_pt_text.backbone.OtherTextBackbone")
    with pytest.raises(ModelLoadError, match=r"TransformersTextBackbone.*OtherTextBackbone"):
        automl_pt.load(model)


class Greedy:
    """Claims every folder with a config.json, before any other plugin is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    @hookimpl(tryfirst=True)
    def automl_pt_resolve_backbone(self, name, modality):
        if not (Path(name) / "config.json").is_file():
            return None
        self.asked.append(name)
        from automl_pt.registry import BackboneInfo

        def load(options):
            raise AssertionError("the greedy plugin was asked to load another plugin's model")

        return BackboneInfo(name=name, modality=modality, load=load, source="greedy")


@pytest.mark.parametrize("format_version", [2, 1])
def test_only_the_plugin_that_wrote_the_folder_is_asked(model, text_model, format_version):
    """Format 2 names the plugin; a format 1 folder (no provenance) is loaded by the plugin that
    provides its task, and its study's plugin list is not imported."""
    import automl_pt_text

    from automl_pt.plugins import create_plugin_host

    if format_version == 1:
        edit_manifest(model, format_version=1, backbone_plugin=None, task_plugin=None,
                      backbone_class=None, plugins=["helpers_never_imported"])
    greedy = Greedy()
    host = create_plugin_host(entry_points=False, extra=[automl_pt_text, greedy])
    assert host.hook.automl_pt_resolve_backbone(name=str(model / "backbone"), modality="text").source \
        == "greedy"                                  # what the first answer would have been
    greedy.asked.clear()
    predictor = automl_pt.load(model, host=host)
    assert greedy.asked == []
    same(predictor.predict(TEXTS), automl_pt.load(text_model).predict(TEXTS))


@pytest.mark.parametrize("change,expected", [
    ({"task": None}, "key 'task' is missing"),
    ({"labels": "a,b"}, "key 'labels' is not a list"),
    ({"labels": [1, 2]}, "key 'labels' must be a non-empty list of label names"),
    ({"input_column": None}, "key 'input_column' is missing"),
])
def test_a_manifest_missing_what_loading_needs_is_named(model, change, expected):
    edit_manifest(model, **change)
    with pytest.raises(ModelLoadError, match=expected):
        automl_pt.load(model)
    (model / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="a JSON list, not an object"):
        automl_pt.load(model)
