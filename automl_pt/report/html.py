"""``automl-pt report``: one self-contained HTML page about a study, plus PNGs of its main plots.

The page holds everything inline (plots as SVG, a few lines of CSS and vanilla JavaScript): it
opens offline, from a file, with nothing fetched. Sections: summary, leaderboard (sortable),
optimisation history, hyperparameter importances, learning curves, parameters vs. value,
backbone × strategy, the best model's test score and its task's test figure (confusion matrix,
predicted-vs-true scatter, per-label F1, or the task's own: :meth:`automl_pt.tasks.Task.test_figure`), time and device use, and every trial. Build it with :func:`build_report` or ``automl-pt report STUDY.toml|RUN_DIR``.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import plots
from ..errors import ConfigError
from ..storage.store import Results

SCROLL_ROWS = 20  # longer tables scroll inside a box, with their header kept in view
REPORT_DIR = "report"
REPORT_FILE = "report.html"
#: the task's own test figure (:func:`task_test_figure`), ``task_test.png`` next to the page
TASK_FIGURE = "task_test"
#: The plots written as PNG next to the page (file stem → plotting function).
PNG_PLOTS = {
    "history": plots.optimization_history, "importances": plots.importances,
    "curves": plots.learning_curves, "parallel": plots.parallel_coordinates,
    "backbone_strategy": plots.backbone_strategy, **plots.TEST_PLOTS,
}


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html: Path
    pngs: dict[str, Path] = field(default_factory=dict)


def resolve_results(target: str | Path) -> Results:
    """Results of a study file (its ``[storage] dir``) or of a run directory."""
    from ..engine.study import results

    path = Path(target)
    if not path.exists():
        raise ConfigError(f"{path}: no such study file or run directory")
    if path.is_dir() and not (path / "study.json").is_file():
        raise ConfigError(f"{path}: not a run directory (no study.json); give a study file or the "
                          "[storage] dir of a study that has run")
    return results(path)


# -- time and device use ------------------------------------------------------------------------
def usage_summary(res: Results) -> dict[str, Any]:
    """Trial counts by state, trial time, GPU-hours and the time pruning saved.

    * ``gpu_hours``: the summed durations of trials that ran on a CUDA device (0 on CPU);
    * ``pruning_saved_s``: an estimate: each pruned trial's unrun epochs (its ``epochs`` param
      minus the epochs it ran) × its own mean epoch time (else the mean epoch time of all trials).
    """
    import pandas as pd

    trials = res.trials()
    if trials.empty:
        trials = pd.DataFrame(columns=["number", "state", "device", "duration_s", "datetime_start",
                                       "datetime_complete", "peak_memory_mb", "epochs"])
    curves = res.curves()
    states = {str(k): int(v) for k, v in trials["state"].value_counts().items()}
    durations = pd.to_numeric(trials["duration_s"], errors="coerce").fillna(0.0)
    devices = trials["device"].fillna("unknown").astype(str)
    on_gpu = devices.str.startswith("cuda")
    epoch_s = (curves.dropna(subset=["epoch_seconds"]) if "epoch_seconds" in curves.columns
               else pd.DataFrame(columns=["trial", "epoch", "epoch_seconds"]))
    mean_epoch = float(epoch_s["epoch_seconds"].mean()) if len(epoch_s) else math.nan
    saved, unrun_total, pruned_rows = 0.0, 0, []
    for _, t in trials[trials["state"] == "PRUNED"].iterrows():
        planned = t.get("epochs")
        if _missing(planned):
            continue
        mine = epoch_s[epoch_s["trial"] == t["number"]]
        ran = int(mine["epoch"].max()) if len(mine) else 0
        unrun = max(0, int(planned) - ran)
        per_epoch = float(mine["epoch_seconds"].mean()) if len(mine) else mean_epoch
        cost = 0.0 if math.isnan(per_epoch) else unrun * per_epoch
        saved += cost
        unrun_total += unrun
        pruned_rows.append({"trial": int(t["number"]), "epochs planned": int(planned), "epochs run": ran,
                            "epochs saved": unrun, "mean epoch s": per_epoch, "saved s": cost})
    start, end = trials["datetime_start"].min(), trials["datetime_complete"].max()
    wall = math.nan if _missing(start) or _missing(end) else (end - start).total_seconds()
    peak = pd.to_numeric(trials["peak_memory_mb"], errors="coerce")
    return {
        "trials": len(trials), "states": states, "complete": states.get("COMPLETE", 0),
        "pruned": states.get("PRUNED", 0), "failed": states.get("FAIL", 0),
        "trial_seconds": float(durations.sum()), "wall_seconds": wall,
        "gpu_hours": float(durations[on_gpu].sum()) / 3600, "gpu_trials": int(on_gpu.sum()),
        "seconds_by_device": {d: float(durations[devices == d].sum()) for d in sorted(devices.unique())},
        "mean_epoch_seconds": mean_epoch, "pruning_saved_s": saved, "pruning_saved_epochs": unrun_total,
        "pruned_trials": pruned_rows, "peak_memory_mb": float(peak.max()) if peak.notna().any() else math.nan,
    }


def importances_or_note(res: Results):
    """``res.importances()``; when the Optuna storage cannot be opened (a PostgreSQL server that
    is down, a run directory copied without ``optuna.db``), an empty frame whose note says why, so
    that the rest of the report still renders."""
    import pandas as pd

    try:
        return res.importances()
    except Exception as exc:  # noqa: BLE001 - any storage failure; the section names it
        empty = pd.DataFrame({"param": pd.Series(dtype="object"), "importance": pd.Series(dtype="float64")})
        first = (str(exc).splitlines() or [""])[0]
        empty.attrs["note"] = f"cannot open the Optuna storage for importances: {type(exc).__name__}: {first}"
        return empty


# -- rendering ----------------------------------------------------------------------------------
def figure_svg(fig: Any) -> str:
    """A Figure as an inline ``<svg>`` element (no XML prolog, no metadata block)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _missing(v: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # lists, dicts
        return False


def _cell(v: Any, column: str = "") -> str:
    if _missing(v):
        return ""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        v = v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ", timespec="seconds") if hasattr(v, "hour") else v.isoformat()
    if isinstance(v, float):
        if column in ("duration_s", "setup_s") or column.endswith(" s"):
            return f"{v:.1f}"
        if v.is_integer() and column in ("epochs", "batch_size", "best_epoch", "trial"):
            return str(int(v))
        return f"{v:.2e}" if v != 0 and abs(v) < 1e-3 else f"{v:.4f}"
    if column == "backbone":
        return plots.short_name(v, 40)
    return str(v)


def html_table(frame: Any, table_id: str = "", sortable: bool = False, row_class: str | None = None) -> str:
    """A DataFrame as an escaped HTML table; ``row_class`` names a column whose value becomes
    each row's CSS class (``state-PRUNED``...)."""
    cls = ' class="sortable"' if sortable else ""
    ident = f' id="{_esc(table_id)}"' if table_id else ""
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    rows = []
    for values in zip(*(frame[c].tolist() for c in frame.columns)):  # keeps each column's type
        r = dict(zip(frame.columns, values))
        rc = f' class="state-{_esc(r[row_class])}"' if row_class and row_class in frame.columns else ""
        cells = []
        for c in frame.columns:
            v = None if _missing(r[c]) else r[c]
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            sort_key = f' data-sort="{_esc(v)}"' if numeric and v == v else ""
            title = f' title="{_esc(v)}"' if c == "backbone" else ""  # the full name or path
            cells.append(f'<td{sort_key}{title}{" class=num" if numeric else ""}>{_esc(_cell(v, str(c)))}</td>')
        rows.append(f"<tr{rc}>{''.join(cells)}</tr>")
    table = f"<table{ident}{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="scroll">{table}</div>' if len(rows) > SCROLL_ROWS else table


def _section(ident: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{ident}"><h2>{_esc(title)}</h2>{note_html}{body}</section>'


def _figure_block(name: str, fig: Any, pngs: dict[str, Path]) -> str:
    link = f' <a href="{_esc(pngs[name].name)}">PNG</a>' if name in pngs else ""
    return f'<figure class="plot" data-plot="{name}">{figure_svg(fig)}<figcaption>{link}</figcaption></figure>'


def _hours(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def render_html(res: Results, figures: dict[str, Any], pngs: dict[str, Path], imp: Any = None) -> str:
    """The report page of ``res``, with ``figures`` (name → Figure) inlined as SVG; ``imp`` is
    :func:`importances_or_note` of ``res`` (computed when not given)."""
    usage = usage_summary(res)
    board = res.leaderboard()
    best_trial, best_value = _best_of(res, board)
    test = res.test_metrics or {}
    parts = [_summary(res, usage, best_trial, best_value, test),
             _leaderboard_section(board),
             *_plot_sections(res, figures, pngs, imp),
             _test_section(res, figures, pngs, test, best_trial),
             _usage_section(usage),
             _trials_section(res)]
    return _page(res, parts)


def _best_of(res: Results, board: Any) -> tuple[Any, Any]:
    """``(best trial number, its value)``, from the leaderboard while the studies row has none."""
    best_trial, best_value = res.study_row.get("best_trial"), res.study_row.get("best_value")
    if _missing(best_trial) and len(board):  # read from the Optuna storage: no studies row yet
        best_trial, best_value = board.loc[0, "trial"], board.loc[0, res.metric]
    return best_trial, best_value


def _summary(res: Results, usage: dict[str, Any], best_trial: Any, best_value: Any,
             test: dict[str, float]) -> str:
    """The list at the top of the page: task, metric, trials, best trial, test score, where from."""
    metric, direction = res.metric, res.direction
    running = usage["states"].get("RUNNING", 0) + usage["states"].get("WAITING", 0)
    summary = [
        ("task", res.study_row.get("task", "")), ("metric", f"{metric} ({direction}, validation)"),
        ("trials", f"{usage['trials']} ({usage['complete']} complete, {usage['pruned']} pruned, "
                   f"{usage['failed']} failed" + (f", {running} running" if running else "") + ")"),
        ("best trial", "none completed" if _missing(best_trial) else
         f"#{int(best_trial)}: {metric} {float(best_value):.4f}"),
        ("test (best model)", ", ".join(f"{k} {v:.4f}" for k, v in test.items())
         or "none (no test split, or the best model is not exported yet)"),
        ("run directory", str(res.run_dir)),
        ("read from", "DuckDB results file" if res.source == "duckdb"
         else "Optuna storage and trial files (a driver is running, or DuckDB is busy)"),
    ]
    return ('<dl class="summary">' + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in summary)
            + "</dl>")


def _leaderboard_section(board: Any) -> str:
    return _section("leaderboard", "Leaderboard", html_table(board, "leaderboard-table", sortable=True)
                    if len(board) else "<p>No completed trial yet.</p>",
                    "Completed trials and the soups, ensembles and refit built from them "
                    "(kind), best first. Click a column header to sort.")


def _plot_sections(res: Results, figures: dict[str, Any], pngs: dict[str, Path], imp: Any) -> list[str]:
    """History, importances, learning curves, hyperparameters vs. value, backbone × strategy."""
    parts = [_section("history", "Optimisation history", _figure_block("history", figures["history"], pngs))]
    imp = importances_or_note(res) if imp is None else imp
    parts.append(_section("importances", "Hyperparameter importances",
                          _figure_block("importances", figures["importances"], pngs)
                          + (html_table(imp) if len(imp) else ""), _esc(imp.attrs.get("note", ""))))
    parts.append(_section("curves", "Learning curves", _figure_block("curves", figures["curves"], pngs),
                          f"Validation {_esc(res.metric)} after every epoch. Pruned trials are dashed and end "
                          "where the pruner stopped them."))
    parts.append(_section("parallel", "Hyperparameters vs. value",
                          _figure_block("parallel", figures["parallel"], pngs)))
    table = plots.backbone_strategy_table(res)
    parts.append(_section("backbone-strategy", "Backbone × strategy",
                          _figure_block("backbone_strategy", figures["backbone_strategy"], pngs)
                          + html_table(table)))
    return parts


def task_test_figure(res: Results) -> Any:
    """The task's own figure of the exported best model's test predictions
    (:meth:`automl_pt.tasks.Task.test_figure`, e.g. images with their predicted and true boxes),
    or ``None``: no exported model, no test predictions, a task without one, or a task no
    installed plugin provides."""
    from ..export.predictor import MANIFEST

    manifest_path = res.best_model_dir / MANIFEST
    frame = res.test_predictions()
    if frame is None or not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    from ..plugins import create_plugin_host

    info = create_plugin_host().registry.tasks.get(manifest.get("task"))
    if info is None:
        return None
    task = info.create()
    task.load_state(manifest.get("task_state") or {}, str(manifest_path))
    return task.test_figure(frame, list(manifest.get("labels") or []))


def _test_section(res: Results, figures: dict[str, Any], pngs: dict[str, Path], test: dict[str, float],
                  best_trial: Any) -> str:
    """The best model's test scores and its task's test figure (confusion matrix, scatter or
    per-label scores, or the task's own: :func:`task_test_figure`)."""
    test_plot = plots.test_plot_name(res)   # confusion, scatter or per_label, by the task
    test_html = ("<p>" + _esc(", ".join(f"{k}: {v:.4f}" for k, v in test.items())) + "</p>") if test else ""
    if TASK_FIGURE in figures:
        test_html += _figure_block(TASK_FIGURE, figures[TASK_FIGURE], pngs)
    if test_plot in figures:
        test_html += _figure_block(test_plot, figures[test_plot], pngs)
    if test_plot == "per_label":
        test_html += html_table(plots.per_label_table(res), "per-label-table")
    test_html += _baseline_table(res.baseline, test)
    table = res.test_table()   # the task's own breakdown (e.g. a row per kind of span)
    if table is not None:
        title = table.attrs.get("title") or "Test scores by group"
        test_html += f"<h3>{_esc(title)}</h3>" + html_table(table.round(4), "test-table")
    which = "" if _missing(best_trial) else f" (trial {int(best_trial)})"
    return _section("test", f"Best model on the test split{which}",
                    test_html or "<p>The study has no test split.</p>",
                    f"Scored once, at export ({_esc(res.best_model_dir)}).")


def _baseline_table(baseline: dict | None, test: dict[str, float]) -> str:
    """The pretrained model's test scores before fine-tuning next to the best model's (a task
    that scores a zero-shot baseline, :attr:`automl_pt.tasks.Task.scores_baseline`)."""
    import pandas as pd

    before = (baseline or {}).get("test") or {}
    shared = [m for m in before if m in test]
    if not shared:
        return ""
    frame = pd.DataFrame({"metric": shared, "pretrained (before fine-tuning)": [before[m] for m in shared],
                          "fine-tuned (best model)": [test[m] for m in shared]})
    name = plots.short_name(str(baseline.get("backbone", "")), 40) if baseline else ""
    return (f"<h3>Before and after fine-tuning{f' ({_esc(name)})' if name else ''}</h3>"
            + html_table(frame.round(4), "baseline-table"))


def _usage_section(usage: dict[str, Any]) -> str:
    """Time and device use, with the trials pruning stopped."""
    import pandas as pd

    body = ('<dl class="summary" id="usage">'
            + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in _usage_rows(usage)) + "</dl>")
    if usage["pruned_trials"]:
        body += html_table(pd.DataFrame(usage["pruned_trials"]), "pruning-table")
    return _section("usage", "Time and device use", body,
                    "Time saved by pruning is an estimate: each pruned trial's unrun epochs × its own "
                    "mean epoch time.")


def _usage_rows(usage: dict[str, Any]) -> list[tuple[str, str]]:
    gpu = (f"{usage['gpu_hours']:.3f} GPU-hours over {usage['gpu_trials']} trial(s)" if usage["gpu_trials"]
           else "0 GPU-hours (every trial ran on the CPU)")
    saved = usage["pruning_saved_s"]
    share = saved / (usage["trial_seconds"] + saved) if usage["trial_seconds"] + saved > 0 else 0.0
    return [
        ("trial time (sum)", _hours(usage["trial_seconds"])),
        ("wall time (first start to last end)", _hours(usage["wall_seconds"])),
        ("GPU use", gpu),
        ("time by device", "; ".join(f"{d}: {_hours(s)}" for d, s in usage["seconds_by_device"].items())),
        ("trials pruned", str(usage["pruned"])),
        ("time saved by pruning (estimate)",
         f"{_hours(saved)} ({usage['pruning_saved_epochs']} epochs not run; "
         f"{share:.0%} of the time the study would have taken)"),
        ("mean epoch time", _hours(usage["mean_epoch_seconds"])),
        ("peak memory of a trial", "n/a" if usage["peak_memory_mb"] != usage["peak_memory_mb"]
         else f"{usage['peak_memory_mb']:.0f} MB"),
    ]


def _trials_section(res: Results) -> str:
    trials = res.trials()
    cols = [c for c in ("number", "state", "state_reason", "value", "backbone", "strategy", "learning_rate",
                        "epochs", "batch_size", "best_epoch", "device", "duration_s",
                        "samples_per_s", "error") if c in trials]
    return _section("trials", "All trials", html_table(trials[cols], "trials-table", sortable=True,
                                                       row_class="state")
                    if len(trials) else "<p>No trials.</p>",
                    "Pruned trials are orange, failed trials red. samples_per_s: training examples "
                    "per second of the trial's epochs, evaluation left out.")


def _page(res: Results, parts: list[str]) -> str:
    """The whole page around the sections ``parts``: navigation, footer, dashboard command."""
    nav = "".join(f'<a href="#{i}">{_esc(t)}</a>' for i, t in (
        ("leaderboard", "leaderboard"), ("history", "history"), ("importances", "importances"),
        ("curves", "curves"), ("parallel", "params"), ("backbone-strategy", "backbone × strategy"),
        ("test", "test"), ("usage", "time & devices"), ("trials", "trials")))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return PAGE.format(title=_esc(f"automl-pt report: {res.study}"), study=_esc(res.study), nav=nav,
                       body="\n".join(parts), generated=_esc(generated),
                       dashboard=_esc(dashboard_command(res)))


def dashboard_command(res: Results) -> str:
    """The optuna-dashboard command for this run's Optuna storage."""
    meta_path = res.run_dir / "study.json"
    url = json.loads(meta_path.read_text()).get("optuna_url", "") if meta_path.is_file() else ""
    from ..engine.prepared import redact

    return f"optuna-dashboard {redact(url)}" if url else ""


def build_report(target: str | Path | Results, out: str | Path | None = None, png: bool = True,
                 dpi: int = 150) -> Report:
    """Write the HTML page (default ``<run dir>/report/report.html``) and, with ``png``, one PNG
    per main plot next to it. The page is written atomically (temp file + rename)."""
    res = target if isinstance(target, Results) else resolve_results(target)
    if not out:
        from ..storage.rundir import check_run_dir

        check_run_dir(res.run_dir, res.study, create=False)   # report/ goes into the run dir
    html_path = Path(out) if out else res.run_dir / REPORT_DIR / REPORT_FILE
    html_path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib = plots.require_matplotlib()
    figures = {}
    imp = importances_or_note(res)
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": res.study}):
        test_plot = plots.test_plot_name(res)
        for name, fn in PNG_PLOTS.items():
            if name in plots.TEST_PLOTS and name != (test_plot or "confusion"):
                continue   # the test figure of the study's task only
            figures[name] = fn(imp if name == "importances" else res)
        task_figure = task_test_figure(res)
        if task_figure is not None:
            figures[TASK_FIGURE] = task_figure
        pngs: dict[str, Path] = {}
        if png:
            for name, fig in figures.items():
                if name in plots.TEST_PLOTS and test_plot is None:
                    continue
                path = html_path.parent / f"{name}.png"
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                fig.savefig(tmp, format="png", dpi=dpi)
                os.replace(tmp, path)
                pngs[name] = path
        page = render_html(res, figures, pngs, imp)
    tmp = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html_path)
    return Report(html_path, pngs)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>
