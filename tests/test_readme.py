"""The README's examples run as written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

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
