"""benchmarks/bench_vs_hf.py keeps working: its study files are valid studies, and a smoke run (a
tiny random BERT, a few dozen texts, 2 trials, 1 epoch) runs both sides end to end in real
subprocesses and reports both test accuracies."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_vs_hf.py"
# the script and the automl-pt it starts use this checkout's code
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), str(ROOT / "plugins" / "automl-pt-text"), os.environ.get("PYTHONPATH", "")])}


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_vs_hf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["defaults", "quickstart"])
def test_variant_study_files_are_valid_studies(name, tmp_path, topic_data, tiny_bert):
    from automl_pt.spec.config import load_config

    bench = load_bench()
    doc = bench.study_doc(name, bench.VARIANTS[name], topic_data["train"].parent, trials=3,
                          threads=2, run_dir=tmp_path / "run", backbone=str(tiny_bert), max_epochs=2)
    text = bench.to_toml(doc)
    assert tomllib.loads(text) == doc
    path = tmp_path / "study.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.study.trials == 3 and config.resources.num_threads == 2
    assert config.search.backbones == [str(tiny_bert)]
    assert "pretrain" not in doc
    epochs = doc["search"]["space"]["epochs"]
    assert epochs == {"low": 1, "high": 2}   # quickstart's 1..3 and the default 1..4, capped


def test_max_epochs_one_fixes_epochs():
    bench = load_bench()
    doc = bench.study_doc("quickstart", bench.VARIANTS["quickstart"], Path("/d"), 2, 2,
                          Path("/r"), None, max_epochs=1)
    assert doc["search"]["space"]["epochs"] == 1
    assert doc["search"]["backbones"] == ["minilm-l6"]   # the quickstart's own


def test_subsample_keeps_every_label():
    bench = load_bench()
    rows = [{"text": f"t{i}", "label": "ab"[i % 5 == 0]} for i in range(50)]
    picked = bench.subsample(rows, 6, seed=1)
    assert len(picked) == 6 and {r["label"] for r in picked} == {"a", "b"}


def test_table_states_the_goal():
    bench = load_bench()
    peer = {"side": "peer", "name": "hf-trainer-optuna", "wall_s": 600.0, "cpu_s": 1100.0,
            "test_accuracy": 0.85, "best_validation": 0.86, "trial_states": ["COMPLETE", "PRUNED"]}
    fast = {**peer, "side": "ours", "name": "fast", "wall_s": 190.0, "test_accuracy": 0.86}
    slow = {**fast, "name": "defaults", "wall_s": 210.0}
    worse = {**fast, "name": "quickstart", "test_accuracy": 0.84}
    broken = {"side": "ours", "name": "broken", "wall_s": 1.0, "cpu_s": 0.5, "error": "exit 2: bad key"}
    lines = bench.table([peer, fast, slow, worse, broken]).splitlines()
    by_name = {line.split()[1]: line for line in lines[2:]}
    assert "1 complete, 1 pruned" in by_name["hf-trainer-optuna"]
    assert "time x0.32" in by_name["fast"] and "GOAL MET" in by_name["fast"]
    assert "time x0.35" in by_name["defaults"] and "GOAL MET" not in by_name["defaults"]
    assert "acc -0.010" in by_name["quickstart"] and "GOAL MET" not in by_name["quickstart"]
    assert "failed: exit 2: bad key" in by_name["broken"]


@pytest.mark.slow
def test_smoke_run_reports_both_sides(tmp_path, topic_data, tiny_bert):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(topic_data["train"].parent), "--subsample", "24",
         "--trials", "2", "--max-epochs", "1", "--ours", "defaults",
         "--backbone", str(tiny_bert), "--work", str(tmp_path / "work"), "--out", str(out)],
        env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["examples"] == {"train": 24, "validation": 24, "test": 24}
    sides = {(r["side"], r["name"]): r for r in report["rows"]}
    assert set(sides) == {("peer", "hf-trainer-optuna"), ("ours", "defaults")}
    for row in sides.values():
        assert "error" not in row, row.get("error")
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert len(row["trial_states"]) == 2
        assert row["wall_s"] > 0 and row["cpu_s"] > 0
    peer, ours = sides[("peer", "hf-trainer-optuna")], sides[("ours", "defaults")]
    assert peer["best_params"]["num_train_epochs"] == 1 and peer["threads"] == 2
    assert peer["search_s"] + peer["retrain_s"] < peer["wall_s"]
    assert ours["best_params"]["epochs"] == 1
    assert "num_threads = 2" in ours["study_file"]
    assert "hf-trainer-optuna" in proc.stdout and "time x" in proc.stdout


def test_unknown_variant_is_refused(tmp_path, topic_data, tiny_bert):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(topic_data["train"].parent), "--only", "ours",
         "--ours", "nope", "--backbone", str(tiny_bert), "--out", "-"],
        env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown variant 'nope'" in proc.stderr
