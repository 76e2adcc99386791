"""benchmarks/bench_quality.py keeps working: every (quickstart, variant) study file is a valid
study that changes what its item says, and a smoke run (a tiny random BERT on a few dozen texts,
2 trials) runs the floor, the default, a feature switched off and the warm start end to end."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_quality.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), str(ROOT / "plugins" / "automl-pt-text"), os.environ.get("PYTHONPATH", "")])}


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_variant_changes_what_its_item_says(tmp_path, topic_data, tiny_bert):
    from automl_pt.spec.config import load_config

    bench = load_bench()
    configs = {}
    for variant in bench.VARIANTS:
        doc = bench.study_doc("text", variant, 3, 2, tmp_path, None, topic_data["train"].parent,
                              str(tiny_bert))
        assert "pretrain" not in doc and "timeout" not in doc["study"]
        path = tmp_path / f"{variant}.toml"
        path.write_text(bench.to_toml(doc))
        if variant == "warm":
            (tmp_path / "run-text-default").mkdir(exist_ok=True)
            continue                       # needs the default run to exist: the smoke run covers it
        configs[variant] = load_config(path)
    default = configs["default"]
    assert default.study.trials == 3 and default.search.backbones == [str(tiny_bert)]
    assert configs["probe"].study.trials == 1
    assert configs["no-seeding"].search.baseline is False and configs["no-seeding"].search.known_good is False
    assert configs["no-soup"].search.soup == "none" and default.search.soup == "greedy"
    assert configs["refit"].search.refit is True and default.search.refit is False
    lora = configs["lora"].raw["search"]["space"]["strategy"]
    assert lora[-1] == "lora" and lora[:-1] == default.raw["search"]["space"]["strategy"]
    assert configs["no-fit-length"].raw["search"]["space"]["min_steps"] == [0]
    assert configs["ensemble"].search.ensemble == 3 and not configs["ensemble"].search.distill
    assert configs["distill"].search.ensemble == 3 and configs["distill"].search.distill is True


@pytest.mark.slow
def test_smoke_run_measures_floor_default_and_switches(tmp_path, topic_data, tiny_bert):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quickstarts", "text", "--variants", "probe,default,no-soup,warm",
         "--trials", "2", "--data", str(topic_data["train"].parent), "--backbone", str(tiny_bert),
         "--work", str(tmp_path / "work"), "--out", str(out)],
        env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["probe", "default", "no-soup", "warm"]
    for row in rows.values():
        assert "error" not in row, row.get("error")
        assert 0.0 <= row["test"] <= 1.0 and row["metric"] == "accuracy"
    assert [t["strategy"] for t in rows["probe"]["trials"]] == ["linear_probe"]
    assert rows["default"]["trials"][0]["strategy"] == "linear_probe"     # the probe goes first
    assert len(rows["default"]["trials"]) == 2
    assert "vs probe" in proc.stdout and "no-soup" in proc.stdout
