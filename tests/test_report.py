"""Study reports: the HTML page and its PNGs, the DataFrames and plots behind it, the page in a real
headless browser, and the run's Optuna storage opened by Optuna itself and optuna-dashboard.

One tiny study runs once for the module: median pruning, and the fault plugin sabotages the 4th
trial (its head is zeroed, so it predicts one class) so that the pruner stops it after one epoch.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_pt.report import plots
from automl_pt.report.html import build_report, usage_summary
from tests.conftest import make_topic_rows, study_toml, write_csv

SUPPORT = Path(__file__).parent / "support"
ROOT = Path(__file__).resolve().parents[1]
PLOT_NAMES = ("history", "importances", "curves", "parallel", "backbone_strategy", "confusion")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert):
    """A finished study with completed and pruned trials: (study file, Results)."""
    from automl_pt import Study

    tmp = tmp_path_factory.mktemp("report-study")
    for split, (n, seed) in {"train": (20, 1), "validation": (8, 2), "test": (8, 3)}.items():
        write_csv(tmp / "data" / f"{split}.csv", make_topic_rows(n, seed))
    path = study_toml(tmp, tiny_bert, trials=5, study='plugins = ["fault_plugin"]\nmax_failures = 3',
                      resources='workers = "inline"',
                      space='strategy = ["full", "freeze_then_unfreeze"]\nepochs = 3\nbatch_size = [8]')
    path.write_text(path.read_text().replace('pruner = "none"', 'pruner = "median"')
                    .replace("low = 1e-4, high = 3e-3", "low = 1e-3, high = 5e-3"))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SUPPORT))
        mp.setenv("AUTOML_PT_FAULT", "sabotage@4")
        mp.setenv("AUTOML_PT_FAULT_DIR", str(tmp / "faults"))
        try:
            results = Study.from_config(path).run(progress=False)
        finally:
            sys.modules.pop("fault_plugin", None)
    states = results.trials()["state"]
    assert (states == "PRUNED").any() and (states == "COMPLETE").sum() >= 3, states.tolist()
    return path, results


# -- the data, from Python ---------------------------------------------------------------------
def test_trials_curves_and_test_predictions_as_dataframes(run):
    path, res = run
    trials = res.trials().set_index("number")
    assert trials.loc[3, "state"] == "PRUNED"                 # the sabotaged trial
    curves = res.curves()
    assert {"trial", "epoch", "val_accuracy", "train_loss", "epoch_seconds"} <= set(curves.columns)
    for number, t in trials.iterrows():
        ran = curves[curves["trial"] == number]["epoch"].max()
        if t["state"] == "PRUNED":
            assert ran < t["epochs"]                           # cut short
        else:
            assert ran == t["epochs"] == 3

    preds = res.test_predictions()
    test = pd.read_csv(path.parent / "data" / "test.csv")
    assert len(preds) == len(test)
    assert preds["true_label"].tolist() == test["label"].astype(str).tolist()
    accuracy = float((preds["true"] == preds["pred"]).mean())
    assert accuracy == pytest.approx(res.test_metrics["accuracy"], abs=1e-9)
    counts = plots.confusion_counts(res)
    assert list(counts.index) == ["food", "law", "space"] and counts.to_numpy().sum() == len(test)
    assert np.trace(counts.to_numpy()) == int((preds["true"] == preds["pred"]).sum())


def test_importances_rank_the_params_that_varied(run):
    _, res = run
    imp = res.importances()
    assert list(imp.columns) == ["param", "importance"]
    assert imp["importance"].sum() == pytest.approx(1.0)
    assert imp["importance"].is_monotonic_decreasing
    done = res.trials()[res.trials()["state"] == "COMPLETE"]
    assert "learning_rate" in set(imp["param"])
    for param in imp["param"]:                                 # fixed params are left out
        assert done[param].astype(str).nunique() > 1, param
    assert "epochs" not in set(imp["param"]) and "batch_size" not in set(imp["param"])
    assert "completed trials" in imp.attrs["note"]


def _fake_run(tmp_path: Path, trial_params: list[dict], user_attrs: list[dict] | None = None) -> Path:
    """A run directory holding only study.json and an Optuna storage with these completed trials."""
    import optuna

    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True)
    url = f"sqlite:///{run_dir / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for i, params in enumerate(trial_params):
        dists = {k: optuna.distributions.FloatDistribution(0.0, 10.0) for k in params}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(i),
                                                  user_attrs=(user_attrs or [{}] * len(trial_params))[i]))
    (run_dir / "study.json").write_text(json.dumps({"study": "s", "metric": "accuracy",
                                                    "direction": "maximize", "optuna_url": url}))
    return run_dir


def test_importances_say_why_when_they_cannot_be_computed(tmp_path):
    from automl_pt import results

    one = results(_fake_run(tmp_path / "a", [{"x": 1.0}]))
    imp = one.importances()
    assert imp.empty and list(imp.columns) == ["param", "importance"]
    assert "at least 2 completed trials" in imp.attrs["note"] and "has 1" in imp.attrs["note"]
    fixed = results(_fake_run(tmp_path / "b", [{"x": 1.0}, {"x": 1.0}, {"x": 1.0}]))
    assert fixed.importances().empty
    assert "no hyperparameter took more than one value" in fixed.importances().attrs["note"]
    varied = results(_fake_run(tmp_path / "c", [{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 2.0},
                                                {"x": 3.0, "y": 2.0}]))
    assert varied.importances()["param"].tolist() == ["x"]


# -- plots --------------------------------------------------------------------------------------
def test_plots_take_results_or_dataframes_and_return_figures(run, tmp_path):
    from matplotlib.figure import Figure

    _, res = run
    trials, curves = res.trials(), res.curves()
    figures = {
        "history": plots.optimization_history(trials, metric="accuracy"),
        "importances": plots.importances(res.importances()),
        "curves": plots.learning_curves(curves, trials=trials, metric="accuracy"),
        "parallel": plots.parallel_coordinates(trials, metric="accuracy"),
        "backbone_strategy": plots.backbone_strategy(trials, metric="accuracy"),
        "confusion": plots.confusion_matrix(res.test_predictions(), labels=res.labels()),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, name

    # history: the best-so-far line is the running maximum of the completed trials' values
    ax = figures["history"].axes[0]
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    best_line = [line for line in ax.lines if line.get_label() == "best so far"][0]
    np.testing.assert_allclose(best_line.get_ydata(), done["value"].cummax().to_numpy())
    # curves: one dashed line per pruned trial, ending with a cross at its last epoch
    ax = figures["curves"].axes[0]
    pruned = set(trials[trials["state"] == "PRUNED"]["number"])
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == len(pruned)
    assert all(line.get_label().endswith("(pruned)") for line in dashed)
    crosses = [line for line in ax.lines if line.get_marker() == "X"]
    assert len(crosses) == len(pruned)
    # backbone x strategy: one row per pair that ran, counts add up
    table = plots.backbone_strategy_table(res)
    assert table["trials"].sum() == len(done)
    assert table["pruned"].sum() == len(pruned)
    assert set(zip(table["backbone"], table["strategy"])) == set(zip(trials["backbone"], trials["strategy"]))
    from automl_pt import AutomlError

    with pytest.raises(AutomlError, match="no param 'nope'"):
        plots.parallel_coordinates(res, params=["learning_rate", "nope"])
    # the same functions take the Results object directly
    for fn in (plots.optimization_history, plots.importances, plots.learning_curves,
               plots.parallel_coordinates, plots.backbone_strategy, plots.confusion_matrix):
        assert isinstance(fn(res), Figure)


def test_plots_of_failed_pruned_and_unnamed_trials():
    trials = pd.DataFrame({
        "number": [0, 1, 2, 3], "state": ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"],
        "value": [0.5, None, 0.3, 0.7], "backbone": ["a", "a", None, "b"],
        "strategy": ["full", "full", "full", "linear_probe"],
        "params": [json.dumps({"lr": 0.1, "s": "x"})] * 4, "lr": [0.1, 0.2, 0.3, 0.01], "s": list("xyxy")})
    ax = plots.optimization_history(trials).axes[0]
    marks = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert set(marks) == {"complete", "pruned (last value reported)", "failed"}
    assert marks["failed"][:, 0].tolist() == [1]
    table = plots.backbone_strategy_table(trials).set_index(["backbone", "strategy"])
    assert table.loc[("a", "full"), "failed"] == 1 and table.loc[("a", "full"), "best value"] == 0.5
    assert table.loc[("(none)", "full"), "pruned"] == 1 and table.loc[("(none)", "full"), "trials"] == 0
    ax = plots.parallel_coordinates(trials).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr", "s", "value"]
    across = [line for line in ax.lines if len(set(line.get_xdata())) > 1]   # not the axes themselves
    assert len(across) == 2                            # one line per completed trial


def test_figures_display_inline_in_ipython_without_pyplot(run):
    """A notebook shows a returned Figure as a PNG, with no %matplotlib magic and no pyplot."""
    from IPython.core.interactiveshell import InteractiveShell

    _, res = run
    shell = InteractiveShell.instance()
    try:
        data, _ = shell.display_formatter.format(plots.learning_curves(res))
    finally:
        InteractiveShell.clear_instance()
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_usage_counts_pruning_savings_and_gpu_hours(run):
    _, res = run
    usage = usage_summary(res)
    trials, curves = res.trials(), res.curves()
    assert usage["pruned"] == (trials["state"] == "PRUNED").sum() >= 1
    assert usage["gpu_hours"] == 0.0 and usage["gpu_trials"] == 0     # CPU only here
    assert usage["seconds_by_device"] == {"cpu": pytest.approx(trials["duration_s"].sum())}
    expected_epochs, expected_s = 0, 0.0
    for _, t in trials[trials["state"] == "PRUNED"].iterrows():
        mine = curves[curves["trial"] == t["number"]]
        unrun = int(t["epochs"]) - int(mine["epoch"].max())
        expected_epochs += unrun
        expected_s += unrun * mine["epoch_seconds"].mean()
    assert usage["pruning_saved_epochs"] == expected_epochs > 0
    assert usage["pruning_saved_s"] == pytest.approx(expected_s) and expected_s > 0


# -- the page ----------------------------------------------------------------------------------
def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl_pt.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def _assert_not_blank(png: Path, min_colours: int = 8) -> None:
    from PIL import Image

    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 10, f"{png} looks blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= min_colours, f"{png} has too few colours"


def test_report_command_writes_a_self_contained_page_and_pngs(run, tmp_path):
    path, res = run
    proc = _cli("report", str(res.run_dir))
    assert proc.returncode == 0, proc.stderr
    page_path = res.run_dir / "report" / "report.html"
    assert str(page_path) in proc.stdout.replace("\n", "")
    page = page_path.read_text()
    for name in PLOT_NAMES:                                    # PNGs for README / papers
        png = page_path.parent / f"{name}.png"
        assert png.is_file(), name
        _assert_not_blank(png)
    # self-contained: nothing to fetch (SVG namespaces are identifiers, not requests)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(http" not in page
    assert not re.search(r"<img|<iframe|<object", page)
    assert page.count('<figure class="plot"') == len(PLOT_NAMES) and page.count("<svg") == len(PLOT_NAMES)
    for section in ("leaderboard", "history", "importances", "curves", "parallel", "backbone-strategy",
                    "test", "usage", "trials"):
        assert f'<section id="{section}">' in page, section
    trials = res.trials()
    n_pruned = int((trials["state"] == "PRUNED").sum())
    assert page.count('<tr class="state-PRUNED">') == n_pruned
    assert page.count('<tr class="state-COMPLETE">') == int((trials["state"] == "COMPLETE").sum())
    leaderboard = page.split('id="leaderboard-table"')[1].split("</table>")[0]
    board = res.leaderboard()   # completed trials, and the soups measured from them
    assert (board["kind"] == "trial").sum() == int((trials["state"] == "COMPLETE").sum())
    assert leaderboard.count("<tr>") == 1 + len(board)
    assert "0 GPU-hours (every trial ran on the CPU)" in page
    assert "time saved by pruning (estimate)" in page
    assert f"trials pruned</dt><dd>{n_pruned}</dd>" in page
    assert f"accuracy {res.test_metrics['accuracy']:.4f}" in page
    assert f"optuna-dashboard sqlite:///{res.run_dir.resolve() / 'optuna.db'}" in page

    # from the study file, to a chosen path, without PNGs
    out = tmp_path / "elsewhere" / "tiny.html"
    proc = _cli("report", str(path), "--out", str(out), "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and not list(out.parent.glob("*.png"))
    assert out.read_text().count("<svg") == len(PLOT_NAMES)


def test_report_while_a_driver_holds_the_run_reads_the_live_sources(run, tmp_path):
    from automl_pt.engine.study import DriverLock

    _, res = run
    with DriverLock(res.run_dir):                       # as if 'automl-pt run' were still going
        page = build_report(res.run_dir, out=tmp_path / "live.html", png=False).html.read_text()
    assert "Optuna storage and trial files" in page
    trials = res.trials()
    assert page.count('<tr class="state-PRUNED">') == int((trials["state"] == "PRUNED").sum())
    assert page.count("<svg") == len(PLOT_NAMES)


def test_report_of_a_run_copied_without_its_optuna_storage(run, tmp_path):
    """DuckDB has everything but the importances, which need the Optuna storage: that section
    says why it is empty and the rest renders."""
    from automl_pt import AutomlError, results

    _, res = run
    copy = tmp_path / "copy"
    shutil.copytree(res.run_dir, copy, ignore=shutil.ignore_patterns("optuna.db", "report", "trials"))
    meta = json.loads((copy / "study.json").read_text())
    meta["optuna_url"] = f"sqlite:///{copy / 'optuna.db'}"
    (copy / "study.json").write_text(json.dumps(meta))
    moved = results(copy)
    assert moved.source == "duckdb" and len(moved.trials()) == len(res.trials())
    with pytest.raises(AutomlError, match="Optuna storage .* does not exist"):
        moved.importances()
    assert not (copy / "optuna.db").exists()            # reading never creates an empty storage
    page = build_report(copy, png=False).html.read_text()
    assert "cannot open the Optuna storage for importances: ConfigError" in page
    assert page.count("<svg") == len(PLOT_NAMES)
    assert page.count('<tr class="state-PRUNED">') == int((res.trials()["state"] == "PRUNED").sum())


def test_report_command_names_a_bad_target(tmp_path, capsys):
    from automl_pt.cli import main

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such study file or run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory (no study.json)" in capsys.readouterr().err


def test_report_of_a_bare_run_says_what_is_missing(tmp_path):
    """A run directory with only the Optuna storage (no DuckDB file, no epochs, no test split)."""
    for name, params in (("none", []), ("three", [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}])):
        report = build_report(_fake_run(tmp_path / name, params))
        page = report.html.read_text()
        assert "confusion" not in report.pngs and "The study has no test split." in page
        assert "<!-- no per-epoch val_accuracy recorded -->" in page   # the curves plot's placeholder
        assert page.count("<svg") == len(PLOT_NAMES) - 1
        assert "Optuna storage and trial files" in page
    none_page = (tmp_path / "none" / "run" / "report" / "report.html").read_text()
    assert "best trial</dt><dd>none completed" in none_page
    assert "best trial</dt><dd>#2: accuracy 2.0000" in page
    assert '<tr class="state-COMPLETE">' in page and page.count('<tr class="state-COMPLETE">') == 3


def test_gpu_hours_sum_the_trials_that_ran_on_cuda(tmp_path):
    from automl_pt import results

    attrs = [{"device": "cuda:0 (NVIDIA H100 80GB HBM3)", "duration_s": 5400.0},
             {"device": "cuda:1 (NVIDIA H100 80GB HBM3)", "duration_s": 1800.0},
             {"device": "cpu", "duration_s": 7200.0}]
    run_dir = _fake_run(tmp_path, [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], attrs)
    usage = usage_summary(results(run_dir))
    assert usage["gpu_hours"] == pytest.approx(2.0) and usage["gpu_trials"] == 2
    assert usage["seconds_by_device"]["cpu"] == pytest.approx(7200.0)
    page = build_report(run_dir, png=False).html.read_text()
    assert "2.000 GPU-hours over 2 trial(s)" in page


def test_tables_escape_their_cells_and_long_ones_scroll():
    from automl_pt.report.html import SCROLL_ROWS, html_table

    frame = pd.DataFrame({"backbone": ["<script>alert(1)</script>", "/models/a&b"], "value": [0.5, 0.25],
                          "state": ["COMPLETE", "PRUNED"]})
    table = html_table(frame, "t", sortable=True, row_class="state")
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert 'title="/models/a&amp;b"' in table and '<tr class="state-PRUNED">' in table
    assert 'data-sort="0.25"' in table and '<table id="t" class="sortable">' in table
    assert '<div class="scroll">' not in table
    long = pd.concat([frame] * (SCROLL_ROWS // 2 + 1), ignore_index=True)
    assert html_table(long).startswith('<div class="scroll"><table>')


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browse(page: Path, tmp_path: Path) -> tuple[str, list[str], Path]:
    """Open ``page`` in headless Chromium: (the DOM after scripts ran, console lines, screenshot)."""
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*base, "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp_path / f"{page.stem}.png"
    run = subprocess.run([*base, "--enable-logging=stderr", "--v=0", "--window-size=1280,2400",
                          f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    return dom.stdout, console, shot


def _page_errors(dom: str) -> str:
    match = re.search(r'<div id="page-errors"([^>]*)>(.*?)</div>', dom, re.S)
    assert match, "the page's error box is missing"
    return "" if "hidden" in match.group(1) and not match.group(2).strip() else match.group(2)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/setup installs it)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    _, res = run
    report = build_report(res, out=tmp_path / "page" / "report.html", png=False)
    dom, console, shot = _browse(report.html, tmp_path)
    assert 'data-ready="1"' in dom                          # the page's own script ran to the end
    assert f'data-plots="{len(PLOT_NAMES)}"' in dom         # every plot is an inline SVG in the DOM
    assert _page_errors(dom) == ""
    assert console == [], console                            # no console messages, errors included
    _assert_not_blank(shot, min_colours=50)

    # The same checks catch a broken page: a script error reaches the DOM and the console.
    broken = tmp_path / "broken" / "report.html"
    broken.parent.mkdir()
    broken.write_text(report.html.read_text().replace(
        "</main>", "<script>undefinedFunction();</script></main>"))
    dom, console, _ = _browse(broken, tmp_path)
    assert "undefinedFunction" in _page_errors(dom)
    assert any("undefinedFunction" in line for line in console)


# -- optuna-dashboard and Optuna's own API ------------------------------------------------------
def test_run_storage_opens_with_optuna_and_optuna_dashboard_in_a_fresh_process(run):
    _, res = run
    url = f"sqlite:///{res.run_dir / 'optuna.db'}"
    script = textwrap.dedent(f"""
        import io, json, sys
        import optuna
        study = optuna.load_study(study_name={res.study!r}, storage={url!r})
        out = {{"states": {{str(t.number): t.state.name for t in study.trials}},
                "best": study.best_value, "direction": study.direction.name}}
        try:
            import optuna_dashboard
        except ImportError:
            out["dashboard"] = None
        else:
            from wsgiref.util import setup_testing_defaults
            app = optuna_dashboard.wsgi({url!r})       # builds the app on the storage; serves nothing
            environ = {{}}
            setup_testing_defaults(environ)
            environ.update(PATH_INFO="/api/studies", REQUEST_METHOD="GET")
            status = []
            body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
            out["dashboard"] = [status[0], [s["study_name"] for s in json.loads(body)["study_summaries"]]]
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = res.trials()
    assert out["states"] == {str(n): s for n, s in zip(trials["number"], trials["state"])}
    # the same best value (on a tie, automl_pt's best trial is the one of lower validation loss)
    assert out["best"] == res.study_row["best_value"] and out["direction"] == "MAXIMIZE"
    assert trials.loc[trials["number"] == int(res.study_row["best_trial"]), "value"].item() == out["best"]
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        pytest.skip("optuna-dashboard is not installed (pip install 'automl-pt[report]')")
    assert out["dashboard"] == ["200 OK", [res.study]]


def test_readme_report_example_runs(run, tmp_path, monkeypatch):
    from tests.test_readme import readme_block

    _, res = run
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "quickstart-text").symlink_to(res.run_dir)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_block("report"), "README.md:report", "exec"), scope)
    assert isinstance(scope["trials"], pd.DataFrame) and len(scope["trials"]) == len(res.trials())
    assert not scope["importances"].empty
    assert (tmp_path / "curves.png").is_file()
    assert math.isclose(scope["importances"]["importance"].sum(), 1.0)
