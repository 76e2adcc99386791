"""The results store: one DuckDB file per run directory, written by one process only.

Tables (all keyed by ``study``):

* ``studies``: one row per study: task, metric, direction, config, best trial, test metrics;
* ``trials``: one row per Optuna trial: number, state, value, every param (``params`` JSON plus
  ``backbone`` / ``strategy`` columns), seed, start / end, duration, device, peak memory,
  error and traceback, ``state_reason`` (``error``, ``pruned``...), ``trainable_params`` and
  ``trainable_pct`` (parameters the trial trained: head and backbone or adapters);
* ``epoch_metrics``: long format ``(study, trial, epoch, name, value)``: ``train_loss``,
  ``samples_per_s``, ``val_<metric>``...
* ``derived_models``: models built from the trials at the end of a study (:mod:`automl_pt.engine.soups`):
  ``kind`` (``soup``, ``ensemble``, ``refit``, and ``trial`` for the best trial's own test
  score), ``name``, ``base_trial``, ``members``, validation ``value`` / ``metrics``, test
  ``test_value`` / ``test_metrics``, ``exported`` (which one is ``best/``), ``details``;
  from ``<run dir>/derived_models.parquet``;
* ``pretrain_metrics``: the ``[pretrain]`` stage's loss curves ``(study, backbone, objective,
  step, epoch, loss, key)``, from ``<run dir>/pretrain/<key>/losses.parquet``.

Rows come from the Optuna storage (the source of truth for trial states) and the per-trial Parquet
files, ingested in bulk (pandas / ``read_parquet``), never row by row.
When the DuckDB file is locked by a running driver, readers fall back to the same sources.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.paths import OPTUNA_FILE, RESULTS_FILE, STUDY_JSON_KEYS

TRIAL_COLUMNS = {
    "study": "VARCHAR", "number": "INTEGER", "state": "VARCHAR", "value": "DOUBLE",
    "backbone": "VARCHAR", "strategy": "VARCHAR", "params": "JSON", "metrics": "JSON",
    "seed": "BIGINT", "device": "VARCHAR", "host": "VARCHAR", "peak_memory_mb": "DOUBLE",
    "best_epoch": "INTEGER", "samples_per_s": "DOUBLE", "datetime_start": "TIMESTAMP",
    "datetime_complete": "TIMESTAMP", "duration_s": "DOUBLE", "state_reason": "VARCHAR",
    "error": "VARCHAR", "traceback": "VARCHAR", "retry_of": "INTEGER", "micro_batch_size": "INTEGER",
    "oom_retries": "INTEGER", "memory_before_mb": "DOUBLE", "memory_after_mb": "DOUBLE",
    "setup_s": "DOUBLE", "threads": "INTEGER", "epochs_run": "INTEGER", "steps": "INTEGER",
    "trainable_params": "BIGINT", "trainable_pct": "DOUBLE", "validation_loss": "DOUBLE",
}
STUDY_COLUMNS = {
    "study": "VARCHAR", "task": "VARCHAR", "metric": "VARCHAR", "direction": "VARCHAR",
    "run_dir": "VARCHAR", "config": "JSON", "environment": "JSON", "n_trials": "INTEGER",
    "best_trial": "INTEGER", "best_value": "DOUBLE", "test_metrics": "JSON",
    "data": "JSON", "updated_at": "TIMESTAMP", "baseline": "JSON",
}
EPOCH_COLUMNS = {"study": "VARCHAR", "trial": "INTEGER", "epoch": "INTEGER", "name": "VARCHAR",
                 "value": "DOUBLE"}
PRETRAIN_COLUMNS = {"study": "VARCHAR", "backbone": "VARCHAR", "objective": "VARCHAR",
                    "step": "INTEGER", "epoch": "INTEGER", "loss": "DOUBLE", "key": "VARCHAR"}
DERIVED_COLUMNS = {
    "study": "VARCHAR", "kind": "VARCHAR", "name": "VARCHAR", "base_trial": "INTEGER",
    "members": "JSON", "value": "DOUBLE", "metrics": "JSON", "test_value": "DOUBLE",
    "test_metrics": "JSON", "exported": "BOOLEAN", "details": "JSON",
}
DERIVED_FILE = "derived_models.parquet"

MIN_IMPORTANCE_TRIALS = 2  # Optuna's evaluators give equal, meaningless shares below this


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def trials_frame(optuna_study: Any, study_name: str):
    """One row per Optuna trial, in the ``trials`` table's columns."""
    import pandas as pd

    rows = []
    for t in optuna_study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        start, end = t.datetime_start, t.datetime_complete
        state = t.state.name
        reason = attrs.get("state_reason") if state == "FAIL" else None
        if state == "PRUNED":  # a skipped linear_probe trial that would repeat an earlier probe
            reason = "duplicate" if attrs.get("duplicate_of") is not None else "pruned"
        elif state == "FAIL" and not reason:
            reason = "stale"  # failed by the heartbeat check: its worker stopped answering
        elif state in ("RUNNING", "WAITING", "COMPLETE"):
            reason = None
        rows.append({
            "study": study_name, "number": t.number, "state": state, "value": t.value,
            "backbone": t.params.get("backbone"), "strategy": t.params.get("strategy"),
            "params": _json(t.params), "metrics": _json(attrs.get("metrics")),
            "validation_loss": attrs.get("validation_loss"),
            "seed": attrs.get("seed"), "device": attrs.get("device"), "host": attrs.get("host"),
            "peak_memory_mb": attrs.get("peak_memory_mb"), "best_epoch": attrs.get("best_epoch"),
            "samples_per_s": attrs.get("samples_per_s"),
            "datetime_start": start, "datetime_complete": end,
            "duration_s": attrs.get("duration_s", (end - start).total_seconds() if start and end else None),
            "state_reason": reason,
            "error": attrs.get("error") if state == "FAIL" else None,
            "traceback": attrs.get("traceback") if state == "FAIL" else None,
            "retry_of": t.system_attrs.get("failed_trial"),
            "micro_batch_size": attrs.get("micro_batch_size"), "oom_retries": attrs.get("oom_retries"),
            "memory_before_mb": attrs.get("memory_before_mb"),
            "memory_after_mb": attrs.get("memory_after_mb"), "setup_s": attrs.get("setup_s"),
            "threads": attrs.get("threads"),
            "epochs_run": attrs.get("epochs_run"), "steps": attrs.get("steps"),
            "trainable_params": attrs.get("trainable_params"),
            "trainable_pct": attrs.get("trainable_pct"),
        })
    frame = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    for col in ("datetime_start", "datetime_complete"):
        frame[col] = pd.to_datetime(frame[col])
    return frame


