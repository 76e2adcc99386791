"""A study writes only into a run directory it created: a user's folder given as ``[storage] dir``
(or reached through ``[study] name = ".."``) is refused with exit 2 and left exactly as it was;
an empty folder, a run directory automl_pt made and a run directory from before the marker are
accepted; exports only replace folders that automl_pt wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from automl_pt.cli import main
from tests.conftest import study_toml

MARKER = ".automl_pt_run"   # automl_pt.storage.rundir.MARKER, spelled out: the file name is the contract

INLINE = 'workers = "inline"\nnum_threads = 1'


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``automl-pt ARGS`` in a fresh interpreter (the real exit code and stderr)."""
    return subprocess.run([sys.executable, "-m", "automl_pt.cli", *args], cwd=cwd, text=True,
                          capture_output=True, env={**os.environ, "COLUMNS": "400"}, timeout=300)


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (``None`` for folders)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "mine"
    (folder / "best").mkdir(parents=True)
    (folder / "best" / "keep.txt").write_text("my notes")
    (folder / "thesis.tex").write_text("\\documentclass{article}")
    return folder


def test_a_user_folder_as_storage_dir_is_refused_and_left_alone(tmp_path, tiny_bert, topic_data,
                                                                user_folder):
    study = _edit(study_toml(tmp_path, tiny_bert, trials=1, resources=INLINE), 'dir = "run"',
                  f'dir = "{user_folder}"')
    before = _snapshot(user_folder)
    for command in (["run", str(study), "-q"], ["results", str(study), "--sync"],
                    ["worker", str(study)], ["export", str(study)],
                    ["label-efficiency", str(study), "--seeds", "1", "-q"]):
        proc = _cli(*command, cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr)
        line = _error_line(proc)
        assert f"{study}:{_line_of(study, 'dir =')}: [storage] dir" in line, line
        assert str(user_folder) in line and "automl_pt" in line, line
        assert _snapshot(user_folder) == before, command
    assert (user_folder / "best" / "keep.txt").read_text() == "my notes"


def test_dot_names_are_not_names(tmp_path, tiny_bert, topic_data):
    study = study_toml(tmp_path, tiny_bert, trials=1, resources=INLINE)
    _edit(study, 'dir = "run"\n', "")   # the default run dir runs/NAME would be the study's folder
    before = _snapshot(tmp_path)
    for name in ("..", ".", "..."):
        text = study.read_text()
        study.write_text(text.replace(text.split("\n")[2], f'name = "{name}"', 1))
        proc = _cli("run", str(study), "-q", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        line = _error_line(proc)
        assert f"{study}:{_line_of(study, 'name =')}: [study] name" in line, line
        assert _snapshot(tmp_path) == {**before, "study.toml": study.read_bytes()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bert) -> Path:
    """A one-trial study run into an empty folder that existed before."""
    from tests.conftest import make_topic_rows, write_csv

    tmp = tmp_path_factory.mktemp("rundir")
    for name, n, seed in (("train", 20, 1), ("validation", 8, 2), ("test", 8, 3)):
        write_csv(tmp / "data" / f"{name}.csv", make_topic_rows(n, seed))
    study = study_toml(tmp, tiny_bert, trials=1, resources=INLINE)
    (tmp / "run").mkdir()
    assert main(["run", str(study), "-q"]) == 0
    return study


def test_an_empty_existing_folder_becomes_a_run_dir(finished):
    run_dir = finished.parent / "run"
    marker = json.loads((run_dir / MARKER).read_text())
    assert marker["study"] == "tiny" and marker["automl_pt"]
    assert (run_dir / "best" / "automl_pt.json").is_file() and (run_dir / "optuna.db").is_file()


def test_a_run_resumes_and_a_run_dir_from_before_the_marker_is_adopted(finished, capsys):
    run_dir = finished.parent / "run"
    assert main(["run", str(finished), "-q", "--trials", "2"]) == 0
    capsys.readouterr()
    assert main(["results", str(run_dir), "--format", "json", "--all"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    (run_dir / MARKER).unlink()              # a run directory written before the marker existed
    assert main(["run", str(finished), "-q", "--trials", "3"]) == 0
    assert json.loads((run_dir / MARKER).read_text())["study"] == "tiny"
    capsys.readouterr()
    assert main(["results", str(run_dir), "--format", "json", "--all"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_a_run_dir_of_another_study_is_refused(finished, capsys):
    other = finished.parent / "other.toml"
    other.write_text(finished.read_text().replace('name = "tiny"', 'name = "other"'))
    before = _snapshot(finished.parent / "run")
    assert main(["run", str(other), "-q"]) == 2
    err = capsys.readouterr().err
    assert "[storage] dir" in err and "'tiny'" in err
    assert _snapshot(finished.parent / "run") == before


def test_exports_replace_only_folders_automl_pt_wrote(finished, tmp_path, capsys):
    run_dir = finished.parent / "run"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    sibling = tmp_path / ".mine.tmp"          # a user's folder where the export used to stage
    sibling.mkdir()
    (sibling / "keep.txt").write_text("keep too")
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    for out in (mine, afile):
        assert main(["export", str(run_dir), "--format", "native", "--out", str(out)]) == 2
        assert str(out) in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "keep" and afile.read_text() == "not a folder"
    fresh = tmp_path / "fresh"
    assert main(["export", str(run_dir), "--format", "native", "--out", str(fresh)]) == 0
    assert main(["export", str(run_dir), "--format", "native", "--out", str(fresh)]) == 0
    assert (sibling / "keep.txt").read_text() == "keep too"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mine.tmp", "a-file", "fresh", "mine"]

    # RUN_DIR/best that a user made by hand is never replaced by a re-export
    best = run_dir / "best"
    best.rename(run_dir / "best-saved")
    best.mkdir()
    (best / "keep.txt").write_text("hand-made")
    assert main(["export", str(run_dir)]) == 2
    assert "best" in capsys.readouterr().err
    assert (best / "keep.txt").read_text() == "hand-made"
    (best / "keep.txt").unlink()
    best.rmdir()
    (run_dir / "best-saved").rename(best)
    assert main(["export", str(run_dir)]) == 0       # an automl_pt best/ is replaced
    assert (best / "automl_pt.json").is_file()
