"""Plots of a study's results as matplotlib Figures, for the HTML report, papers and notebooks.

Every function takes a :class:`automl_pt.storage.store.Results` (``automl_pt.results(run_dir)``) or the
DataFrames it returns (``results.trials()``, ``results.curves()``, ``results.importances()``,
``results.test_predictions()``) and returns a :class:`matplotlib.figure.Figure`. Figures are built
without pyplot (no global state, no display needed); Jupyter shows a returned Figure inline, and
``fig.savefig("x.png")`` / ``"x.svg"`` writes a file::

    from automl_pt.report import plots
    res = automl_pt.results("runs/quickstart-text")
    plots.optimization_history(res)
    plots.learning_curves(res)

Needs matplotlib: ``pip install 'automl-pt[report]'``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import AutomlError

#: Colours of trial states, shared by every plot and the HTML report.
STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#7f7f7f",
                "WAITING": "#7f7f7f"}


def require_matplotlib():
    """The matplotlib module, or an :class:`AutomlError` with the install command."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AutomlError("plots and reports need matplotlib: pip install 'automl-pt[report]'") from exc
    return matplotlib


_FIGURE_CLASS: Any = None


def _figure_class():
    """A Figure subclass that Jupyter shows inline through ``_repr_png_`` even when pyplot (and
    so the inline backend) was never imported; built on first use (matplotlib is optional)."""
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        require_matplotlib()
        from matplotlib.figure import Figure

        class NotebookFigure(Figure):
            def _repr_png_(self) -> bytes:
                import io

                buf = io.BytesIO()
                self.savefig(buf, format="png", dpi=100)
                return buf.getvalue()

        _FIGURE_CLASS = NotebookFigure
    return _FIGURE_CLASS


def _figure(width: float = 7.0, height: float = 4.0):
    return _figure_class()(figsize=(width, height), layout="constrained")


def _is_results(obj: Any) -> bool:
    from ..storage.store import Results

    return isinstance(obj, Results)


def _trials(source: Any, metric: str | None, direction: str | None):
    """(trials frame with flattened params, metric name, direction) from Results or a DataFrame."""
    if _is_results(source):
        return source.trials(), metric or source.metric, direction or source.direction
    return source, metric or "value", direction or "maximize"


def _empty(fig, ax, message: str):
    fig.set_size_inches(fig.get_figwidth(), 1.2)
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#555555",
            wrap=True)
    return fig


def short_name(name: Any, width: int = 28) -> str:
    """A backbone name fit for an axis: a local path shows its last folder."""
    text = str(name)
    if "/" in text and not text.startswith(("hf:", "timm:")) and Path(text).name:
        text = Path(text).name
    return text if len(text) <= width else "…" + text[-(width - 1):]


def optimization_history(source: Any, metric: str | None = None, direction: str | None = None):
    """Objective value of every trial in trial order, with the best-so-far line over completed
    trials. Pruned trials are drawn at the last value they reported; failed trials as red ticks
    on the axis (they have no value)."""
    trials, metric, direction = _trials(source, metric, direction)
    fig = _figure()
    ax = fig.add_subplot()
    if trials.empty:
        return _empty(fig, ax, "no trials yet")
    trials = trials.sort_values("number")
    for state, marker, label in (("COMPLETE", "o", "complete"),
                                 ("PRUNED", "X", "pruned (last value reported)")):
        rows = trials[(trials["state"] == state) & trials["value"].notna()]
        if len(rows):
            ax.scatter(rows["number"], rows["value"], marker=marker, s=36, color=STATE_COLORS[state],
                       label=label, zorder=3)
    done = trials[trials["state"] == "COMPLETE"]
    if len(done):
        best = done["value"].cummin() if direction == "minimize" else done["value"].cummax()
        ax.step(done["number"], best, where="post", color="#2ca02c", linewidth=2, label="best so far")
    failed = trials[trials["state"] == "FAIL"]
    if len(failed):
        ax.scatter(failed["number"], [0.02] * len(failed), marker="|", s=200, color=STATE_COLORS["FAIL"],
                   transform=ax.get_xaxis_transform(), label="failed", zorder=3)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (validation)")
    ax.set_title(f"Optimisation history ({direction})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig


def importances(source: Any):
    """Horizontal bars of hyperparameter importances (Optuna's default evaluator)."""
    frame = source.importances() if _is_results(source) else source
    fig = _figure(7.0, max(2.5, 0.45 * len(frame) + 1.2))
    ax = fig.add_subplot()
    if frame.empty:
        return _empty(fig, ax, frame.attrs.get("note", "no importances"))
    frame = frame.sort_values("importance")
    ax.barh(frame["param"].astype(str), frame["importance"], color="#1f77b4")
    for y, v in enumerate(frame["importance"]):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize="small")
    ax.set_xlim(0, max(1e-9, float(frame["importance"].max())) * 1.18)
    ax.set_xlabel("importance (sums to 1)")
    ax.set_title("Hyperparameter importances")
    return fig


