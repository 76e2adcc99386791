"""Label efficiency: what pre-training buys when labels are few.

For a list of labels-per-class budgets (e.g. 1, 4, 16, all), fine-tune with the study's best
hyperparameters starting from

* ``random``: the backbone's architecture with random initialisation (trained with strategy
  ``full``: a frozen random backbone would be a straw man),
* ``pretrained``: the original pretrained weights,
* ``continued``: the weights after the study's ``[pretrain]`` stage (only when the study has one;
  the stage runs first if it has not, and is cached),

several seeds each, and score every run on the test split (the validation split when the study
has no test data). The training subset of budget ``k`` and seed ``s`` holds ``k`` examples of
each class drawn with the seed; a larger budget's subset contains the smaller ones (the same
permutation), and all start points of one ``(k, s)`` see the same examples. The validation split
(which picks each run's best epoch) is the study's, unchanged.

Each budget gets a strategy and training length that suit its size (:func:`budget_params`): at
most :data:`PROBE_PER_CLASS` labels per class a pretrained or continued start is the
closed-form probe on frozen features (:mod:`automl_pt.train.probe`), and for single-label
classification also SetFit-style contrastive tuning (:mod:`automl_pt.train.contrastive`), the
run keeping whichever scores better on validation; above it the study's best
configuration fine-tunes for at least ``min_steps`` optimizer steps (early stopping on
validation), and the probe is fitted too, the run keeping whichever scores better on validation
(so no budget falls below its probe). A random start always fine-tunes (``full``).

Every run is a row of the DuckDB table ``label_efficiency`` in the run directory's
``results.duckdb``; an interrupted command re-uses the rows it has and runs only the rest. The
plot (test metric vs. labels per class, one line per start point, mean and min-max over seeds)
is written as PNG and as a self-contained HTML page.

    automl-pt label-efficiency studies/quickstart-text.toml --budgets 1,4,16,all --seeds 3

    import automl_pt
    report = automl_pt.label_efficiency("studies/quickstart-text.toml", budgets=[1, 4, 16, "all"], seeds=3)
    report.summary      # start, budget, labels_per_class, n, mean, std, min, max
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import AutomlError, ConfigError

STARTS = ("random", "pretrained", "continued")
TABLE = "label_efficiency"
COLUMNS = {
    "study": "VARCHAR", "settings": "VARCHAR", "start": "VARCHAR", "budget": "VARCHAR",
    "labels_per_class": "INTEGER", "seed": "INTEGER", "n_train": "INTEGER", "metric": "VARCHAR",
    "value": "DOUBLE", "split": "VARCHAR", "metrics": "VARCHAR", "params": "VARCHAR",
    "best_epoch": "INTEGER", "duration_s": "DOUBLE", "device": "VARCHAR", "created_at": "TIMESTAMP",
}
LINE_STYLE = {"random": ("#9e9e9e", "s"), "pretrained": ("#1f77b4", "o"), "continued": ("#d62728", "^")}


@dataclass
class LabelEfficiency:
    """The runs (one row each) of a label-efficiency experiment, their summary and the plots."""

    runs: Any                      # DataFrame, one row per (start, budget, seed)
    metric: str
    png: Path | None = None
    html: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: what a budget counts (the task's :attr:`~automl_pt.tasks.Task.budget_unit`)
    unit: str = "per_class"
    #: the same in words (:func:`budget_noun`): "labels per class", "labelled examples"...
    noun: str = ""

    def __post_init__(self):
        self.noun = self.noun or budget_noun(self.unit)

    @property
    def summary(self):
        """Mean / std / min / max of the metric over seeds per (start, budget)."""
        return summarize(self.runs)


def budget_noun(unit: str, noun: str = "") -> str:
    """What a budget counts, in words: the task's ``noun`` (:attr:`automl_pt.tasks.Task.budget_noun`,
    e.g. "transcribed utterances"), else "labels per class" or "labelled examples" by ``unit``."""
    return noun or ("labels per class" if unit == "per_class" else "labelled examples")


def parse_budgets(values: Iterable[Any]) -> list[int | str]:
    """``[1, "4", "all"]`` -> ``[1, 4, "all"]``, sorted with ``all`` last; clear errors."""
    out: list[int | str] = []
    for v in values:
        text = str(v).strip().lower()
        if text == "all":
            item: int | str = "all"
        else:
            try:
                item = int(text)
            except ValueError:
                raise ConfigError(f"label budget {v!r}: expected a positive whole number (labels per "
                                  "class, or examples where the task counts examples) or 'all'") from None
            if item < 1:
                raise ConfigError(f"label budget {v!r}: needs to be at least 1")
        if item not in out:
            out.append(item)
    if not out:
        raise ConfigError("no label budgets given (e.g. 1,4,16,all)")
    return sorted(out, key=lambda b: (b == "all", b if b != "all" else 0))


def subset_indices(labels: np.ndarray, per_class: int | str, seed: int) -> np.ndarray:
    """Indices of ``per_class`` examples of every class (all of a class that has fewer), drawn
    with ``seed``; nested across budgets for one seed. ``"all"``: every labelled example.
    Other tasks budget in their own unit: :meth:`automl_pt.tasks.Task.subset_indices`."""
    from .tasks import ClassificationTask

    return ClassificationTask().subset_indices(labels, per_class, seed)


class _Run:
    """The slice of an Optuna trial that :meth:`TrialRunner.run_trial` uses: a number (the seed
    offset), user attrs, and reports that never prune."""

    def __init__(self, number: int, params: dict):
        self.number, self.params, self.user_attrs = number, params, {}

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:  # noqa: ARG002
        pass

    def should_prune(self) -> bool:
        return False


def summarize(runs):
    import pandas as pd

    if runs is None or not len(runs):
        return pd.DataFrame(columns=["start", "budget", "labels_per_class", "n", "mean", "std", "min", "max"])
    g = runs.groupby(["start", "budget", "labels_per_class"], sort=False)["value"]
    out = g.agg(n="count", mean="mean", std="std", min="min", max="max").reset_index()
    order = {s: i for i, s in enumerate(STARTS)}
    out["_o"] = out["start"].map(lambda s: order.get(s, len(order)))
    return out.sort_values(["_o", "labels_per_class"]).drop(columns="_o").reset_index(drop=True)


def _settings_key(params: dict, study_seed: int, split: str) -> str:
    # "budgets": runs of an older budget policy (one configuration for every budget) are not reused
    text = json.dumps({"params": params, "seed": study_seed, "split": split, "budgets": 2},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _connect(path: Path, read_only: bool = False):
    import duckdb

    con = duckdb.connect(str(path), read_only=read_only)
    if not read_only:
        body = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({body})")
    return con


def read_runs(run_dir: str | Path, study: str | None = None, settings: str | None = None):
    """The ``label_efficiency`` rows of a run directory (empty when there are none)."""
    import pandas as pd

    from .storage.store import RESULTS_FILE

    path = Path(run_dir) / RESULTS_FILE
    empty = pd.DataFrame(columns=list(COLUMNS))
    if not path.exists():
        return empty
    con = _connect(path, read_only=True)
    try:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                           [TABLE]).fetchone()[0]:
            return empty
        where, args = [], []
        if study:
            where.append("study = ?")
            args.append(study)
        if settings:
            where.append("settings = ?")
            args.append(settings)
        sql = f"SELECT * FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
        return con.execute(sql + " ORDER BY created_at", args).df()
    finally:
        con.close()


def _append(path: Path, row: dict) -> None:
    import pandas as pd

    frame = pd.DataFrame([{c: row.get(c) for c in COLUMNS}], columns=list(COLUMNS))
    con = _connect(path)
    try:
        con.register("new_row", frame)
        con.execute(f"INSERT INTO {TABLE} SELECT {', '.join(COLUMNS)} FROM new_row")
    finally:
        con.close()


def label_efficiency(config: str | Path | dict, budgets: Sequence[Any] = (1, 4, 16, "all"),
                     seeds: int = 3, starts: Sequence[str] | None = None, out: str | Path | None = None,
                     progress: bool = True, console: Any = None, host: Any = None,
                     params: dict | None = None, **overrides: Any) -> LabelEfficiency:
    """Run (or finish) the label-efficiency experiment of a study whose search has completed
    trials; returns the runs and writes ``label-efficiency.png`` / ``.html`` to ``out``
    (default ``<run dir>/label-efficiency/``). ``params`` replace some of the best trial's
    hyperparameters (e.g. ``{"epochs": 10}`` for tiny budgets); ``overrides`` are study-file
    sections, as for :meth:`Study.from_config`."""
    import torch

    from .engine.study import Study
    from .report.plots import require_matplotlib

    require_matplotlib()  # the plot is the point: fail before any run, not after all of them
    budgets = parse_budgets(budgets)
    if int(seeds) < 1:
        raise ConfigError(f"seeds = {seeds}: needs at least 1")
    study = Study.from_config(config, host=host, **overrides)
    prepared = study.prepare()
    starts = _start_points(study, starts)
    base = _base_params(_best_trial(study, prepared), prepared, params)
    plan = _plan(study, prepared, base, list(params or {}))
    runs = _run_missing(plan, budgets, int(seeds), starts, progress, console)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    task = prepared.task.create()
    report = LabelEfficiency(runs, prepared.metric, notes=plan.notes, unit=task.budget_unit,
                             noun=budget_noun(task.budget_unit, getattr(task, "budget_noun", "")))
    out_dir = Path(out) if out else plan.work
    report.png, report.html = write_plots(report, out_dir, title=f"{study.name}: {prepared.metric} "
                                          f"on the {plan.split_name} split vs. {report.noun}")
    return report


def _start_points(study: Any, starts: Sequence[str] | None) -> list[str]:
    """The start points asked for (default: every one the study can offer), checked."""
    has_pretrain = study.config.pretrain is not None
    if starts is None:
        starts = [s for s in STARTS if s != "continued" or has_pretrain]
    starts = list(dict.fromkeys(starts))
    for s in starts:
        if s not in STARTS:
            raise ConfigError(f"unknown start point {s!r}; choose from {', '.join(STARTS)}")
    if "continued" in starts and not has_pretrain:
        raise ConfigError(f"start point 'continued' needs a [pretrain] section in "
                          f"{study.config.source or 'the study'}")
    return starts


def _best_trial(study: Any, prepared: Any) -> Any:
    """The best trial of the study's search, whose hyperparameters the runs re-use; a clear
    error when the run directory is not the study's or the study has not run yet."""
    from .core.paths import OPTUNA_FILE
    from .storage.rundir import claim_run_dir
    from .storage.store import best_trial

    claim_run_dir(study.config, create=False)   # runs and plots go into the study's run dir
    if study.config.storage.optuna == "sqlite" and not (study.run_dir / OPTUNA_FILE).exists():
        raise ConfigError(f"{study.run_dir}: the study has not run yet; run "
                          f"'automl-pt run {study.config.source or 'STUDY.toml'}' first (label "
                          "efficiency re-uses its best hyperparameters)")
    best = best_trial(study.optuna_study(prepared, heartbeat=False))
    if best is None:
        raise AutomlError(f"study {study.name!r} has no completed trial in {study.run_dir}; run "
                          f"'automl-pt run {study.config.source or 'STUDY.toml'}' first")
    return best


