"""The README's examples run as written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- readme-test: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README block {name!r} not found"
    return match.group(1)


@pytest.mark.slow
def test_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_block("api"), "README.md:api", "exec"), {})
    out = capsys.readouterr().out
    assert "accuracy" in out and "['space', 'food']" in out
    assert (tmp_path / "runs" / "api-demo" / "best" / "automl_pt.json").is_file()


@pytest.mark.slow
def test_fit_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_block("fit"), "README.md:fit", "exec"), {})
    assert "['space', 'food']" in capsys.readouterr().out
    run_dir = tmp_path / "runs" / "fit-demo"
    assert (run_dir / "study.toml").is_file() and (run_dir / "best" / "automl_pt.json").is_file()


@pytest.mark.slow
def test_regression_example_runs_on_minilm(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_block("regression"), "README.md:regression", "exec"), scope)
    best = json.loads((tmp_path / "runs" / "regression-demo" / "best" / "metrics.json").read_text())
    print(f"text-regression validation r2 {best['validation']['r2']:.3f}")
    assert best["validation"]["r2"] > 0.3            # the probe on MiniLM features
    high, low = scope["model"].predict(["rocket moon star orbit launch",
                                        "bread soup cheese pasta bake"]).values
    assert high > low + 2


@pytest.mark.slow
def test_multilabel_example_runs_on_minilm(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_block("multilabel"), "README.md:multilabel", "exec"), scope)
    best = json.loads((tmp_path / "runs" / "multilabel-demo" / "best" / "metrics.json").read_text())
    # predicting the most frequent label set for every text scores far lower
    from automl_pt.builtin.metrics import micro_f1

    rows = scope["rows"]
    names = ["food", "law", "space"]
    common = pd.Series([r["topics"] for r in rows]).value_counts().index[0].split("|")
    truth = np.array([[n in r["topics"].split("|") for n in names] for r in rows])
    majority = micro_f1(truth, np.array([[n in common for n in names]] * len(rows)))
    print(f"text-multilabel validation micro_f1 {best['validation']['micro_f1']:.3f} vs majority {majority:.3f}")
    assert best["validation"]["micro_f1"] > majority + 0.2
    assert scope["prediction"].labels[0] == ["space"]
    assert "p_law" in capsys.readouterr().out


def test_plugin_example_is_used_by_a_study(tmp_path, monkeypatch, tiny_bert, topic_data):
    from tests.conftest import study_toml

    (tmp_path / "my_plugin.py").write_text(readme_block("plugin"))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = study_toml(tmp_path, tiny_bert, trials=2, space="epochs = 1\nbatch_size = [8]")
    text = path.read_text().replace('seed = 0', 'seed = 0\nplugins = ["my_plugin"]\n'
                                    'metric = "balanced_accuracy"')
    path.write_text(text)
    from automl_pt import Study

    try:
        results = Study.from_config(path).run(progress=False)
    finally:
        sys.modules.pop("my_plugin", None)
    trials = results.trials()
    assert results.metric == "balanced_accuracy"
    assert all("balanced_accuracy" in json.loads(m) for m in trials["metrics"])
    assert (trials["label_smoothing"] <= 0.1).all()
    assert "val_balanced_accuracy" in set(results.epochs_df["name"])


# -- the plugin authors' example: a byte-level text backbone, its contract tests and a study ------
def _byte_plugin():
    import types

    module = types.ModuleType("byte_plugin")
    exec(compile(readme_block("byte-plugin"), "README.md:byte-plugin", "exec"), module.__dict__)
    return module


BYTE_PLUGIN = _byte_plugin()
sys.modules.setdefault("byte_plugin", BYTE_PLUGIN)   # the README's contract example imports it
exec(compile(readme_block("byte-contract"), "README.md:byte-contract", "exec"), globals())


def test_byte_plugin_example_runs_a_study_exports_and_predicts(tmp_path, topic_data, monkeypatch):
    """The README's backbone plugin, kept next to the study file and named there as a file,
    trains in a study of the text plugin's task; the exported model reloads through the
    plugin's own resolver and predicts."""
    import automl_pt
    import automl_pt_text
    from automl_pt import Study
    from automl_pt.plugins import create_plugin_host
    from automl_pt.testing import write_study

    (tmp_path / "byte_plugin.py").write_text(readme_block("byte-plugin"))
    path = write_study(tmp_path, "text-classification", "bytes-tiny",
                       {"train": "data/train.csv", "validation": "data/validation.csv",
                        "test": "data/test.csv"},
                       {"strategy": ["full"], "epochs": 3, "batch_size": [8],
                        "learning_rate": [0.01], "head_lr_multiplier": [1.0]},
                       trials=1, study={"plugins": ["byte_plugin.py"]},
                       resources={"workers": "inline"})
    monkeypatch.chdir(tmp_path.parent)          # the plugin is found next to the study file
    saved = sys.modules.get("byte_plugin")
    try:
        results = Study.from_config(path).run(progress=False)
        host = create_plugin_host(entry_points=False, extra=[automl_pt_text, sys.modules["byte_plugin"]])
        model = automl_pt.load(results.best_model_dir, host=host)
        prediction = model.predict(["rocket orbit the moon", "bread and cheese soup"])
    finally:
        sys.modules["byte_plugin"] = saved
    manifest = json.loads((results.best_model_dir / "automl_pt.json").read_text())
    assert manifest["backbone"] == "bytes-tiny" and manifest["backbone_plugin"]["module"] == "byte_plugin"
    assert type(model.model.backbone).__name__ == "ByteBackbone"
    assert len(prediction.labels) == 2 and set(prediction.labels) <= {"space", "food", "law"}
    assert results.test_metrics["accuracy"] > 0