def epoch_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "trials").glob("*/epochs.parquet"))


def remote_epochs_frame(optuna_study: Any, run_dir: Path, study_name: str):
    """Epoch rows of trials whose Parquet file is not on this machine (they ran on another
    machine against a shared storage), from the history each trial keeps in its user attrs."""
    import pandas as pd

    local = {int(f.parent.name) for f in epoch_files(run_dir)}
    rows = []
    for t in optuna_study.get_trials(deepcopy=False):
        if t.number in local:
            continue
        for h in t.user_attrs.get("history") or []:
            rows += [{"study": study_name, "trial": t.number, "epoch": int(h["epoch"]), "name": k,
                      "value": float(v)} for k, v in h.items() if k != "epoch"]
    return pd.DataFrame(rows, columns=list(EPOCH_COLUMNS))


def pretrain_loss_files(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / "pretrain").glob("*/losses.parquet"))


def pretrain_frame(run_dir: Path, study_name: str):
    """The ``pretrain_metrics`` rows straight from the Parquet files (no DuckDB)."""
    import pandas as pd

    files = pretrain_loss_files(run_dir)
    frame = (pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files
             else pd.DataFrame(columns=[c for c in PRETRAIN_COLUMNS if c != "study"]))
    frame.insert(0, "study", study_name)
    return frame[list(PRETRAIN_COLUMNS)].sort_values(["key", "step"], kind="stable").reset_index(drop=True)