def _base_params(best: Any, prepared: Any, params: dict | None) -> dict:
    """The best trial's hyperparameters with ``params`` (checked against the search space) in
    place of some; without ``init``, which each start point sets."""
    from .registry import did_you_mean

    for key in params or {}:
        if key not in best.params and key not in prepared.space:
            known = sorted(set(best.params) | set(prepared.space))
            raise ConfigError(f"unknown hyperparameter {key!r}{did_you_mean(key, known)}; the best "
                              f"trial has {', '.join(sorted(best.params))}")
        param = prepared.space.get(key)
        problem = param.domain.problem(params[key]) if param is not None and param.domain else None
        if problem:
            raise ConfigError(f"--param {key}: {problem}")
    base = {**best.params, **(params or {})}
    base.pop("init", None)
    return base


@dataclass
class _Plan:
    """What the runs of one label-efficiency experiment share."""

    study: Any
    prepared: Any
    base: dict
    fixed: list[str]           # the hyperparameters the caller set (kept as given)
    eval_split: Any            # where runs are scored: test, else validation
    split_name: str
    settings: str              # the key of runs made with these settings (see _settings_key)
    device: Any
    work: Path                 # <run dir>/label-efficiency
    notes: list[str] = field(default_factory=list)


def _plan(study: Any, prepared: Any, base: dict, fixed: list[str]) -> _Plan:
    from .core.devices import resolve_device

    data = prepared.data
    notes: list[str] = []
    eval_split = data.test if data.test is not None else data.validation
    split_name = "test" if data.test is not None else "validation"
    if data.test is None:
        notes.append("the study has no test split: runs are scored on the validation split")
    settings = _settings_key(base, study.config.study.seed, split_name)
    device = resolve_device(study.config.resources.devices)
    work = study.run_dir / "label-efficiency"
    work.mkdir(parents=True, exist_ok=True)
    return _Plan(study, prepared, base, fixed, eval_split, split_name, settings, device, work, notes)


