"""The driver's scheduler: one worker process per device slot, faults contained.

The driver owns the decisions, the workers own the training:

* a worker is told to run one trial at a time, only while ``finished + in flight < trials``, so
  a study ends with exactly the requested number of finished (complete or pruned) trials;
* a worker that dies (SIGKILL, segfault, OOM killer) loses its trial, which is marked ``FAIL``
  (``state_reason = worker_died``) and retried once with the same params through Optuna's
  ``RetryHeartbeatStaleTrialCallback``; the worker is restarted;
* a trial running past ``resources.trial_timeout`` has its worker killed and is recorded with
  ``state_reason = timeout`` (not retried: it would hang again);
* Ctrl-C / SIGTERM stops the workers; their running trials are marked ``interrupted`` and
  re-queued, so the same ``automl-pt run`` command resumes them;
* after every trial the driver (the only DuckDB writer) mirrors the Optuna storage and the per-trial
  Parquet files into ``results.duckdb``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from ..errors import AutomlError
from .worker import RUN, STOP

if TYPE_CHECKING:  # pragma: no cover
    from .prepared import WorkerPayload

MAX_STARTUP_FAILURES = 3


@dataclass
class _Worker:
    slot: int
    device: str
    process: Any
    conn: Any
    state: str = "starting"          # starting | idle | busy | dead
    current: int | None = None       # trial number being run
    started: float = 0.0
    timed_out: bool = False
    pid: int | None = None
    device_name: str = ""
    trials_done: int = 0
    events: list = field(default_factory=list)


class Scheduler:
    def __init__(self, study: Any, prepared: Any, ostudy: Any, payload: WorkerPayload, slots: list[str],
                 threads: int, progress: Any, on_trial_end: Any):
        self.study, self.prepared, self.ostudy = study, prepared, ostudy
        self.payload = replace(payload, threads=threads)
        self.slots = slots
        self.progress = progress
        self.on_trial_end = on_trial_end
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self.in_flight = 0
        self.stopping = False
        self.consecutive_failures = 0
        self.startup_failures = 0
        self.last_error: str | None = None
        self.timeout_at: float | None = None
        self.deadline: float | None = None      # the same moment in time.time(), for workers
        self.budget_skips = 0

    # -- worker processes ------------------------------------------------------------------
    def _start(self, slot: int) -> None:
        from .worker import worker_main

        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=worker_main, name=f"automl-pt-worker-{slot}",
                                   args=(child, self.payload, self.slots[slot], slot, os.getpid()),
                                   daemon=True)
        process.start()
        child.close()
        self.workers[slot] = _Worker(slot, self.slots[slot], process, parent)
        self.progress.worker_state(slot, self.slots[slot], "starting")

    def _finished(self) -> int:
        import optuna

        from .seeding import counted_trials

        return counted_trials(self.ostudy.get_trials(deepcopy=False), self.study.config.study.trials)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> None:
        import optuna

        cfg = self.study.config
        target = cfg.study.trials
        if cfg.study.timeout:
            self.timeout_at = time.monotonic() + cfg.study.timeout
            self.deadline = time.time() + cfg.study.timeout
        for slot in range(len(self.slots)):
            self._start(slot)
        finished = self._finished()
        last_stale_check = time.monotonic()
        try:
            while True:
                if self.timeout_at and time.monotonic() > self.timeout_at and not self.stopping:
                    self.progress.log("[yellow]study timeout reached: finishing running trials[/]")
                    self.stopping = True
                for w in self.workers.values():
                    if w.state == "idle" and not self.stopping and (
                            target is None or finished + self.in_flight < target):
                        w.conn.send((RUN, self.deadline))
                        w.state, w.current, w.started = "busy", None, time.monotonic()
                        self.in_flight += 1
                if self.in_flight == 0 and (self.stopping or (target is not None and finished >= target)):
                    break
                self._wait_and_handle()
                self._enforce_trial_timeout()
                if time.monotonic() - last_stale_check > 5:
                    optuna.storages.fail_stale_trials(self.ostudy)  # trials of dead remote workers
                    last_stale_check = time.monotonic()
                finished = self._finished()
                if self.consecutive_failures >= cfg.study.max_failures:
                    raise AutomlError(
                        f"study {self.study.name!r} stopped after {self.consecutive_failures} "
                        f"consecutive failed trials; last error: {self.last_error}. Details: "
                        f"automl-pt results {self.study.run_dir} --all (columns error, traceback)")
        except KeyboardInterrupt:
            self.progress.log("[yellow]interrupted: stopping workers; running trials are re-queued[/]")
            self._shutdown(signal.SIGTERM)
            raise
        except BaseException:
            self._shutdown(signal.SIGTERM)
            raise
        self._shutdown(None)

    def _wait_and_handle(self) -> None:
        conns = {w.conn: w for w in self.workers.values() if w.state != "dead"}
        sentinels = {w.process.sentinel: w for w in self.workers.values() if w.state != "dead"}
        ready = wait(list(conns) + list(sentinels), timeout=0.5)
        for obj in ready:
            if obj in conns:
                w = conns[obj]
                try:
                    while w.conn.poll():
                        self._handle(w, w.conn.recv())
                except (EOFError, OSError):
                    self._died(w)
            elif obj in sentinels and sentinels[obj].state != "dead":
                w = sentinels[obj]
                try:  # drain what it said before dying
                    while w.conn.poll():
                        self._handle(w, w.conn.recv())
                except (EOFError, OSError):
                    pass
                self._died(w)

    def _handle(self, w: _Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            w.state, w.pid, w.device_name = "idle", msg[1], msg[2]
            self.progress.worker_state(w.slot, w.device_name, "idle")
        elif kind == "fatal":
            raise AutomlError(f"worker on {w.device} could not start: {msg[1]}")
        elif kind == "trial_start":
            w.current, w.started = msg[1], time.monotonic()
            self.progress.worker_trial(w.slot, msg[1], msg[2])
        elif kind == "input_size":
            self.progress.input_size(msg[1], msg[2])
        elif kind == "train_begin":
            self.progress.worker_steps(w.slot, total=msg[1], epochs=msg[2])
        elif kind == "step":
            self.progress.worker_step(w.slot, msg[1])
        elif kind == "epoch":
            self.progress.worker_epoch(w.slot, msg[1], msg[2], msg[3], msg[4])
        elif kind == "trial_end":
            number, state, value, error = msg[1:5]
            reason = msg[5] if len(msg) > 5 else None
            self.in_flight -= 1
            w.state, w.current = "idle", None
            w.trials_done += 1
            self.startup_failures = 0
            from .budget import MAX_BUDGET_SKIPS, OVER_BUDGET

            self.budget_skips = self.budget_skips + 1 if reason == OVER_BUDGET else 0
            if reason == OVER_BUDGET:
                self.progress.log(f"[yellow]trial {number} {error}[/]")
                if self.budget_skips >= MAX_BUDGET_SKIPS and not self.stopping:
                    self.progress.log("[yellow]no trial fits in the time left: finishing running trials[/]")
                    self.stopping = True
            elif state == "FAIL":
                self.consecutive_failures += 1
                self.last_error = error
                from rich.markup import escape

                self.progress.log(f"[red]trial {number} failed:[/] {escape(str(error))}")
            elif state in ("COMPLETE", "PRUNED"):
                self.consecutive_failures = 0
            self.progress.worker_state(w.slot, w.device_name, "idle")
            self.on_trial_end()

    def _died(self, w: _Worker) -> None:
        if w.state == "dead":
            return
        was_busy = w.state == "busy"
        w.process.join(timeout=5)
        code = w.process.exitcode
        w.state = "dead"
        if was_busy:
            self.in_flight -= 1
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if w.current is not None:
            reason = "timeout" if w.timed_out else "worker_died"
            message = (f"trial exceeded resources.trial_timeout and its worker was killed"
                       if w.timed_out else f"worker process on {w.device} died ({how})")
            fail_trial(self.ostudy, w.current, reason, message, retry=not w.timed_out)
            self.consecutive_failures += 1
            self.last_error = message
            self.progress.log(f"[red]trial {w.current}: {message}[/]"
                              + ("" if w.timed_out else "; it will be retried once"))
            self.on_trial_end()
        elif w.trials_done == 0 and not self.stopping:
            self.startup_failures += 1
            if self.startup_failures > MAX_STARTUP_FAILURES:
                raise AutomlError(f"worker on {w.device} keeps dying before its first trial ({how})")
        w.current = None
        if not self.stopping:
            self._start(w.slot)

    def _enforce_trial_timeout(self) -> None:
        limit = self.study.config.resources.trial_timeout
        if not limit:
            return
        for w in self.workers.values():
            if w.state == "busy" and w.current is not None and time.monotonic() - w.started > limit:
                w.timed_out = True
                try:
                    os.kill(w.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _shutdown(self, sig: int | None) -> None:
        self.stopping = True
        for w in self.workers.values():
            if w.state == "dead":
                continue
            try:
                if sig is None:
                    w.conn.send((STOP,))
                else:
                    os.kill(w.process.pid, sig)
            except (OSError, ProcessLookupError):
                pass
        deadline = time.monotonic() + 60
        for w in self.workers.values():
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)


def fail_trial(ostudy: Any, number: int, reason: str, message: str, retry: bool) -> None:
    """Mark a trial that lost its worker as FAIL with ``state_reason`` and optionally queue one
    retry with the same params (no-op if another process finished it first)."""
    import optuna

    storage = ostudy._storage
    trial = next((t for t in ostudy.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None:
        return
    if trial.state == optuna.trial.TrialState.RUNNING:
        try:
            storage.set_trial_user_attr(trial._trial_id, "state_reason", reason)
            storage.set_trial_user_attr(trial._trial_id, "error", message)
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
    trial = storage.get_trial(trial._trial_id)
    if retry and trial.state == optuna.trial.TrialState.FAIL:
        retry_trial(ostudy, trial)


def retry_trial(ostudy: Any, trial: Any) -> bool:
    """Queue one retry of ``trial`` (same params) unless it was retried already or is itself the
    retry of a retry (``max_retry=1``)."""
    import optuna

    for other in ostudy.get_trials(deepcopy=False):
        if trial.number in other.system_attrs.get("retry_history", []):
            return False
    before = len(ostudy.get_trials(deepcopy=False))
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(ostudy, trial)
    return len(ostudy.get_trials(deepcopy=False)) > before


def recover_trials(ostudy: Any, orphaned_running: bool) -> list[int]:
    """On driver start: re-queue interrupted trials and, when this driver is known to be the only
    user of the storage (SQLite under the run-directory lock), fail and re-queue trials left
    RUNNING by a killed driver. Returns the recovered trial numbers."""
    import optuna

    recovered = []
    for t in ostudy.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING and orphaned_running:
            fail_trial(ostudy, t.number, "orphaned",
                       "the run was killed while this trial ran; retried on resume", retry=True)
            recovered.append(t.number)
        elif t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("state_reason") == "interrupted":
            if retry_trial(ostudy, t):
                recovered.append(t.number)
    return recovered