/* Errors on this page are kept in #page-errors (read back by tests via the DOM). */
window.addEventListener("error", function (e) {{
  var box = document.getElementById("page-errors");
  if (box) {{ box.hidden = false; box.textContent += (e.message || "error") + "\\n"; }}
}});
</script>
<style>
body {{ font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1f;
        background: #fff; }}
header {{ background: #16324f; color: #fff; padding: 14px 24px; }}
header h1 {{ margin: 0; font-size: 22px; }}
nav {{ padding: 6px 24px; background: #eef2f6; position: sticky; top: 0; z-index: 1; }}
nav a {{ margin-right: 14px; color: #16324f; }}
main {{ padding: 0 24px 40px; max-width: 1200px; }}
section {{ margin-top: 28px; }}
h2 {{ border-bottom: 2px solid #16324f; padding-bottom: 4px; font-size: 19px; }}
.note {{ color: #555; font-size: 13px; }}
dl.summary {{ display: grid; grid-template-columns: max-content auto; gap: 4px 18px; }}
dl.summary dt {{ font-weight: 600; }}
dl.summary dd {{ margin: 0; }}
table {{ border-collapse: collapse; margin: 10px 0; font-size: 13px; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f3f5f7; }}
div.scroll {{ max-height: 560px; overflow: auto; display: inline-block; margin: 10px 0; }}
div.scroll table {{ margin: 0; }}
div.scroll th {{ position: sticky; top: 0; }}
table.sortable th {{ cursor: pointer; }}
table.sortable th.asc::after {{ content: " \\25B2"; }}
table.sortable th.desc::after {{ content: " \\25BC"; }}
tr.state-PRUNED {{ background: #fff1e0; }}
tr.state-FAIL {{ background: #fde2e1; }}
figure.plot {{ margin: 8px 0; }}
figure.plot svg {{ max-width: 100%; height: auto; }}
#page-errors {{ color: #b00; white-space: pre; }}
footer {{ color: #666; font-size: 12px; padding: 12px 24px; border-top: 1px solid #ddd; }}
</style>
</head>
<body>
<header><h1>automl-pt report: {study}</h1></header>
<nav>{nav}</nav>
<main>
<div id="page-errors" hidden></div>
{body}
</main>
<footer>Generated {generated} by automl-pt. Explore the same study interactively:
<code>{dashboard}</code></footer>
<script>
(function () {{
  function key(td) {{
    var v = td.getAttribute("data-sort");
    return v === null ? td.textContent.trim().toLowerCase() : parseFloat(v);
  }}
  document.querySelectorAll("table.sortable").forEach(function (table) {{
    table.querySelectorAll("th").forEach(function (th, col) {{
      th.addEventListener("click", function () {{
        var asc = !th.classList.contains("asc");
        table.querySelectorAll("th").forEach(function (h) {{ h.classList.remove("asc", "desc"); }});
        th.classList.add(asc ? "asc" : "desc");
        var body = table.tBodies[0];
        Array.prototype.slice.call(body.rows).sort(function (a, b) {{
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x === y) return 0;
          return (x < y ? -1 : 1) * (asc ? 1 : -1);
        }}).forEach(function (row) {{ body.appendChild(row); }});
      }});
    }});
  }});
  var svgs = document.querySelectorAll("figure.plot svg");
  document.body.setAttribute("data-plots", String(svgs.length));
  document.body.setAttribute("data-ready", "1");
}})();
</script>
</body>
</html>
"""