def _run_missing(plan: _Plan, budgets: list[int | str], seeds: int, starts: list[str],
                 progress: bool, console: Any):
    """Under the driver lock: pre-train where ``continued`` is asked for, run every (budget,
    seed, start) not yet in the results with these settings, and return all of them."""
    from .core.paths import DriverLock

    study = plan.study
    with DriverLock(study.run_dir):
        if "continued" in starts:
            from .engine.pretrain import run_pretraining

            run_pretraining(study, plan.prepared, plan.base["backbone"], progress=progress, console=console)
        done = read_runs(study.run_dir, study.name, plan.settings)
        have = {(r.start, str(r.budget), int(r.seed)) for r in done.itertuples()}
        jobs = [(b, s, st) for b in budgets for s in range(seeds) for st in starts
                if (st, str(b), s) not in have]
        _run_jobs(plan, jobs, len(have), progress, console)
        return read_runs(study.run_dir, study.name, plan.settings)


def _run_jobs(plan: _Plan, jobs: list[tuple[int | str, int, str]], done: int, progress: bool,
              console: Any) -> None:
    """Run ``jobs`` (budget, seed, start) one after the other, each appended to the results
    as it ends; a progress bar counts ``done`` runs already made."""
    from .core.paths import RESULTS_FILE
    from .engine.trial import TrialRunner

    study, prepared = plan.study, plan.prepared
    runner = TrialRunner(study.config, prepared.host, prepared.task, prepared.data, prepared.space,
                         plan.device, plan.work)
    runner.cache_dir = study.run_dir / "cache"  # the study's decode / tokenization caches
    bar = _bar(progress, console, len(jobs), done)
    task = prepared.task.create()
    noun = budget_noun(task.budget_unit, getattr(task, "budget_noun", ""))
    try:
        for budget, seed, start in jobs:
            if bar:
                bar.update(f"{start}, {budget} {noun}, seed {seed}")
            row = _one_run(runner, study, prepared, plan.base, budget, seed, start, plan.eval_split,
                           plan.split_name, plan.settings, plan.device, fixed=plan.fixed)
            _append(study.run_dir / RESULTS_FILE, row)
            if bar:
                bar.advance()
    finally:
        if bar:
            bar.close()


