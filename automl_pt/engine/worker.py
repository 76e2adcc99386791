"""Trial workers: one process per device slot.

Two ways to run one:

* **under a driver** (``automl-pt run``): :func:`worker_main` runs in a ``spawn``-ed process and
  talks to the driver over a pipe: the driver sends ``("run",)`` when a trial may start, the worker
  answers with progress events and ``("trial_end", number, state)``. The driver decides how many
  trials start, so a study ends with exactly ``study.trials`` finished trials.
* **standalone** (``automl-pt worker STUDY.toml``, one per machine against a shared PostgreSQL
  storage): :func:`run_standalone` loops until the study has ``study.trials`` finished trials.

Workers never open the DuckDB file. Each sees only its device (``CUDA_VISIBLE_DEVICES``), exits
when its driver dies, and on SIGTERM / Ctrl-C marks the running trial ``interrupted`` so the next
run retries it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .prepared import WorkerPayload

#: the driver's messages on a worker's pipe: ``(RUN, deadline)`` runs one trial, ``(STOP,)`` ends
STOP = "stop"
RUN = "run"


def _visible_device(device: str) -> str:
    """Restrict this process to ``device`` and return the name torch should use."""
    if device.startswith("cuda"):
        index = device.split(":", 1)[1] if ":" in device else "0"
        os.environ["CUDA_VISIBLE_DEVICES"] = index
        return "cuda:0"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return "cpu"


def _exit_with_parent(parent_pid: int) -> None:
    """A worker must not outlive its driver (SIGKILL of the driver included)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _interrupt_on_sigterm() -> None:
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def limit_threads(threads: int | None) -> None:
    """Size this process's thread pools to its slot's share of the cores, before torch or a
    tokenizer starts one: OpenMP / MKL / OpenBLAS (torch's intra-op pool follows
    ``torch.set_num_threads`` in :func:`build_runtime`) and the Rust tokenizers' rayon pool
    (``RAYON_NUM_THREADS``; ``TOKENIZERS_PARALLELISM`` off when the slot has one core). Several
    workers on one machine then use the cores once, not once each."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(int(threads))
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if int(threads) > 1 else "false"


class _PipeEvents:
    """Trainer callback sending progress to the driver."""

    def __init__(self, conn: Any, slot: int):
        self.conn, self.slot = conn, slot

    def send(self, *msg: Any) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, EOFError, OSError):
            os._exit(3)  # the driver is gone

    def trial_started(self, number: int, params: dict) -> None:
        self.send("trial_start", number, {k: params.get(k) for k in ("backbone", "strategy")})

    def input_size(self, backbone: str, summary: str) -> None:
        self.send("input_size", backbone, summary)

    def on_train_begin(self, state) -> None:
        self.send("train_begin", state.total_steps, state.epochs)

    def on_step_end(self, state) -> None:
        if state.step % 5 == 0 or state.step == state.total_steps:
            self.send("step", state.step)

    def on_epoch_end(self, state) -> None:
        self.send("epoch", state.epoch, state.epochs, state.train_loss, dict(state.metrics))

    def on_train_end(self, state) -> None:
        pass


def build_runtime(payload: WorkerPayload, device_name: str, callbacks: list) -> tuple[Any, Any, Any]:
    """Study config, Optuna study (heartbeat on) and TrialRunner for a worker process, the study
    prepared afresh from the driver's ``payload`` (:mod:`automl_pt.engine.prepared`)."""
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from ..storage.rundir import claim_run_dir
    from .prepared import open_optuna_study, prepare_study
    from .trial import TrialRunner

    config = payload.config()
    prepared = prepare_study(config)
    claim_run_dir(config)   # trials/ and cache/ are written here; a new machine makes its own
    ostudy = open_optuna_study(config, prepared, heartbeat=True)
    threads = payload.threads
    if threads:
        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(int(threads))
        except RuntimeError:  # already set, or inter-op work already started in this process
            pass
    runner = TrialRunner(config, prepared.host, prepared.task, prepared.data, prepared.space,
                         torch.device(device_name), config.run_dir, callbacks=callbacks)
    return config, ostudy, runner


def run_one_trial(ostudy: Any, runner: Any) -> Any:
    """Run one Optuna trial (exceptions are recorded on the trial, not raised) and return it.
    The trial records the device memory before and after itself (``memory_before_mb`` /
    ``memory_after_mb``, measured by :class:`~automl_pt.engine.trial.TrialRunner`)."""
    runner.last_trial_number = None
    ostudy.optimize(runner.objective, n_trials=1, catch=(Exception,))
    if runner.last_trial_number is None:
        return None
    return next(t for t in ostudy.get_trials(deepcopy=False) if t.number == runner.last_trial_number)


def worker_main(conn: Any, payload: WorkerPayload, device: str, slot: int, parent_pid: int) -> None:
    """Entry point of a driver-managed worker process (``multiprocessing`` spawn target)."""
    import warnings

    from ..errors import DataWarning

    warnings.simplefilter("ignore", DataWarning)   # the driver has shown them, once
    device_name = _visible_device(device)
    limit_threads(payload.threads)
    _exit_with_parent(parent_pid)
    _interrupt_on_sigterm()
    events = _PipeEvents(conn, slot)
    try:
        _, ostudy, runner = build_runtime(payload, device_name, [events])
    except BaseException as exc:  # report why the worker cannot start, then exit
        events.send("fatal", f"{type(exc).__name__}: {exc}")
        return
    events.send("ready", os.getpid(), runner.device_name())
    try:
        while True:
            msg = conn.recv()
            if msg[0] == STOP:
                break
            runner.deadline = msg[1] if len(msg) > 1 else None   # the study's timeout
            trial = run_one_trial(ostudy, runner)
            if trial is None:
                events.send("trial_end", None, "NONE", None, None)
                continue
            events.send("trial_end", trial.number, trial.state.name, trial.value,
                        trial.user_attrs.get("error"), trial.user_attrs.get("state_reason"))
    except KeyboardInterrupt:
        pass
    except EOFError:
        pass


def run_standalone(study_file: str, overrides: dict | None, device: str, threads: int | None,
                   poll_seconds: float = 2.0, console: Any = None) -> int:
    """``automl-pt worker``: run trials on this machine's ``device`` until the shared study has
    ``study.trials`` finished trials. Returns the number of trials this worker ran."""
    import optuna

    from .seeding import counted_trials

    device_name = _visible_device(device)
    _interrupt_on_sigterm()
    limit_threads(threads)
    from .prepared import WorkerPayload

    payload = WorkerPayload(source=study_file, overrides=overrides, threads=threads)
    config, ostudy, runner = build_runtime(payload, device_name, [])
    target = config.study.trials
    ran = 0
    while True:
        trials = ostudy.get_trials(deepcopy=False)
        finished = counted_trials(trials, target)
        busy = sum(t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
                   for t in trials)
        waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
        if target is not None and finished >= target:
            break
        if target is not None and finished + busy >= target and not waiting:
            # Others hold the remaining trials; recover any whose worker died, then look again.
            optuna.storages.fail_stale_trials(ostudy)
            time.sleep(poll_seconds)
            continue
        trial = run_one_trial(ostudy, runner)
        ran += 1
        if console is not None and trial is not None:
            console.print(f"trial {trial.number}: {trial.state.name} {trial.value}")
    return ran


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run workers with 'automl-pt worker STUDY.toml' or 'automl-pt run STUDY.toml'")