def derived_frame(run_dir: Path, study_name: str):
    """The derived-model rows of a run directory from its Parquet file (empty without one)."""
    import pandas as pd

    path = Path(run_dir) / DERIVED_FILE
    frame = (pd.read_parquet(path) if path.is_file()
             else pd.DataFrame(columns=[c for c in DERIVED_COLUMNS if c != "study"]))
    frame.insert(0, "study", study_name)
    return frame[list(DERIVED_COLUMNS)]


def epochs_frame(run_dir: Path, study_name: str, optuna_study: Any = None):
    import pandas as pd

    files = epoch_files(run_dir)
    frames = [pd.read_parquet(f) for f in files]
    frame = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=["trial", "epoch", "name", "value"]))
    frame.insert(0, "study", study_name)
    frame = frame[list(EPOCH_COLUMNS)]
    if optuna_study is not None:
        remote = remote_epochs_frame(optuna_study, run_dir, study_name)
        if len(remote):
            frame = pd.concat([frame, remote], ignore_index=True)
    return frame.sort_values(["trial", "epoch", "name"], kind="stable").reset_index(drop=True)


class ResultStore:
    """The DuckDB results file of a run directory. Only the study driver (or ``automl-pt
    results`` when no driver runs) writes it; every write is one transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self, read_only: bool = False):
        import duckdb

        return duckdb.connect(str(self.path), read_only=read_only)

    @staticmethod
    def _create(con) -> None:
        for table, cols in (("studies", STUDY_COLUMNS), ("trials", TRIAL_COLUMNS),
                            ("epoch_metrics", EPOCH_COLUMNS), ("pretrain_metrics", PRETRAIN_COLUMNS),
                            ("derived_models", DERIVED_COLUMNS)):
            body = ", ".join(f"{c} {t}" for c, t in cols.items())
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()}
            for c, t in cols.items():  # files written by an older version gain new columns
                if c not in have:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {c} {t}")

    def record_study(self, meta: dict[str, Any], optuna_study: Any, run_dir: Path) -> None:
        """Replace this study's rows with the current state of the Optuna storage and the
        per-trial Parquet files (bulk inserts, one transaction)."""
        import pandas as pd

        study_name = meta["study"]
        trials = trials_frame(optuna_study, study_name)
        files = [str(f) for f in epoch_files(run_dir)]
        remote = remote_epochs_frame(optuna_study, run_dir, study_name)
        row = {c: meta.get(c) for c in STUDY_COLUMNS}
        if row["baseline"] is None:  # the exported best/ keeps it (a task that scores one)
            row["baseline"] = best_baseline(run_dir)
        study_row = pd.DataFrame([row], columns=list(STUDY_COLUMNS))
        for c in ("config", "environment", "test_metrics", "data", "baseline"):
            study_row[c] = study_row[c].map(lambda v: v if v is None or isinstance(v, str) else _json(v))
        study_row["updated_at"] = pd.Timestamp(datetime.now(timezone.utc).replace(tzinfo=None))
        con = self._connect()
        try:
            self._create(con)
            con.execute("BEGIN TRANSACTION")
            con.register("study_row", study_row)
            con.register("trial_rows", trials)
            con.execute("DELETE FROM studies WHERE study = ?", [study_name])
            con.execute(f"INSERT INTO studies SELECT {', '.join(STUDY_COLUMNS)} FROM study_row")
            con.execute("DELETE FROM trials WHERE study = ?", [study_name])
            con.execute(f"INSERT INTO trials SELECT {', '.join(TRIAL_COLUMNS)} FROM trial_rows")
            con.execute("DELETE FROM epoch_metrics WHERE study = ?", [study_name])
            if files:
                con.execute("INSERT INTO epoch_metrics SELECT ?, trial, epoch, name, value "
                            "FROM read_parquet(?)", [study_name, files])
            if len(remote):
                con.register("remote_rows", remote)
                con.execute("INSERT INTO epoch_metrics SELECT * FROM remote_rows")
            con.execute("DELETE FROM pretrain_metrics WHERE study = ?", [study_name])
            pretrain_files = [str(f) for f in pretrain_loss_files(run_dir)]
            if pretrain_files:
                con.execute("INSERT INTO pretrain_metrics SELECT ?, backbone, objective, step, epoch, "
                            "loss, key FROM read_parquet(?)", [study_name, pretrain_files])
            con.execute("DELETE FROM derived_models WHERE study = ?", [study_name])
            if (run_dir / DERIVED_FILE).is_file():
                con.execute(f"INSERT INTO derived_models SELECT ?, {', '.join(list(DERIVED_COLUMNS)[1:])} "
                            "FROM read_parquet(?)", [study_name, str(run_dir / DERIVED_FILE)])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def query(self, sql: str, params: list | None = None):
        con = self._connect(read_only=True)
        try:
            return con.execute(sql, params or []).df()
        finally:
            con.close()


@dataclass
class Results:
    """What a study produced: DataFrames of trials and epochs, the best trial and the exported
    model directory. Obtain with :meth:`automl_pt.Study.results` or :func:`automl_pt.results`."""

    study: str
    run_dir: Path
    metric: str
    direction: str
    trials_df: Any
    epochs_df: Any
    study_row: dict[str, Any]
    source: str = "duckdb"
    #: rows of ``derived_models`` (soups, ensembles, refit; :mod:`automl_pt.engine.soups`)
    derived_df: Any = None

    @property
    def best_model_dir(self) -> Path:
        return self.run_dir / "best"

    @property
    def test_metrics(self) -> dict[str, float] | None:
        raw = self.study_row.get("test_metrics")
        return json.loads(raw) if isinstance(raw, str) else raw

    @property
    def baseline(self) -> dict[str, Any] | None:
        """The pretrained model's scores before fine-tuning (``{"backbone", "validation",
        "test"}``) where the task scores one (``Task.scores_baseline``), else ``None``."""
        raw = self.study_row.get("baseline")
        if raw is None or (isinstance(raw, float) and raw != raw):
            return None
        return json.loads(raw) if isinstance(raw, str) else raw

    def pretrain_curves(self):
        """The ``[pretrain]`` loss curves: one row per step ``(study, backbone, objective, step,
        epoch, loss, key)``, from the DuckDB ``pretrain_metrics`` table (or, while a driver holds
        that file or before it has any rows, from the stage's Parquet files)."""
        import duckdb

        path = self.run_dir / RESULTS_FILE
        if self.source == "duckdb" and path.exists():
            try:
                con = duckdb.connect(str(path), read_only=True)
                try:
                    frame = con.execute("SELECT * FROM pretrain_metrics WHERE study = ? "
                                        "ORDER BY key, step", [self.study]).df()
                finally:
                    con.close()
                if len(frame) or not pretrain_loss_files(self.run_dir):
                    return frame
            except (duckdb.IOException, duckdb.CatalogException, duckdb.ConnectionException):
                pass
        return pretrain_frame(self.run_dir, self.study)

    def trials(self):
        """All trials with every param as its own column (``params.<name>`` flattened)."""
        import pandas as pd

        frame = self.trials_df.copy()
        if frame.empty:
            return frame
        params = pd.json_normalize([json.loads(p) if isinstance(p, str) else (p or {})
                                    for p in frame["params"]])
        for c in params.columns:
            if c not in frame.columns:
                frame[c] = params[c].values
        return frame

    def leaderboard(self):
        """Completed trials (``kind = trial``) and the models derived from them at the end of
        the study (``kind = soup / ensemble / refit``, :mod:`automl_pt.engine.soups`), best validation
        score first (ties: the lower validation loss, as :func:`best_trial` and the export
        decide; a refit keeps its search's score), with the params that matter most.
        ``test_<metric>`` is measured for the best trial and each derived model; ``exported``
        marks the one in ``best/``; ``members`` lists a derived model's trials (or
        ``trial:epoch``)."""
        import pandas as pd

        frame = self.trials()
        if frame.empty:
            return frame
        done = frame[frame["state"] == "COMPLETE"]
        # ties on the metric: the lower validation loss first, as best_trial decides
        ties = (done["validation_loss"] if "validation_loss" in done.columns
                else pd.Series(float("nan"), index=done.index))
        done = done.assign(_tie=ties.astype("float64").fillna(math.inf)).sort_values(
            ["value", "_tie", "number"], ascending=[self.direction == "minimize", True, True],
            kind="stable").drop(columns="_tie")
        cols = ["number", "value", "backbone", "init", "strategy", "learning_rate", "epochs",
                "batch_size", "best_epoch", "epochs_run", "steps", "duration_s"]   # init: studies with [pretrain]
        if done["strategy"].nunique() > 1:  # strategies were searched: what each one trained
            cols.insert(cols.index("strategy") + 1, "trainable_pct")
        out = done[[c for c in cols if c in done.columns]].reset_index(drop=True)
        out.insert(0, "kind", "trial")
        out["_tie"] = ties.astype("float64").fillna(math.inf).to_numpy()
        derived = self.derived_df
        if derived is not None and len(derived):
            test_col = f"test_{self.metric}"
            own = derived[derived["kind"] == "trial"].set_index("base_trial")
            out.insert(3, test_col, out["number"].map(own["test_value"]).astype("float64"))
            out.insert(4, "exported", out["number"].map(own["exported"]).fillna(False).astype(bool))
            rows = derived[derived["kind"] != "trial"]
            if len(rows):
                params = out.set_index("number")
                extra = pd.DataFrame({
                    "kind": rows["kind"].to_numpy(), "number": rows["base_trial"].to_numpy(),
                    "value": rows["value"].to_numpy(), test_col: rows["test_value"].to_numpy(),
                    "exported": rows["exported"].fillna(False).astype(bool).to_numpy(),
                    "members": [("+".join(map(str, json.loads(m))) if isinstance(m, str) else m)
                                for m in rows["members"]],
                    "_tie": [_details_loss(d) for d in rows["details"]]})
                for c in ("backbone", "init", "strategy"):   # a derived model shares its base's
                    if c in params.columns:
                        extra[c] = extra["number"].map(params[c])
                out = pd.concat([out, extra], ignore_index=True)
                out["number"] = out["number"].astype("Int64")
                out = out.sort_values(["value", "_tie"], ascending=[self.direction == "minimize", True],
                                      kind="stable").reset_index(drop=True)
        out = out.drop(columns="_tie")
        out.insert(0, "rank", range(1, len(out) + 1))
        return out.rename(columns={"number": "trial", "value": self.metric})

    def curves(self):
        """Per-epoch metrics, one row per (trial, epoch), one column per metric."""
        frame = self.epochs_df
        if frame.empty:
            return frame
        return frame.pivot_table(index=["trial", "epoch"], columns="name", values="value").reset_index()

    # -- read helpers for reports (automl_pt/report/html.py, automl_pt/report/plots.py) -------------------
    def optuna_study(self):
        """The run's Optuna study, loaded read-only from the storage named in ``study.json``
        (no heartbeat: safe while a driver runs)."""
        import optuna

        meta = json.loads((self.run_dir / "study.json").read_text())
        return optuna.load_study(study_name=self.study,
                                 storage=open_storage_url(_existing_storage(meta["optuna_url"], self.run_dir)))

    def importances(self):
        """Hyperparameter importances by Optuna's default evaluator over the completed trials:
        a DataFrame ``param, importance`` (most important first, summing to 1). Only params that
        took more than one value are ranked (a fixed param explains nothing). With fewer than
        :data:`MIN_IMPORTANCE_TRIALS` completed trials, or nothing that varied, the frame is
        empty and ``frame.attrs["note"]`` says why."""
        import warnings

        import optuna
        import pandas as pd

        empty = pd.DataFrame({"param": pd.Series(dtype="object"), "importance": pd.Series(dtype="float64")})
        ostudy = self.optuna_study()
        done = ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(done) < MIN_IMPORTANCE_TRIALS:
            empty.attrs["note"] = (f"importances need at least {MIN_IMPORTANCE_TRIALS} completed trials; "
                                   f"this study has {len(done)}")
            return empty
        names = sorted({n for t in done for n in t.params})
        varying = [n for n in names
                   if len({json.dumps(t.params.get(n), default=str) for t in done}) > 1
                   and all(n in t.params for t in done)]
        if not varying:
            empty.attrs["note"] = "no hyperparameter took more than one value among the completed trials"
            return empty
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ranked = optuna.importance.get_param_importances(ostudy, params=varying)
        frame = pd.DataFrame({"param": list(ranked), "importance": [float(v) for v in ranked.values()]})
        frame.attrs["note"] = f"Optuna's default importance evaluator over {len(done)} completed trials"
        return frame

    def test_table(self):
        """The task's breakdown of the best model's test scores (e.g. a row per kind of span;
        :meth:`automl_pt.tasks.Task.test_table`) as a DataFrame whose ``attrs["title"]`` says
        what the rows are; ``None`` when the task has none or the study had no test split."""
        import pandas as pd

        path = self.best_model_dir / "test_table.json"
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        frame = pd.DataFrame(raw["rows"], columns=raw["columns"])
        frame.attrs["title"] = raw.get("title", "")
        return frame

    def test_predictions(self):
        """The exported best model's test predictions: ``true, pred`` label indices and
        ``true_label, pred_label`` names (regression: numbers; multi-label: one row per example
        and label, ``label`` its index and ``label_name``), or the task's own frame as it wrote it
        (:meth:`automl_pt.tasks.Task.predictions_frame`: e.g. ``true_items`` / ``pred_items``,
        transcripts); ``None`` when the study had no test split."""
        import pandas as pd

        path = self.best_model_dir / "test_predictions.parquet"
        manifest = self.best_model_dir / "automl_pt.json"
        if not path.is_file() or not manifest.is_file():
            return None
        frame = pd.read_parquet(path)
        labels = self.labels()
        if "true" not in frame.columns or frame["true"].dtype.kind not in "iu":
            return frame   # numbers (regression), items or text (the task's own rows): no names
        if "label" in frame.columns:              # multi-label: 0/1 per (example, label)
            frame["label_name"] = [labels[i] for i in frame["label"]]
            return frame
        frame["true_label"] = [labels[i] for i in frame["true"]]
        frame["pred_label"] = [labels[i] for i in frame["pred"]]
        return frame

    def labels(self) -> list[str]:
        """Label names in index order (from the exported model, else the study's data)."""
        manifest = self.best_model_dir / "automl_pt.json"
        if manifest.is_file():
            return list(json.loads(manifest.read_text())["labels"])
        data = self.study_row.get("data")
        data = json.loads(data) if isinstance(data, str) else (data or {})
        return list(data.get("labels") or [])


def load_results(run_dir: Path, study_name: str | None = None, live: bool | None = None) -> Results:
    """Read a run directory's results from DuckDB. While a driver runs the study (``live``;
    detected from its lock by default) or when the file is locked or missing, rebuild the same
    frames from the Optuna storage and the Parquet files instead: never a lock error. Raises
    :class:`ConfigError` when ``run_dir`` is not a run directory (no study.json, or not one
    automl_pt wrote) or its SQLite storage is missing (reading never creates one)."""
    import duckdb

    from ..errors import ConfigError
    from ..core.paths import driver_running

    run_dir = Path(run_dir)
    meta_path = run_dir / "study.json"
    if not meta_path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no study.json); run a study first")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{meta_path}: not valid JSON ({exc}); not a study.json automl_pt wrote") from None
    missing = [k for k in STUDY_JSON_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ConfigError(f"{meta_path}: not a study.json automl_pt wrote (no {', '.join(missing)})")
    study_name = study_name or meta["study"]
    store = ResultStore(run_dir / RESULTS_FILE)
    if live is None:
        live = driver_running(run_dir)
    try:
        if live or not store.path.exists():
            raise duckdb.IOException("read the live sources")
        con = duckdb.connect(str(store.path), read_only=True)
        try:
            trials = con.execute("SELECT * FROM trials WHERE study = ? ORDER BY number", [study_name]).df()
            epochs = con.execute("SELECT * FROM epoch_metrics WHERE study = ? ORDER BY trial, epoch",
                                 [study_name]).df()
            rows = con.execute("SELECT * FROM studies WHERE study = ?", [study_name]).df()
            try:
                derived = con.execute("SELECT * FROM derived_models WHERE study = ?", [study_name]).df()
            except duckdb.CatalogException:   # a file from before derived models
                derived = derived_frame(run_dir, study_name)
        finally:
            con.close()
        row = rows.iloc[0].to_dict() if len(rows) else dict(meta)
        return Results(study_name, run_dir, meta["metric"], meta["direction"], trials, epochs, row,
                       derived_df=derived)
    except (duckdb.IOException, duckdb.CatalogException, duckdb.ConnectionException):
        import optuna

        storage = open_storage_url(_existing_storage(meta["optuna_url"], run_dir))
        optuna_study = optuna.load_study(study_name=study_name, storage=storage)
        return Results(study_name, run_dir, meta["metric"], meta["direction"],
                       trials_frame(optuna_study, study_name),
                       epochs_frame(run_dir, study_name, optuna_study), dict(meta), source="optuna",
                       derived_df=derived_frame(run_dir, study_name))


def _existing_storage(url: str, run_dir: Path) -> str:
    """``url``, after checking that a SQLite storage file exists (readers never create one).
    Raises :class:`ConfigError`."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        from ..errors import ConfigError

        raise ConfigError(f"{run_dir}: the Optuna storage {url} does not exist (was the run "
                          "directory moved or copied without it?)")
    return url


def open_storage_url(url: str):
    """A read/write RDB storage without heartbeat (for readers)."""
    import optuna

    return optuna.storages.RDBStorage(url)





def best_trial(ostudy: Any):
    """The study's best trial, or ``None`` before one has finished: Optuna's best value; among
    completed trials that tie on it (accuracy on a small validation split often does), the one
    of lowest ``validation_loss`` (the task's finer score of the same validation outputs,
    :meth:`automl_pt.tasks.Task.validation_loss`; a trial without one comes after those with
    one), then the earliest. Every step that reads "the best trial" (export, soups, the
    leaderboard's order, ``study.json``) goes through here."""
    import optuna

    try:
        best = ostudy.best_trial
    except ValueError:
        return None
    tied = [t for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value == best.value]
    if len(tied) < 2:
        return best
    return min(tied, key=tie_key)


def _details_loss(details: Any) -> float:
    """The ``validation_loss`` a derived model's ``details`` JSON records (ties on the metric
    rank it as they rank trials), ``inf`` where it records none."""
    try:
        loss = json.loads(details).get("validation_loss")
    except (TypeError, ValueError, AttributeError):
        return math.inf
    return float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf


def tie_key(trial: Any) -> tuple[float, int]:
    """Order of trials that tie on the study's metric: lower ``validation_loss`` first (none:
    last), then the earlier trial."""
    loss = trial.user_attrs.get("validation_loss")
    return (float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf,
            trial.number)


def best_value(ostudy: Any) -> float | None:
    best = best_trial(ostudy)
    return None if best is None else best.value


def best_baseline(run_dir: Path) -> dict[str, Any] | None:
    """``baseline`` of ``<run_dir>/best/metrics.json`` (``None`` where there is none)."""
    try:
        return json.loads((Path(run_dir) / "best" / "metrics.json").read_text()).get("baseline")
    except (OSError, ValueError, AttributeError):
        return None


def best_meta(ostudy: Any) -> dict[str, Any]:
    best = best_trial(ostudy)
    return {"best_trial": best.number if best else None, "best_value": best.value if best else None}
