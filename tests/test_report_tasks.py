"""The report's test figure follows the task: a regression study shows its test predictions
against the true numbers (``scatter``: the y = x line, rmse in the title), a multi-label study
its per-label F1 and support (``per_label``, with the table); neither shows the classification
placeholder. The studies are the tiny exported regression and multi-label text models."""

from __future__ import annotations

import json
import re
import numpy as np
import pandas as pd
import pytest

import automl_pt
from automl_pt.report import plots
from automl_pt.report.html import build_report
from tests.support.exported import cached, text_task_best
from tests.test_report import CHROMIUM, _assert_not_blank, _browse, _page_errors

#: figures of every report besides the test figure
COMMON = ("history", "importances", "curves", "parallel", "backbone_strategy")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, automl_pt.Results]:
    base = tmp_path_factory.getbasetemp() / "exported-models"
    return {kind: automl_pt.results(cached(base, f"text-{kind}",
                                           lambda root, k=kind: text_task_best(root, k)).parent)
            for kind in ("regression", "multilabel")}


def test_scatter_plots_predictions_against_the_truth_with_the_rmse(runs, tmp_path):
    res = runs["regression"]
    frame = res.test_predictions()
    assert plots.test_plot_name(res) == "scatter" and plots.test_plot_name(frame) == "scatter"
    fig = plots.prediction_scatter(res)
    ax = fig.axes[0]
    rmse = res.test_metrics["rmse"]
    assert f"rmse {rmse:.4g}" in ax.get_title()
    assert ax.get_xlabel() == "true score" and ax.get_ylabel() == "predicted score"
    diagonal = [line for line in ax.lines if line.get_label() == "y = x (perfect)"][0]
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    dots = ax.collections[0].get_offsets()
    np.testing.assert_allclose(dots[:, 0], frame["true"]) and np.testing.assert_allclose(dots[:, 1], frame["pred"])
    fig.savefig(tmp_path / "scatter.png")
    _assert_not_blank(tmp_path / "scatter.png")
    # a frame of class indices is no regression: the figure says so instead of plotting
    classes = pd.DataFrame({"true": [0, 1], "pred": [1, 1]})
    assert "not a regression" in plots.prediction_scatter(classes).axes[0].texts[0].get_text()


def test_per_label_table_and_figure_agree_with_the_test_metrics(runs, tmp_path):
    res = runs["multilabel"]
    assert plots.test_plot_name(res) == "per_label"
    table = plots.per_label_table(res)
    assert table["label"].tolist() == ["food", "law", "space"]
    test = pd.read_csv(res.run_dir.parent / "data" / "test.csv")
    truth = [set(s.split(";")) for s in test["topics"]]
    assert table["support"].tolist() == [sum(lab in t for t in truth) for lab in table["label"]]
    assert table["f1"].mean() == pytest.approx(res.test_metrics["macro_f1"], abs=1e-9)
    fig = plots.per_label_scores(res)
    f1_ax, support_ax = fig.axes[:2]
    assert f"micro-F1 {res.test_metrics['micro_f1']:.4f}" in fig._suptitle.get_text()
    np.testing.assert_allclose([bar.get_width() for bar in f1_ax.patches], table["f1"])
    assert [t.get_text() for t in f1_ax.get_yticklabels()] == ["food", "law", "space"]
    widths = [bar.get_width() for bar in support_ax.patches]
    assert widths == table["support"].tolist() + table["predicted"].tolist()
    fig.savefig(tmp_path / "per_label.png")
    _assert_not_blank(tmp_path / "per_label.png")


@pytest.mark.parametrize("kind, figure", [("regression", "scatter"), ("multilabel", "per_label")])
def test_report_shows_the_tasks_test_figure(runs, kind, figure, tmp_path):
    res = runs[kind]
    report = build_report(res, out=tmp_path / "report.html")
    page = report.html.read_text()
    assert set(report.pngs) == {*COMMON, figure}              # no confusion matrix, no placeholder
    _assert_not_blank(report.pngs[figure])
    test_section = page.split('<section id="test">')[1].split("</section>")[0]
    assert test_section.count("<svg") == 1 and "no test predictions" not in page
    assert page.count("<svg") == len(COMMON) + 1
    assert f'<figure class="plot" data-plot="{figure}">' in test_section
    metrics = json.loads((res.best_model_dir / "metrics.json").read_text())["test"]
    assert f"{res.metric}: {metrics[res.metric]:.4f}" in test_section
    if kind == "multilabel":
        rows = re.findall(r"<tr>", test_section.split('id="per-label-table"')[1])
        assert len(rows) == 1 + 3                            # header + one row per label


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/setup installs it)")
@pytest.mark.parametrize("kind", ["regression", "multilabel"])
def test_task_reports_render_in_headless_chromium(runs, kind, tmp_path):
    report = build_report(runs[kind], out=tmp_path / "page" / "report.html", png=False)
    dom, console, shot = _browse(report.html, tmp_path)
    assert 'data-ready="1"' in dom and f'data-plots="{len(COMMON) + 1}"' in dom
    assert _page_errors(dom) == "" and console == [], console
    _assert_not_blank(shot, min_colours=50)


def test_test_plot_name_without_predictions():
    assert plots.test_plot_name(None) is None
    assert plots.test_plot_name(pd.DataFrame({"true": [], "pred": []})) is None
    assert plots.test_plot_name(pd.DataFrame({"true": [0, 1], "pred": [0, 0]})) == "confusion"
    assert plots.test_plot_name(pd.DataFrame({"example": [0, 0], "label": [0, 1], "true": [1, 0],
                                              "pred": [1, 1]})) == "per_label"
    assert "not multi-label" in plots.per_label_scores(pd.DataFrame({"true": [0.5], "pred": [1.0]})
                                                        ).axes[0].texts[0].get_text()
