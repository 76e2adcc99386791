"""The study driver: validate everything, run Optuna trials, keep DuckDB in sync, export the best.

Usage::

    study = automl_pt.Study.from_config("studies/quickstart-text.toml")
    results = study.run()
    results.leaderboard()
    model = automl_pt.load(results.best_model_dir)
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ..spec.config import StudyConfig, load_config, parse_config, parse_dict
from ..errors import AutomlError
from ..plugins import PluginHost
from ..core.devices import resolve_device
from ..core.io import atomic_json
from ..core.paths import RESULTS_FILE, DriverLock
from ..storage.store import (ResultStore, Results, best_meta, best_trial, best_value, load_results,
                             tie_key)
from .prepared import (PreparedStudy, check_against_plugins, open_optuna_study, optuna_url, prepare_study,
                       study_host, worker_payload)


def environment() -> dict[str, Any]:
    versions = {}
    for dist in ("automl-pt", "torch", "transformers", "optuna", "duckdb", "timm", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "host": platform.node(), "packages": versions}


class Study:
    """A study defined by a :class:`StudyConfig`. Nothing is written until :meth:`run`."""

    def __init__(self, config: StudyConfig, host: PluginHost | None = None):
        self.config = config
        self._host = host
        self._prepared: PreparedStudy | None = None

    @classmethod
    def from_config(cls, config: str | Path | dict | StudyConfig, host: PluginHost | None = None,
                    base_dir: str | Path = ".", **overrides: Any) -> "Study":
        """From a study file path, a dict with the study-file keys, or a :class:`StudyConfig`.
        ``overrides`` are merged section-wise: ``Study.from_config(path, study={"trials": 3})``.
        Raises :class:`ConfigError` listing every problem of the file: its structure's, and
        (where the plugins load) the task's, metric's, backbones' and search space's too."""
        if isinstance(config, StudyConfig):
            return cls(config, host)
        if isinstance(config, dict):
            merged = dict(config)
            for k, v in overrides.items():
                merged[k] = {**merged.get(k, {}), **v}
            cfg, where = parse_dict(merged, base_dir=base_dir)
        else:
            cfg, where = parse_config(config, overrides=overrides or None)
        if where.problems:  # report the plugin-level problems with the structural ones
            with contextlib.suppress(AutomlError):
                check_against_plugins(cfg, host or study_host(cfg, where), where)
            where.check()
        return cls(cfg, host)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def name(self) -> str:
        return self.config.study.name

    # -- validation (nothing on disk) -----------------------------------------------------
    def prepare(self) -> PreparedStudy:
        """Load plugins, check task / metric / backbones / search space, read and check the data
        (:func:`~automl_pt.engine.prepared.prepare_study`, once). Raises :class:`ConfigError`
        (every problem of the study file at once), :class:`DataError`, :class:`BackboneError`."""
        if self._prepared is None:
            self._prepared = prepare_study(self.config, self._host)
        return self._prepared

    # -- running --------------------------------------------------------------------------
    def optuna_url(self) -> str:
        return optuna_url(self.config)

    def optuna_study(self, prepared: PreparedStudy, heartbeat: bool = True):
        return open_optuna_study(self.config, prepared, heartbeat)

    def _meta(self, prepared: PreparedStudy) -> dict[str, Any]:
        return {"study": self.name, "task": prepared.task.name, "metric": prepared.metric,
                "direction": prepared.direction, "run_dir": str(self.run_dir),
                "optuna_url": self.optuna_url(), "plugins": self.config.study.plugins,
                "config": self.config.to_dict(), "data": prepared.data.describe()}

    def run(self, progress: bool = True, console: Any = None) -> Results:
        """Run (or resume) the study until ``study.trials`` trials have finished (complete or
        pruned) or ``study.timeout`` passes; then score the best trial on the test set and
        export it to ``<run dir>/best``. Returns the :class:`Results`. The run directory must be
        new, empty or this study's (:func:`automl_pt.storage.rundir.claim_run_dir`; else
        :class:`ConfigError` before anything is written).

        Trials run in one worker process per device slot (``resources.devices`` ×
        ``resources.trials_per_device``); ``resources.workers = "inline"`` runs them in this
        process instead (debugging; no crash containment)."""
        import optuna

        prepared = self.prepare()
        cfg = self.config
        from ..storage.rundir import claim_run_dir

        claim_run_dir(cfg)   # new, empty or automl_pt's own: never a user's folder
        with DriverLock(self.run_dir), _sigterm_as_interrupt():
            meta = self._meta(prepared)
            atomic_json(self.run_dir / "study.json", meta)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            ostudy = self.optuna_study(prepared)
            from .scheduler import recover_trials

            recovered = recover_trials(ostudy, orphaned_running=cfg.storage.optuna == "sqlite")
            from .seeding import enqueue_seed_trials
            from .warmstart import warm_start_trials

            # a new study: the probe, the earlier studies' bests, then known-good configurations
            enqueue_seed_trials(ostudy, cfg, prepared.space, prepared.task.create(),
                                warm=lambda: warm_start_trials(cfg, prepared))
            store = ResultStore(self.run_dir / RESULTS_FILE)
            meta["environment"] = environment()
            state = {"last_error": None}

            def input_size(backbone: str, summary: str) -> None:  # study.json keeps them
                meta.setdefault("input_sizes", {})[backbone] = summary
                atomic_json(self.run_dir / "study.json", meta)

            self._on_input_size = input_size

            def record() -> None:
                self._keep_best_weights_only(ostudy)
                meta.update(best_meta(ostudy))
                try:
                    store.record_study({**meta, "n_trials": len(ostudy.trials)}, ostudy, self.run_dir)
                except Exception as exc:  # a reader holding the file: catch up at the next trial
                    state["last_error"] = exc

            from .anytime import BestExporter

            self._anytime = BestExporter(self, prepared)
            if cfg.pretrain is not None:
                self._run_pretraining(prepared, progress, console)
                record()
            if cfg.resources.workers == "inline":
                self._run_inline(prepared, ostudy, record, progress, console, recovered)
            else:
                self._run_workers(prepared, ostudy, record, progress, console, recovered)
            if best_value(ostudy) is None:
                raise AutomlError(f"study {self.name!r}: no trial completed; see "
                                  f"automl-pt results {self.run_dir} --all")
            from .finish import finish_study

            claim_run_dir(cfg, create=False)
            test_metrics = finish_study(self, prepared, ostudy)   # soups / ensemble / refit, export
            self._keep_best_weights_only(ostudy, keep=1)
            meta.update(best_meta(ostudy))
            meta["test_metrics"] = test_metrics
            store.record_study({**meta, "n_trials": len(ostudy.trials)}, ostudy, self.run_dir)
        return self.results()

    def _run_pretraining(self, prepared: PreparedStudy, progress: bool, console: Any) -> None:
        """The ``[pretrain]`` stage, once per backbone of the search, before any trial (cached:
        a finished backbone is skipped, an interrupted one resumes)."""
        from .pretrain import run_pretraining

        for name in self.config.search.backbones:
            run_pretraining(self, prepared, name, progress=progress, console=console)

    def export(self, prepared: PreparedStudy, ostudy: Any) -> dict[str, float] | None:
        """Rebuild the best trial on this driver's first device, score it on the test split and
        write ``<run dir>/best``; returns the test metrics (``None`` without test data). Raises
        :class:`ConfigError` when the run directory is not this study's."""
        from ..export.predictor import export_best
        from ..storage.rundir import claim_run_dir

        claim_run_dir(self.config, create=False)
        from .trial import TrialRunner

        runner = TrialRunner(self.config, prepared.host, prepared.task, prepared.data, prepared.space,
                             resolve_device(self.config.resources.devices), self.run_dir)
        return export_best(self, prepared, ostudy, runner)

    def _run_workers(self, prepared: PreparedStudy, ostudy: Any, record: Any, progress: bool,
                     console: Any, recovered: list[int]) -> None:
        from .progress import DriverProgress
        from ..core.devices import device_slots, threads_per_slot
        from .scheduler import Scheduler

        cfg = self.config
        slots = device_slots(cfg.resources.devices, cfg.resources.trials_per_device)
        threads = threads_per_slot(slots, cfg.resources.num_threads)
        payload = worker_payload(cfg, prepared)
        with DriverProgress(cfg.study.trials, prepared.metric, slots, enabled=progress,
                            console=console) as bar:
            bar.on_input_size = getattr(self, "_on_input_size", None)
            if recovered:
                bar.log(f"re-queued trial(s) {', '.join(map(str, recovered))} interrupted by the last run")

            def on_trial_end() -> None:
                record()
                self._export_improved(ostudy, bar)
                bar.trials_done(_finished(ostudy, cfg.study.trials), best_value(ostudy))

            bar.trials_done(_finished(ostudy, cfg.study.trials), best_value(ostudy))
            try:
                Scheduler(self, prepared, ostudy, payload, slots, threads, bar, on_trial_end).run()
            finally:
                record()
            bar.log("exporting the best model…")

    def _run_inline(self, prepared: PreparedStudy, ostudy: Any, record: Any, progress: bool,
                    console: Any, recovered: list[int]) -> None:
        import optuna

        from .progress import StudyProgress
        from .trial import TrialRunner

        cfg = self.config
        target = cfg.study.trials
        device = resolve_device(cfg.resources.devices)
        started = time.monotonic()
        consecutive_failures = 0
        with StudyProgress(target, prepared.metric, enabled=progress, console=console) as bar:
            bar.on_input_size = getattr(self, "_on_input_size", None)
            runner = TrialRunner(cfg, prepared.host, prepared.task, prepared.data, prepared.space,
                                 device, self.run_dir, callbacks=[bar])
            if cfg.study.timeout:
                runner.deadline = time.time() + cfg.study.timeout
            budget_skips = 0
            bar.trials_done(_finished(ostudy, cfg.study.trials), best_value(ostudy))
            while target is None or _finished(ostudy, cfg.study.trials) < target:
                if cfg.study.timeout and time.monotonic() - started > cfg.study.timeout:
                    bar.log("[yellow]study timeout reached[/]")
                    break
                # trials this iteration ran: new ones and enqueued (WAITING) ones it took
                before = {t.number: t.state for t in ostudy.get_trials(deepcopy=False)}
                try:
                    ostudy.optimize(runner.objective, n_trials=1, catch=(Exception,))
                finally:
                    record()
                self._export_improved(ostudy, bar)
                new = [t for t in ostudy.get_trials(deepcopy=False) if before.get(t.number) != t.state]
                from .budget import MAX_BUDGET_SKIPS, OVER_BUDGET

                skipped = [t for t in new if t.user_attrs.get("state_reason") == OVER_BUDGET]
                for t in skipped:
                    bar.log(f"[yellow]trial {t.number} {t.user_attrs.get('error')}[/]")
                budget_skips = budget_skips + len(skipped) if skipped else 0
                if budget_skips >= MAX_BUDGET_SKIPS:
                    bar.log("[yellow]no trial fits in the time left[/]")
                    break
                failed = [t for t in new if t.state == optuna.trial.TrialState.FAIL
                          and t.user_attrs.get("state_reason") != OVER_BUDGET]
                for t in failed:
                    from rich.markup import escape

                    bar.log(f"[red]trial {t.number} failed:[/] {escape(str(t.user_attrs.get('error', '?')))}")
                consecutive_failures = consecutive_failures + len(failed) if failed else 0
                bar.trials_done(_finished(ostudy, cfg.study.trials), best_value(ostudy))
                if consecutive_failures >= cfg.study.max_failures:
                    raise AutomlError(f"study {self.name!r} stopped after {consecutive_failures} "
                                      f"consecutive failed trials; last error: "
                                      f"{failed[-1].user_attrs.get('error', '?')}. Details: "
                                      f"automl-pt results {self.run_dir} --all")
            bar.log("exporting the best model…")

    def _export_improved(self, ostudy: Any, bar: Any) -> None:
        """Anytime: put the best trial so far in ``best/`` when it changed."""
        exporter = getattr(self, "_anytime", None)
        if exporter is not None:
            exporter.log = bar.log
            exporter.update(ostudy)

    def _keep_best_weights_only(self, ostudy: Any, keep: int | None = None) -> None:
        """Trials save their best-epoch weights (and epoch soup); only the study's best trial
        keeps them, or the ``keep`` best (default: as many as the end-of-study soup and ensemble
        need, :func:`automl_pt.engine.soups.kept_trials`)."""
        import optuna

        from .soups import kept_trials

        keep = kept_trials(self.config) if keep is None else keep
        best = best_trial(ostudy)
        done = list(ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        maximize = ostudy.direction == optuna.study.StudyDirection.MAXIMIZE
        done.sort(key=lambda t: (-t.value if maximize else t.value, *tie_key(t)))   # as best_trial ranks
        top = {t.number for t in done[:keep]} | ({best.number} if best is not None else set())
        finished = {t.number for t in ostudy.get_trials(deepcopy=False) if t.state.is_finished()}
        for path in [*(self.run_dir / "trials").glob("*/model.safetensors"),
                     *(self.run_dir / "trials").glob("*/soup.safetensors")]:
            number = int(path.parent.name)
            # a trial still running may have saved its weights but not yet reported its value
            if number in finished and number not in top:
                path.unlink(missing_ok=True)

    def results(self) -> Results:
        return load_results(self.run_dir, self.name)


def _finished(ostudy: Any, target: int | None) -> int:
    """Finished trials that count toward ``[study] trials`` (skipped duplicate probes do not)."""
    from .seeding import counted_trials

    return counted_trials(ostudy.get_trials(deepcopy=False), target)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops a driver like Ctrl-C: workers stop, running trials are re-queued."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(config: str | Path | dict | StudyConfig, progress: bool = True, **overrides: Any) -> Results:
    """Run a study from a file, dict or config; see :meth:`Study.run`."""
    return Study.from_config(config, **overrides).run(progress=progress)


def results(run_dir_or_study: str | Path) -> Results:
    """Results of a run directory or of the study file that names it."""
    path = Path(run_dir_or_study)
    if path.is_file():
        return load_results(load_config(path).run_dir)
    return load_results(path)