#: budgets of at most this many labels per class are fitted as a probe (pretrained / continued)
PROBE_PER_CLASS = 8


def budget_params(base: dict, start: str, per_class: int | str, fixed: Sequence[str] = (),
                  probe: bool = True, setfit: bool = False) -> list[dict]:
    """The configurations a run of ``per_class`` labels per class tries from ``start`` (the one
    scoring best on validation is kept): the probe at tiny budgets (and, where ``setfit`` is
    true, i.e. single-label classification, SetFit-style contrastive tuning with its known-good
    settings next to it), else fine-tuning for at least the default ``min_steps`` with early
    stopping (``patience``), plus the probe. ``fixed`` names the keys the caller set
    explicitly; they are kept as given (a fixed ``strategy`` is the only configuration, a fixed
    ``epochs`` is not stretched). A random start fine-tunes (``full``) only; so does every
    start where ``probe`` is false (a task whose search space refuses ``linear_probe``, e.g.
    one whose head reads per-position features)."""
    from .builtin.search_space import DEFAULT_MIN_STEPS, DEFAULT_PATIENCE
    from .engine.seeding import KNOWN_GOOD

    params = {**base, "init": start}
    probe_params = {**params, "strategy": "linear_probe"}
    if start == "random" or (not probe and params.get("strategy") in (None, "linear_probe")):
        params["strategy"] = "full"  # a frozen random backbone is no baseline
    elif probe and "strategy" not in fixed and (params.get("strategy") == "linear_probe" or (
            per_class != "all" and int(per_class) <= PROBE_PER_CLASS)):
        if setfit and per_class != "all" and int(per_class) <= PROBE_PER_CLASS:
            return [probe_params, {**params, **KNOWN_GOOD["setfit"], "strategy": "setfit"}]
        return [probe_params]
    if params.get("strategy") == "linear_probe":
        return [params]
    if "min_steps" not in fixed and "epochs" not in fixed:
        params["min_steps"] = max(int(params.get("min_steps") or 0), DEFAULT_MIN_STEPS)
    if "patience" not in fixed:
        params["patience"] = int(params.get("patience") or DEFAULT_PATIENCE)
    return [params] if start == "random" or "strategy" in fixed or not probe else [params, probe_params]