def learning_curves(source: Any, trials: Any = None, metric: str | None = None,
                    direction: str | None = None):
    """Validation metric per epoch, one line per trial: completed trials solid, pruned trials
    dashed and ending in a cross where they were stopped, the best trial thick.
    ``source`` is a Results, or ``results.curves()`` together with ``trials=results.trials()``."""
    if _is_results(source):
        curves = source.curves()
        trials, metric, direction = _trials(source, metric, direction)
    else:
        curves = source
        metric = metric or "accuracy"
        direction = direction or "maximize"
    column = f"val_{metric}"
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    if curves is None or curves.empty or column not in curves.columns:
        return _empty(fig, ax, f"no per-epoch {column} recorded")
    states = {} if trials is None else dict(zip(trials["number"], trials["state"]))
    best = None
    if trials is not None:
        done = trials[trials["state"] == "COMPLETE"]
        if len(done):
            best = int(done.loc[done["value"].idxmin() if direction == "minimize" else done["value"].idxmax(),
                                "number"])
    many = curves["trial"].nunique() > 12
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#7f7f7f", "#d62728"]
    for number, rows in curves.groupby("trial"):
        rows = rows.dropna(subset=[column]).sort_values("epoch")
        if rows.empty:
            continue
        state = states.get(number, "COMPLETE")
        pruned = state == "PRUNED"
        color = (STATE_COLORS.get(state, "#7f7f7f") if many or pruned
                 else palette[int(number) % len(palette)])  # orange is kept for pruned trials
        if many and number == best:
            color = "#2ca02c"
        line, = ax.plot(rows["epoch"], rows[column], linestyle="--" if pruned else "-",
                        linewidth=3 if number == best else (0.8 if many else 1.4), color=color,
                        alpha=0.9 if number == best or not many else 0.35, marker="o",
                        markersize=3 if not many else 1.5, zorder=5 if number == best else 2,
                        label=None if many else f"trial {number}" + (" (pruned)" if pruned else "")
                        + (" (running)" if state == "RUNNING" else "")
                        + (" (best)" if number == best else ""))
        if pruned:
            ax.plot(rows["epoch"].iloc[-1], rows[column].iloc[-1], marker="X", markersize=6 if many else 10,
                    color=line.get_color(), zorder=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.set_title("Learning curves (pruned trials dashed, X where stopped)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if many:
        from matplotlib.lines import Line2D

        ax.legend(handles=[Line2D([], [], color=STATE_COLORS["COMPLETE"], label="complete"),
                           Line2D([], [], color=STATE_COLORS["PRUNED"], linestyle="--", marker="X",
                                  label="pruned"),
                           *([Line2D([], [], color="#2ca02c", linewidth=3, label=f"best: trial {best}")]
                             if best is not None else [])], fontsize="small")
    else:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _param_columns(trials: Any, params: list[str] | None) -> list[str]:
    if params is not None:
        unknown = [p for p in params if p not in trials.columns]
        if unknown:
            raise AutomlError(f"parallel_coordinates: no param {', '.join(map(repr, unknown))} in the "
                              f"trials (columns: {', '.join(map(str, trials.columns))})")
        return list(params)
    names: list[str] = []
    for raw in trials["params"]:
        for name in (json.loads(raw) if isinstance(raw, str) else (raw or {})):
            if name not in names:
                names.append(name)
    return [n for n in names if n in trials.columns and trials[n].astype(str).nunique() > 1]


def parallel_coordinates(source: Any, params: list[str] | None = None, metric: str | None = None,
                         direction: str | None = None):
    """One vertical axis per hyperparameter that varied (numbers on a linear or, for wide positive
    ranges, log scale; categories evenly spaced) plus the objective; one line per completed
    trial, coloured by its value."""
    trials, metric, direction = _trials(source, metric, direction)
    fig = _figure(max(7.0, 1.3 * (len(params or []) + 2)), 4.2)
    ax = fig.add_subplot()
    done = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    names = _param_columns(done, params) if len(done) else []
    if len(done) < 2 or not names:
        return _empty(fig, ax, "a parallel-coordinates view needs two completed trials whose "
                               "hyperparameters differ")
    import numpy as np

    fig.set_size_inches(max(7.0, 1.3 * (len(names) + 1)), 4.2)
    columns, ticks = [], []
    for name in names:
        col = done[name]
        numeric = col.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
        if numeric:
            values = col.astype(float).to_numpy()
            lo, hi = float(values.min()), float(values.max())
            log = lo > 0 and hi / lo > 20
            f = np.log10 if log else (lambda x: x)
            span = (f(hi) - f(lo)) or 1.0
            columns.append((f(values) - f(lo)) / span)
            ticks.append([(0.0, _num(lo)), (1.0, _num(hi))])
        else:
            cats = sorted(col.astype(str).unique())
            pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
            columns.append(np.array([pos[str(v)] for v in col]))
            ticks.append([(p, short_name(c, 22)) for c, p in pos.items()])
    value = done["value"].astype(float).to_numpy()
    vlo, vhi = float(value.min()), float(value.max())
    columns.append((value - vlo) / ((vhi - vlo) or 1.0))
    ticks.append([(0.0, _num(vlo)), (1.0, _num(vhi))])
    data = np.vstack(columns).T
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    norm = Normalize(vlo, vhi if vhi > vlo else vlo + 1e-9)
    cmap = colormaps["viridis" if direction == "maximize" else "viridis_r"]
    xs = np.arange(data.shape[1])
    for row, v in sorted(zip(data, value), key=lambda rv: rv[1] if direction == "maximize" else -rv[1]):
        ax.plot(xs, row, color=cmap(norm(v)), alpha=0.85, linewidth=1.6)
    for x, axis_ticks in zip(xs, ticks):
        ax.axvline(x, color="#333333", linewidth=0.8)
        for y, text in axis_ticks:
            ax.text(x + 0.03, y, text, fontsize="x-small", va="center")
    ax.set_xticks(xs, [*names, metric], rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(xs) - 0.5)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    ax.set_title("Hyperparameters vs. value (completed trials)")
    return fig


def _num(v: float) -> str:
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.1e}"
    return f"{v:.3g}"


def backbone_strategy_table(source: Any, metric: str | None = None, direction: str | None = None):
    """Backbone × fine-tuning strategy over completed trials: best value, mean value and trial
    count per pair (a DataFrame, one row per pair, best first)."""
    import pandas as pd

    trials, metric, direction = _trials(source, metric, direction)
    columns = ["backbone", "strategy", "trials", "pruned", "failed", f"best {metric}", f"mean {metric}"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    trials = trials.assign(**{c: trials[c].astype(object).where(trials[c].notna(), "(none)")
                              for c in ("backbone", "strategy")})
    rows = []
    for (backbone, strategy), group in trials.groupby(["backbone", "strategy"]):
        done = group[group["state"] == "COMPLETE"]["value"].astype(float)
        best = (done.min() if direction == "minimize" else done.max()) if len(done) else math.nan
        rows.append({"backbone": backbone, "strategy": strategy, "trials": len(done),
                     "pruned": int((group["state"] == "PRUNED").sum()),
                     "failed": int((group["state"] == "FAIL").sum()),
                     f"best {metric}": best, f"mean {metric}": done.mean() if len(done) else math.nan})
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(f"best {metric}", ascending=direction == "minimize", na_position="last",
                             kind="stable").reset_index(drop=True)


def backbone_strategy(source: Any, metric: str | None = None, direction: str | None = None):
    """Heat map of the best value per backbone (rows) and strategy (columns), with counts."""
    table = backbone_strategy_table(source, metric, direction)
    _, metric, direction = _trials(source, metric, direction)
    backbones = list(dict.fromkeys(table["backbone"])) if len(table) else []
    strategies = sorted(set(table["strategy"].astype(str))) if len(table) else []
    fig = _figure(max(5.0, 1.8 * len(strategies) + 3.0), max(2.6, 0.7 * len(backbones) + 1.6))
    ax = fig.add_subplot()
    best_col = f"best {metric}"
    if table.empty or table[best_col].isna().all():
        return _empty(fig, ax, "no completed trials")
    import numpy as np

    grid = np.full((len(backbones), len(strategies)), np.nan)
    counts = np.zeros_like(grid)
    for _, r in table.iterrows():
        i, j = backbones.index(r["backbone"]), strategies.index(str(r["strategy"]))
        grid[i, j], counts[i, j] = r[best_col], r["trials"]
    cmap = "viridis" if direction == "maximize" else "viridis_r"
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    for i in range(len(backbones)):
        for j in range(len(strategies)):
            if math.isnan(grid[i, j]):
                ax.text(j, i, "no completed\ntrial", ha="center", va="center", fontsize="x-small",
                        color="#555555")
                continue
            dark = hi > lo and (grid[i, j] - lo) / (hi - lo) < 0.5
            n = int(counts[i, j])
            ax.text(j, i, f"{grid[i, j]:.4f}\n({n} trial{'' if n == 1 else 's'})", ha="center", va="center",
                    fontsize="small", color="white" if dark == (direction == "maximize") else "black")
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_yticks(range(len(backbones)), [short_name(b) for b in backbones])
    ax.set_xlabel("strategy")
    ax.set_title(f"Best {metric} per backbone × strategy")
    fig.colorbar(image, ax=ax, label=metric)
    return fig


def confusion_counts(source: Any, labels: list[str] | None = None):
    """Confusion matrix (rows: true label, columns: predicted) as a DataFrame of counts, from
    ``results`` or its ``test_predictions()`` frame; ``None`` without test predictions."""
    import pandas as pd

    if _is_results(source):
        labels = labels or source.labels()
        source = source.test_predictions()
    if source is None:
        return None
    if "example" in source.columns or "true" not in source.columns or source["true"].dtype.kind not in "iu":
        return None   # multi-label / regression / text test predictions: no confusion matrix
    n = max(len(labels or []), int(max(source["true"].max(), source["pred"].max()) + 1) if len(source) else 0)
    names = list(labels or []) + [str(i) for i in range(len(labels or []), n)]
    counts = pd.crosstab(pd.Categorical(source["true"], categories=range(n)),
                         pd.Categorical(source["pred"], categories=range(n)), dropna=False)
    counts.index, counts.columns = names, names
    counts.index.name, counts.columns.name = "true", "predicted"
    return counts


def confusion_matrix(source: Any, labels: list[str] | None = None, title: str | None = None):
    """The best model's test confusion matrix (counts; rows true, columns predicted)."""
    counts = confusion_counts(source, labels)
    n = 0 if counts is None else len(counts)
    side = min(12.0, max(4.0, 0.55 * n + 2.5))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    if counts is None or n == 0:
        return _empty(fig, ax, "no test predictions (the study had no test split)")
    values = counts.to_numpy()
    image = ax.imshow(values, cmap="Blues")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(values[i, j]), ha="center", va="center", fontsize="small",
                        color="white" if values[i, j] > values.max() / 2 else "black")
    ax.set_xticks(range(n), [short_name(c, 14) for c in counts.columns], rotation=45 if n > 4 else 0,
                  ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), [short_name(c, 14) for c in counts.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = values.trace() / max(1, values.sum())
    ax.set_title(title or f"Test confusion matrix (best model; accuracy {accuracy:.4f})")
    fig.colorbar(image, ax=ax, label="examples")
    return fig


def test_plot_name(source: Any) -> str | None:
    """The test figure that fits the best model's test predictions (``results`` or its
    ``test_predictions()`` frame), as tasks name it (:attr:`automl_pt.tasks.Task.report`):
    ``"confusion"`` (class indices), ``"scatter"`` (numbers: regression), ``"per_label"`` (one
    row per example and label: multi-label); ``None`` without test predictions."""
    frame = source.test_predictions() if _is_results(source) else source
    if frame is None or not len(frame) or "true" not in frame.columns or frame["true"].dtype.kind not in "iuf":
        return None   # e.g. lists of items per example, or text: no figure (the task's table)
    if "example" in frame.columns:
        return "per_label"
    return "scatter" if frame["true"].dtype.kind == "f" else "confusion"


def prediction_scatter(source: Any, target: str | None = None, title: str | None = None):
    """A regression model's test predictions against the true numbers (one dot per example),
    with the ``y = x`` line of perfect predictions and the rmse in the title; ``target`` names
    the axis (default: the target column of ``results``)."""
    import numpy as np

    if _is_results(source):
        target = target or (source.labels() or ["target"])[0]
        source = source.test_predictions()
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot()
    if source is None or not len(source) or source["true"].dtype.kind != "f":
        return _empty(fig, ax, "no test predictions of numbers (the study had no test split, or "
                               "it is not a regression)")
    true, pred = source["true"].to_numpy(float), source["pred"].to_numpy(float)
    rmse = float(np.sqrt(np.mean((pred - true) ** 2)))
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="#7f7f7f", linestyle="--",
            linewidth=1, label="y = x (perfect)")
    ax.scatter(true, pred, s=18, alpha=0.7, color=STATE_COLORS["COMPLETE"], label="test example")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")
    name = target or "target"
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title or f"Test predictions (best model; rmse {rmse:.4g})")
    return fig


