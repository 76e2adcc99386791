"""One exit-code contract on the command line: bad input (a folder that is not a run directory or
a model, a missing file, a bad option) exits 2 with one line and creates nothing; labels written
two ways are reported; label text and user paths are escaped in model cards and reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from automl_pt import Study
from automl_pt.cli import main
from automl_pt.errors import DataWarning
from tests.conftest import make_topic_rows, study_toml, write_csv

LABELS = {"space": "<script>alert(1)</script>", "food": "food | drink", "law": "**law**"}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def ran(tmp_path_factory, tiny_bert) -> Path:
    """A finished one-trial study whose labels and backbone path hold Markdown / HTML."""
    tmp = tmp_path_factory.mktemp("codes")
    for name, n, seed in (("train", 20, 1), ("validation", 8, 2), ("test", 8, 3)):
        rows = [{**r, "label": LABELS[r["label"]]} for r in make_topic_rows(n, seed)]
        write_csv(tmp / "data" / f"{name}.csv", rows)
    backbone = tmp / "bert | <i>x</i>"
    shutil.copytree(tiny_bert, backbone)
    study = study_toml(tmp, backbone, trials=1, resources='workers = "inline"\nnum_threads = 1')
    assert main(["run", str(study), "-q"]) == 0
    return study


@pytest.fixture
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize("command", [["results"], ["results", "--sync"], ["export"], ["report"],
                                     ["label-efficiency", "-q"], ["export", "--format", "onnx"]])
def test_a_folder_that_is_not_a_run_dir_exits_2_and_gets_nothing(command, user_folder, tmp_path,
                                                                 capsys):
    before = _snapshot(tmp_path)
    for target in (user_folder, tmp_path / "missing"):
        assert main([command[0], str(target), *command[1:]]) == 2, command
        assert str(target) in _one_line(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


def test_bad_arguments_exit_2_with_one_line(ran, tmp_path, user_folder, capsys):
    best, test_csv = ran.parent / "run" / "best", ran.parent / "data" / "test.csv"
    cases = [
        (["predict", str(best), str(tmp_path / "missing.csv")], "missing.csv"),
        (["predict", str(user_folder), str(test_csv)], "not an exported automl_pt model"),
        (["predict", str(best), str(test_csv), "--device", "banana"], "banana"),
        (["predict", str(best), str(test_csv), "--device", "cuda:99"], "cuda:99"),
        (["predict", str(best), str(test_csv), "-o", str(tmp_path / "no" / "x.csv")],
         str(tmp_path / "no")),
        (["predict", str(best), str(test_csv), "-o", str(user_folder)], str(user_folder)),
        (["results", str(ran), "--format", "parquet"], "--output"),
        (["results", str(ran), "--format", "csv", "-o", str(user_folder)], str(user_folder)),
        (["results", str(ran), "-o", str(tmp_path / "no" / "x.csv"), "--format", "csv"],
         str(tmp_path / "no")),
        (["report", str(ran), "--out", str(user_folder)], str(user_folder)),
        (["export", str(ran), "--format", "native", "--out", str(user_folder / "notes.txt")],
         "notes.txt"),
    ]
    before = _snapshot(tmp_path)
    for argv, needle in cases:
        assert main(argv) == 2, argv
        assert needle in _one_line(capsys.readouterr().err), argv
    assert _snapshot(tmp_path) == before
    assert not list(Path.cwd().glob(".mine.*.tmp"))


def test_argparse_rejects_a_batch_size_below_one(ran, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", str(ran.parent / "run" / "best"), "x.csv", "--batch-size", "0"])
    assert info.value.code == 2 and "--batch-size" in capsys.readouterr().err


def test_a_corrupt_study_json_is_bad_input(ran, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(ran.parent / "run", copy)
    (copy / "study.json").write_text("{not json")
    assert main(["results", str(copy)]) == 2
    assert "study.json" in _one_line(capsys.readouterr().err)
    (copy / "study.json").write_text(json.dumps({"study": "tiny", "metric": "accuracy",
                                                 "direction": "maximize", "config": {},
                                                 "optuna_url": f"sqlite:///{tmp_path}/gone.db"}))
    (copy / "results.duckdb").unlink()
    assert main(["results", str(copy)]) == 2
    assert "gone.db" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "gone.db").exists()     # reading never creates a database


def _label_study(tmp_path: Path, tiny_bert: Path, train: Path) -> Path:
    study = study_toml(tmp_path, tiny_bert, trials=1)
    text = study.read_text().replace('train = "data/train.csv"', f'train = "{train}"')
    study.write_text(text.replace('validation = "data/validation.csv"\ntest = "data/test.csv"\n', ""))
    return study


def test_labels_written_two_ways_are_named_in_a_warning(tmp_path, tiny_bert, text_host):
    rows = make_topic_rows(6, 1)
    jsonl = tmp_path / "train.jsonl"
    values = {"space": [1, 1.0, "1"], "food": [2], "law": [3.0]}
    seen = {label: 0 for label in values}
    with jsonl.open("w") as f:
        for r in rows:
            choices, seen[r["label"]] = values[r["label"]], seen[r["label"]] + 1
            label = choices[(seen[r["label"]] - 1) % len(choices)]
            f.write(json.dumps({"text": r["text"], "label": label}) + "\n")
    with pytest.warns(DataWarning) as record:
        data = Study.from_config(_label_study(tmp_path, tiny_bert, jsonl), host=text_host).prepare().data
    assert data.label_names == ["1", "2", "3"]
    message = " ".join(str(w.message) for w in record)
    assert "label '1'" in message and "1, 1.0, '1'" in message and "train.jsonl" in message
    assert "'3'" not in message                     # 3.0 alone is one way of writing it

    csv = write_csv(tmp_path / "train.csv", [{**r, "label": {"space": "space", "food": "food",
                                                             "law": "1.0"}[r["label"]]}
                                             for r in rows] + [{"text": "x y", "label": " space"},
                                                               {"text": "y z", "label": "1"}])
    with pytest.warns(DataWarning) as record:
        data = Study.from_config(_label_study(tmp_path, tiny_bert, csv), host=text_host).prepare().data
    assert data.label_names == ["1", "1.0", "food", "space"]
    message = " ".join(str(w.message) for w in record)
    assert "label 'space'" in message and "'space', ' space'" in message and "food" not in message
    assert "'1' and '1.0'" in message               # distinct classes that are the same number


def test_the_label_warning_is_one_line_on_the_command_line(tmp_path, tiny_bert, user_folder):
    rows = [{**r, "label": r["label"] + (" " if i % 2 else "")}
            for i, r in enumerate(make_topic_rows(6, 1))]
    study = _label_study(tmp_path, tiny_bert, write_csv(tmp_path / "train.csv", rows))
    study.write_text(study.read_text().replace('dir = "run"', f'dir = "{user_folder}"'))
    proc = subprocess.run([sys.executable, "-m", "automl_pt.cli", "run", str(study), "-q"],
                          cwd=tmp_path, text=True, capture_output=True, timeout=300,
                          env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 2
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and all("train.csv" in w for w in warnings), proc.stderr
    assert "label 'food'" in proc.stderr and "'food '" in proc.stderr and "Warning" not in proc.stderr


def test_model_cards_escape_labels_and_paths(ran, tmp_path):
    from markdown_it import MarkdownIt

    out = tmp_path / "card"
    assert main(["export", str(ran), "--format", "native", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    html = MarkdownIt("commonmark").enable("table").render(card)
    assert "<script>" not in html and "<i>" not in html and "<strong>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "food | drink" in html
    assert "**law**" in html
    for row in html.split("<tr>")[1:]:
        assert row.count("<td>") in (0, 2, 3), row     # no cell split by a '|' in a value
    assert "bert | &lt;i&gt;x&lt;/i&gt;" in html


def test_the_report_escapes_labels_and_paths(ran, tmp_path):
    from automl_pt.report.html import build_report

    report = build_report(ran.parent / "run", out=tmp_path / "r.html", png=False)
    page = report.html.read_text()
    assert "<script>alert" not in page and "<i>x</i>" not in page
