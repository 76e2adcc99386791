"""The command line on a finished tiny study: results formats, predict, backbones, export."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from automl_pt.cli import main
from tests.conftest import make_topic_rows, study_toml, write_csv


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, tiny_bert):
    tmp = tmp_path_factory.mktemp("cli")
    for name, n, seed in (("train", 20, 1), ("validation", 8, 2), ("test", 8, 3)):
        write_csv(tmp / "data" / f"{name}.csv", make_topic_rows(n, seed))
    path = study_toml(tmp, tiny_bert, trials=2)
    return path


@pytest.fixture(scope="module")
def ran(study_dir):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(study_dir), "--quiet"]) == 0
    return study_dir, out.getvalue()


@pytest.fixture
def tmp_path(study_dir):  # the finished study's folder
    return study_dir.parent


@pytest.fixture
def topic_data(study_dir):
    return {n: study_dir.parent / "data" / f"{n}.csv" for n in ("train", "validation", "test")}


def test_run_prints_leaderboard_test_score_and_model_path(ran):
    path, out = ran
    assert "leaderboard" in out and "test (best trial" in out
    assert str(path.parent / "run" / "best") in out.replace("\n", "")


def test_results_formats(ran, tmp_path, capsys):
    path, _ = ran
    run_dir = tmp_path / "run"
    assert main(["results", str(run_dir), "--format", "csv"]) == 0
    csv_out = capsys.readouterr().out
    assert csv_out.splitlines()[0].startswith("rank,kind,trial,accuracy,")
    rows = csv_out.strip().splitlines()[1:]      # the two trials, and the soups measured (if any)
    assert sum(r.split(",")[1] == "trial" for r in rows) == 2
    assert main(["results", str(path), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in records] == list(range(1, len(rows) + 1))
    assert {r["kind"] for r in records} <= {"trial", "soup"}
    out = tmp_path / "board.parquet"
    assert main(["results", str(run_dir), "--format", "parquet", "--output", str(out), "--all"]) == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 2 and {"params", "learning_rate", "seed", "state"} <= set(frame.columns)
    assert main(["results", str(run_dir)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_predict_command(ran, tmp_path, topic_data):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "run" / "best"), str(topic_data["test"]), "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == len(pd.read_csv(topic_data["test"]))
    assert {"label", "confidence", "p_food", "p_law", "p_space"} <= set(pred.columns)
    jsonl = tmp_path / "pred.jsonl"
    assert main(["predict", str(tmp_path / "run" / "best"), str(topic_data["test"]), "-o", str(jsonl)]) == 0
    assert len(jsonl.read_text().splitlines()) == len(pred)


def test_predict_bad_model_dir_is_exit_2(tmp_path, topic_data, capsys):
    assert main(["predict", str(tmp_path / "data"), str(topic_data["test"])]) == 2
    assert "not an exported automl_pt model" in capsys.readouterr().err


def test_zz_export_rewrites_best(ran, tmp_path):
    best = tmp_path / "run" / "best"
    manifest = json.loads((best / "automl_pt.json").read_text())
    (best / "head.safetensors").unlink()
    assert main(["export", str(tmp_path / "run")]) == 0
    assert (best / "head.safetensors").is_file()
    assert json.loads((best / "automl_pt.json").read_text())["trial"] == manifest["trial"]


def test_backbones_lists_catalog(capsys):
    assert main(["backbones", "--task", "text-classification", "--json"]) == 0
    names = [b["name"] for b in json.loads(capsys.readouterr().out)]
    assert "minilm-l6" in names
    assert main(["backbones", "mini*", "--json"]) == 0
    assert [b["name"] for b in json.loads(capsys.readouterr().out)] == ["minilm-l6"]
    assert main(["backbones", "--task", "nope"]) == 2


#: libraries that take a second or more to import: listing commands must not need any of them
HEAVY_MODULES = ("torch", "torchvision", "transformers", "timm", "PIL", "soundfile", "pandas",
                 "optuna", "duckdb")


def test_listing_commands_import_no_model_library():
    """``automl-pt backbones`` / ``plugins`` build the whole registry of every installed plugin
    (tasks, backbones, data readers, metrics) without importing torch or any model library:
    importing torch alone took over 1 s here, and the vision folder reader pulling it in made
    ``automl-pt backbones`` take 2-7 s. Run in a fresh interpreter, as a user would."""
    import subprocess
    import sys

    script = (
        "import contextlib, io, json, sys\n"
        "from automl_pt.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    codes = [main(['backbones']), main(['backbones', '--json']),\n"
        "             main(['backbones', '--task', 'image-classification', '--json']),\n"
        "             main(['plugins', '--json'])]\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})\n"
        "print(json.dumps({'codes': codes, 'heavy': heavy, 'out': out.getvalue()}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["codes"] == [0, 0, 0, 0]
    assert "minilm-l6" in result["out"] and "mobilenetv2-100" in result["out"]  # plugins did register
    assert result["heavy"] == [], f"listing commands imported {result['heavy'][:5]}"