def per_label_table(source: Any, labels: list[str] | None = None):
    """Per label of a multi-label model's test predictions: ``support`` (test examples that
    have it), ``predicted`` (examples it was predicted for), ``precision``, ``recall`` and
    ``f1`` (0 where undefined), in label order; ``None`` without multi-label test predictions."""
    import numpy as np
    import pandas as pd

    if _is_results(source):
        labels = labels or source.labels()
        source = source.test_predictions()
    if source is None or "example" not in source.columns:
        return None
    rows = []
    for index, group in source.groupby("label", sort=True):
        true, pred = group["true"].to_numpy() > 0, group["pred"].to_numpy() > 0
        tp = int((true & pred).sum())
        precision = tp / pred.sum() if pred.sum() else 0.0
        recall = tp / true.sum() if true.sum() else 0.0
        f1 = 2 * tp / (true.sum() + pred.sum()) if true.sum() + pred.sum() else 0.0
        name = labels[index] if labels is not None and index < len(labels) else str(index)
        rows.append({"label": name, "support": int(true.sum()), "predicted": int(pred.sum()),
                     "precision": float(precision), "recall": float(recall), "f1": float(f1)})
    return pd.DataFrame(rows, columns=["label", "support", "predicted", "precision", "recall", "f1"]
                        ).astype({"support": np.int64, "predicted": np.int64})


