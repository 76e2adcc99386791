"""Label efficiency end to end on a tiny random BERT: a finished study (with a [pretrain] stage)
→ runs from random / pretrained / continued starts at several labels-per-class budgets → DuckDB
rows → PNG + HTML plot; an interrupted command resumes from its rows; the CLI; bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pytest

from automl_pt import Study
from automl_pt.errors import AutomlError, ConfigError
from automl_pt.efficiency import label_efficiency, parse_budgets, subset_indices
from tests.conftest import make_topic_rows, study_toml, write_csv

PRETRAIN = """
[pretrain]
data = "data/unlabeled.csv"
objective = "contrastive"
steps = 4
batch_size = 8
learning_rate = 1e-4
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bert):
    import automl_pt_text

    from automl_pt.plugins import create_plugin_host

    tmp = tmp_path_factory.mktemp("le")
    write_csv(tmp / "data" / "train.csv", make_topic_rows(20, 1))
    write_csv(tmp / "data" / "validation.csv", make_topic_rows(8, 2))
    write_csv(tmp / "data" / "test.csv", make_topic_rows(8, 3))
    write_csv(tmp / "data" / "unlabeled.csv", [{"text": r["text"]} for r in make_topic_rows(10, 4)])
    path = study_toml(tmp, tiny_bert, extra=PRETRAIN, trials=2, space="epochs = 1\nbatch_size = [8]")
    host = create_plugin_host(entry_points=False, extra=[automl_pt_text])
    Study.from_config(path, host=host).run(progress=False)
    return tmp, path


def _rows(run_dir):
    con = duckdb.connect(str(run_dir / "results.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM label_efficiency ORDER BY created_at").df()
    finally:
        con.close()


def test_every_start_budget_and_seed_is_a_duckdb_row_and_plotted(finished):
    tmp, path = finished
    report = label_efficiency(path, budgets=[2, "all"], seeds=2, progress=False)
    rows = _rows(tmp / "run")
    assert len(rows) == 3 * 2 * 2
    assert set(rows["start"]) == {"random", "pretrained", "continued"}
    assert sorted(set(rows["budget"])) == ["2", "all"]
    assert set(rows["seed"]) == {0, 1}
    assert rows["split"].eq("test").all() and rows["metric"].eq("accuracy").all()
    assert rows["value"].between(0, 1).all()
    # 3 topics: k labels per class -> 3k training examples; "all" = the 60 training rows
    n_train = rows.groupby("budget")["n_train"].unique()
    assert list(n_train["2"]) == [6] and list(n_train["all"]) == [60]
    assert set(rows.loc[rows["budget"] == "all", "labels_per_class"]) == {20}
    for r in rows.itertuples():
        params = json.loads(r.params)
        assert params["init"] == r.start
        if r.start == "random":
            assert params["strategy"] == "full"
        elif r.budget == "2":   # tiny budgets: the probe or SetFit-style tuning, whichever validates better
            assert params["strategy"] in ("linear_probe", "setfit")
        assert json.loads(r.metrics)["accuracy"] == pytest.approx(r.value)
    # the same runs come back from Python, summarised per (start, budget)
    assert len(report.runs) == len(rows)
    summary = report.summary
    assert len(summary) == 6 and summary["n"].eq(2).all()
    assert (summary["min"] <= summary["mean"]).all() and (summary["mean"] <= summary["max"]).all()
    # the plot: a real PNG and a self-contained page
    png = report.png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(report.png) as im:
        im.load()
        pixels = np.asarray(im.convert("L"))
    assert pixels.shape[0] > 200 and pixels.std() > 5   # not a blank image
    page = report.html.read_text()
    assert "<svg" in page and "continued" in page
    for fetch in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert fetch not in page                        # nothing fetched from the network


def test_a_rerun_reuses_its_rows_and_runs_only_what_is_missing(finished):
    tmp, path = finished
    before = _rows(tmp / "run")                          # the first test's runs are there
    report = label_efficiency(path, budgets=[1, 2], seeds=1, starts=["pretrained"], progress=False)
    after = _rows(tmp / "run")
    new = after.iloc[len(before):]
    assert list(new["budget"]) == ["1"]                 # (pretrained, 2, seed 0) was not run again
    assert set(report.runs["budget"]) >= {"1", "2"}


def test_cli_writes_the_plot_where_asked(finished, tmp_path):
    _, path = finished
    out = tmp_path / "le-out"
    proc = subprocess.run([sys.executable, "-m", "automl_pt.cli", "label-efficiency", str(path),
                           "--budgets", "1", "--seeds", "1", "--starts", "random,pretrained",
                           "--param", "epochs=2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (out / "label-efficiency.png").is_file() and (out / "label-efficiency.html").is_file()
    assert "random" in proc.stdout and "pretrained" in proc.stdout
    rows = _rows(path.parent / "run")
    assert {json.loads(p)["epochs"] for p in rows["params"]} == {1, 2}   # the study's and --param's
    bad = subprocess.run([sys.executable, "-m", "automl_pt.cli", "label-efficiency", str(path),
                          "--param", "epoch=2"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown hyperparameter 'epoch'" in bad.stderr
    assert "did you mean 'epochs'" in bad.stderr


def test_bad_input_is_named(tmp_path, tiny_bert, topic_data, finished):
    _, path = finished
    with pytest.raises(ConfigError, match="label budget 'x'"):
        parse_budgets(["1", "x"])
    with pytest.raises(ConfigError, match="at least 1"):
        parse_budgets([0])
    with pytest.raises(ConfigError, match="unknown start point 'scratch'"):
        label_efficiency(path, budgets=[1], seeds=1, starts=["scratch"], progress=False)
    with pytest.raises(ConfigError, match=r"--param dropout: 5.0 is not a number in \[0, 1\)"):
        label_efficiency(path, budgets=[1], seeds=1, params={"dropout": 5.0}, progress=False)
    fresh = study_toml(tmp_path, tiny_bert)               # never run, no [pretrain]
    with pytest.raises(ConfigError, match=r"'continued' needs a \[pretrain\]"):
        label_efficiency(fresh, budgets=[1], starts=["continued"], progress=False)
    with pytest.raises(AutomlError, match="has not run yet"):
        label_efficiency(fresh, budgets=[1], progress=False)


def test_subsets_are_stratified_nested_and_seeded():
    labels = np.repeat(np.arange(3), 10)
    a1, a4 = subset_indices(labels, 1, 7), subset_indices(labels, 4, 7)
    assert np.bincount(labels[a4]).tolist() == [4, 4, 4]
    assert set(a1) <= set(a4)                             # nested across budgets
    assert np.array_equal(a4, subset_indices(labels, 4, 7))
    assert not np.array_equal(a4, subset_indices(labels, 4, 8))
    assert len(subset_indices(labels, 50, 0)) == 30       # a small class gives what it has
    assert parse_budgets(["all", 16, "4", 1]) == [1, 4, 16, "all"]