def strategy_allowed(space: dict, name: str) -> bool:
    """Whether the study's search space lets a trial use strategy ``name`` (its ``strategy``
    lists it or its domain accepts it)."""
    strategy = space.get("strategy")
    if strategy is None or strategy.kind != "categorical" or name in strategy.choices:
        return True
    return bool(strategy.domain) and not strategy.domain.problem(name)


def probe_allowed(space: dict) -> bool:
    """Whether the study's search space lets a trial be a ``linear_probe``."""
    return strategy_allowed(space, "linear_probe")


def setfit_allowed(prepared: Any) -> bool:
    """Whether tiny budgets also try strategy ``setfit``: single-label classification whose
    search space does not rule it out."""
    return prepared.task.kind == "classification" and strategy_allowed(prepared.space, "setfit")


def _one_run(runner: Any, study: Any, prepared: Any, base: dict, budget: int | str, seed: int,
             start: str, eval_split: Any, split_name: str, settings: str, device: Any,
             fixed: Sequence[str] = ()) -> dict:
    from safetensors.torch import load_file

    from .spec.data import StudyData
    from .model import TrialModel
    from .train.training import calibrate_on, evaluate

    data = prepared.data
    idx = prepared.task.create().subset_indices(data.train.labels, budget, study.config.study.seed + seed)
    runner.data = StudyData(data.train.subset(idx), data.validation, data.test, data.label_names,
                            data.skipped, kind=data.kind)
    t0 = time.time()
    kept = None   # (validation value, params, trial, weights file)
    for k, candidate in enumerate(budget_params(base, start, budget, fixed, probe=probe_allowed(prepared.space),
                                                     setfit=setfit_allowed(prepared))):
        trial = _Run(seed, candidate)
        value = runner.run_trial(trial, candidate)
        weights = runner.trial_dir(trial.number) / f"model-{k}.safetensors"
        (runner.trial_dir(trial.number) / "model.safetensors").replace(weights)
        better = kept is None or (value > kept[0] if runner.maximize else value < kept[0])
        if better:
            if kept is not None:
                kept[3].unlink(missing_ok=True)
            kept = (value, candidate, trial, weights)
        else:
            weights.unlink(missing_ok=True)
    assert kept is not None
    _, params, trial, weights = kept
    duration = time.time() - t0
    # score the kept (best-epoch) weights on the evaluation split
    info, backbone = runner.load_backbone(params["backbone"], params)
    prep = runner.preprocessor(backbone, params["backbone"], params)
    task = runner.make_task()
    head = task.make_head(backbone, task.num_outputs(data.label_names), params)
    model = TrialModel(backbone, head)
    model.load_state_dict(load_file(str(weights)))
    model.to(device)
    if task.needs_calibration:  # decision values tuned on validation, as an export does
        val_enc = runner.encoded(prep, data.validation)
        calibrate_on(task, model, val_enc, data.validation.labels, device, 64, prep.collate,
                     prep.lengths(val_enc))
    enc = runner.encoded(prep, eval_split)
    metrics, _, _ = evaluate(model, task, enc, eval_split.labels, runner.metrics, device, 64, prep.collate,
                          prep.lengths(enc))
    weights.unlink(missing_ok=True)
    counts = task.class_counts(runner.data.train.labels, data.label_names)
    # in the task's budget unit: labels per class, or examples (regression)
    per_class = int(budget) if budget != "all" else (
        int(round(counts.mean())) if counts is not None and task.budget_unit == "per_class" else int(len(idx)))
    return {"study": study.name, "settings": settings, "start": start, "budget": str(budget),
            "labels_per_class": per_class, "seed": seed, "n_train": int(len(idx)),
            "metric": prepared.metric, "value": float(metrics[prepared.metric]), "split": split_name,
            "metrics": json.dumps(metrics), "params": json.dumps(params, default=str),
            "best_epoch": trial.user_attrs.get("best_epoch"), "duration_s": duration,
            "device": str(device),
            "created_at": datetime.now(timezone.utc).replace(tzinfo=None)}