def per_label_scores(source: Any, labels: list[str] | None = None, title: str | None = None):
    """A multi-label model's test F1 per label (bars, left) next to each label's support (test
    examples that have it, right); the micro-F1 over all labels in the title."""
    table = per_label_table(source, labels)
    n = 0 if table is None else len(table)
    fig = _figure(8.0, min(12.0, max(2.5, 0.35 * n + 1.5)))
    if table is None or n == 0:
        return _empty(fig, fig.add_subplot(), "no multi-label test predictions (the study had no "
                                              "test split, or it is not multi-label)")
    f1_ax, support_ax = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    y = list(range(n))
    names = [short_name(v, 20) for v in table["label"]]
    f1_ax.barh(y, table["f1"], color=STATE_COLORS["COMPLETE"])
    f1_ax.set_yticks(y, names)
    f1_ax.invert_yaxis()
    f1_ax.set_xlim(0, 1.08)
    f1_ax.set_xlabel("F1 on test")
    for i, v in enumerate(table["f1"]):
        f1_ax.text(min(v + 0.01, 0.9), i, f"{v:.2f}", va="center", fontsize="small")
    support_ax.barh(y, table["support"], color="#9da9b5", label="examples with the label")
    support_ax.barh(y, table["predicted"], height=0.35, color="#ff7f0e", label="predicted")
    support_ax.set_xlabel("test examples")
    fig.legend(*support_ax.get_legend_handles_labels(), loc="outside lower right", ncols=2,
               fontsize="small")
    tp = float((table["f1"] * (table["support"] + table["predicted"]) / 2).sum())
    micro = 2 * tp / max(1, int(table["support"].sum() + table["predicted"].sum()))
    fig.suptitle(title or f"Per-label F1 and support on test (best model; micro-F1 {micro:.4f})")
    return fig


#: the test figure of each task kind (:attr:`automl_pt.tasks.Task.report`)
TEST_PLOTS = {"confusion": confusion_matrix, "scatter": prediction_scatter, "per_label": per_label_scores}