class _bar:
    """A rich progress bar over the runs (nothing when ``progress`` is false)."""

    def __new__(cls, progress: bool, console: Any, total: int, done: int):
        if not progress or total == 0:
            return None
        return super().__new__(cls)

    def __init__(self, progress: bool, console: Any, total: int, done: int):  # noqa: ARG002
        from rich.console import Console

        from .engine.progress import progress_bar

        self.progress = progress_bar(console or Console(stderr=True))
        self.progress.start()
        suffix = f" ({done} done before)" if done else ""
        self.task = self.progress.add_task(f"label efficiency{suffix}", total=total, info="")

    def update(self, text: str) -> None:
        self.progress.update(self.task, info=text)

    def advance(self) -> None:
        self.progress.advance(self.task)

    def close(self) -> None:
        self.progress.stop()


# -- plots ------------------------------------------------------------------------------------
def plot(runs, metric: str = "accuracy", title: str | None = None, ax: Any = None,
         unit: str = "per_class", noun: str = ""):
    """Matplotlib figure: ``metric`` vs. the budget (labels per class, or ``noun``: what the
    task's budgets count; log scale), one line per start point, mean over seeds with the
    min-max band. Usable in a notebook."""
    from .report.plots import _figure

    summary = summarize(runs)
    if ax is None:  # no pyplot: the caller's (notebook's) backend and figure list stay untouched
        fig = _figure(7.0, 4.5)
        ax = fig.subplots()
    else:
        fig = ax.figure
    for start in [s for s in STARTS if s in set(summary["start"])] + \
            [s for s in dict.fromkeys(summary["start"]) if s not in STARTS]:
        part = summary[summary["start"] == start].sort_values("labels_per_class")
        color, marker = LINE_STYLE.get(start, (None, "o"))
        x = part["labels_per_class"].to_numpy(dtype=float)
        ax.plot(x, part["mean"], marker=marker, color=color, label=start, linewidth=2)
        ax.fill_between(x, part["min"], part["max"], color=color, alpha=0.15, linewidth=0)
    ticks = summary.drop_duplicates("budget").sort_values("labels_per_class")
    ax.set_xscale("log")
    ax.set_xticks(ticks["labels_per_class"].to_numpy(dtype=float))
    ax.set_xticklabels([f"all ({int(v)})" if b == "all" else str(b)
                        for b, v in zip(ticks["budget"], ticks["labels_per_class"])])
    ax.minorticks_off()
    ax.set_xlabel("labelled examples per class" if unit == "per_class" else budget_noun(unit, noun))
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(title="start point", loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def write_plots(report: LabelEfficiency, out_dir: Path, title: str = "") -> tuple[Path, Path]:
    """``label-efficiency.png`` and a self-contained ``label-efficiency.html`` (the plot as an
    inline image, the summary and every run as tables), both written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = plot(report.runs, report.metric, title, unit=report.unit, noun=report.noun)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    svg = io.StringIO()
    fig.savefig(svg, format="svg")
    png = out_dir / "label-efficiency.png"
    _atomic_write(png, buf.getvalue())
    page = out_dir / "label-efficiency.html"
    _atomic_write(page, _html(report, title, svg.getvalue(), base64.b64encode(buf.getvalue()).decode()).encode())
    return png, page


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _table(frame, columns: list[str], fmt: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for rec in frame[columns].itertuples(index=False):
        cells = []
        for c, v in zip(columns, rec):
            text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else (
                format(v, fmt[c]) if c in fmt and isinstance(v, (int, float, np.number)) else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html(report: LabelEfficiency, title: str, svg: str, png_b64: str) -> str:  # noqa: ARG001
    svg_body = svg[svg.find("<svg"):]
    summary = summarize(report.runs)
    runs = report.runs.copy()
    size = "labels_per_class" if report.unit == "per_class" else report.noun.replace(" ", "_")
    summary = summary.rename(columns={"labels_per_class": size})
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or 'label efficiency')}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
th {{ background: #f3f3f3; }} .note {{ color: #8a5a00; }} svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Label efficiency</h1>
<p>{html.escape(title)}. Each point is the mean over seeds; the band spans the lowest and highest
seed. Start points: <b>random</b> (same architecture, random initialisation, full fine-tuning),
<b>pretrained</b> (the original weights), <b>continued</b> (after the study's continued
pre-training on unlabeled data).</p>
{notes}
<figure>{svg_body}</figure>
<h2>Summary</h2>
{_table(summary, ["start", "budget", size, "n", "mean", "std", "min", "max"],
        {"mean": ".4f", "std": ".4f", "min": ".4f", "max": ".4f"})}
<h2>Runs</h2>
{_table(runs, ["start", "budget", "seed", "n_train", "value", "best_epoch", "duration_s", "device"],
        {"value": ".4f", "duration_s": ".1f"})}
</body></html>
"""
