"""Live progress for a study: trials n/N with the best value so far, and the running trial's
epoch / step. Uses rich; a no-op when disabled (API calls with ``progress=False``, tests)."""

from __future__ import annotations

from typing import Any

from ..train.training import TrainerCallback


def progress_bar(console: Any = None, transient: bool = False):
    """The project's rich progress layout: description, bar, n/N, elapsed, remaining, and an
    ``info`` field (add tasks with ``info=""``). Shared by studies, pre-training and label
    efficiency so they look alike."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, transient=transient)


class LiveBar:
    """What every live progress display here shares: leave it on ``__exit__``, print a line
    above it with ``log`` (no-ops while ``_progress`` is ``None``: disabled or not entered)."""

    _progress: Any = None

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)


class StudyProgress(LiveBar, TrainerCallback):
    def __init__(self, total_trials: int | None, metric: str, enabled: bool = True,
                 console: Any = None):
        self.enabled = enabled
        self.metric = metric
        self.total = total_trials
        self._progress = None
        self._trials_task = None
        self._steps_task = None
        self.console = console

    def __enter__(self) -> "StudyProgress":
        if self.enabled:
            self._progress = progress_bar(self.console)
            self._progress.__enter__()
            self._trials_task = self._progress.add_task("trials", total=self.total, info="")
            self._steps_task = self._progress.add_task("trial", total=None, info="", visible=False)
        return self

    def trial_started(self, number: int, params: dict) -> None:
        if self._progress is not None:
            label = f"trial {number}: {params.get('backbone')} / {params.get('strategy')}"
            self._progress.reset(self._steps_task, total=None, description=label, info="", visible=True)

    #: called with ``(backbone, summary)`` the first time a backbone's input sizes are known
    on_input_size: Any = None

    def input_size(self, backbone: str, summary: str) -> None:
        """The input sizes a backbone's preprocessor chose from the data: one line, once."""
        seen = self.__dict__.setdefault("_input_sizes", {})
        if seen.get(backbone) == summary:
            return
        seen[backbone] = summary
        self.log(f"input size for {backbone}: {summary}")
        if self.on_input_size is not None:
            self.on_input_size(backbone, summary)

    def trials_done(self, finished: int, best: float | None) -> None:
        if self._progress is not None:
            info = f"best {self.metric} {best:.4f}" if best is not None else ""
            self._progress.update(self._trials_task, completed=finished, info=info)

    # TrainerCallback: per-trial steps and epochs
    def on_train_begin(self, state) -> None:
        if self._progress is not None:
            self._progress.update(self._steps_task, total=state.total_steps, completed=0,
                                  info=f"epoch 1/{state.epochs}")

    def on_step_end(self, state) -> None:
        if self._progress is not None:
            self._progress.update(self._steps_task, completed=state.step)

    def on_epoch_end(self, state) -> None:
        if self._progress is not None:
            shown = f"{self.metric} {state.metrics.get(self.metric, float('nan')):.4f}"
            nxt = f"epoch {min(state.epoch + 1, state.epochs)}/{state.epochs}"
            self._progress.update(self._steps_task, info=f"{nxt}  loss {state.train_loss:.3f}  {shown}")


class DriverProgress(StudyProgress):
    """Progress of a driver with worker processes: the trials bar plus one row per worker slot."""

    def __init__(self, total_trials: int | None, metric: str, slots: list[str], enabled: bool = True,
                 console: Any = None):
        super().__init__(total_trials, metric, enabled, console)
        self.slots = slots
        self._rows: dict[int, Any] = {}
        self._labels: dict[int, str] = {}   # slot -> "trial N: backbone / strategy"

    def __enter__(self) -> "DriverProgress":
        super().__enter__()
        if self._progress is not None:
            self._progress.update(self._steps_task, visible=False)
            for slot, device in enumerate(self.slots):
                self._rows[slot] = self._progress.add_task(f"worker {slot} ({device})", total=None,
                                                           info="starting")
        return self

    def _row(self, slot: int, **kw: Any) -> None:
        if self._progress is not None and slot in self._rows:
            self._progress.update(self._rows[slot], **kw)

    def worker_state(self, slot: int, device: str, state: str) -> None:
        if state == "idle":
            self._row(slot, description=f"worker {slot} ({device})", info="idle", completed=0, total=None)
        else:
            self._row(slot, info=state)

    def worker_trial(self, slot: int, number: int, params: dict) -> None:
        self._labels[slot] = f"trial {number}: {params.get('backbone')} / {params.get('strategy')}"
        self._row(slot, completed=0, total=None, info=self._labels[slot])

    def worker_steps(self, slot: int, total: int, epochs: int) -> None:
        self._row(slot, total=total, completed=0)

    def worker_step(self, slot: int, step: int) -> None:
        self._row(slot, completed=step)

    def worker_epoch(self, slot: int, epoch: int, epochs: int, loss: float, metrics: dict) -> None:
        value = metrics.get(self.metric, float("nan"))
        self._row(slot, info=f"{self._labels.get(slot, '')}  epoch {epoch}/{epochs} "
                             f"loss {loss:.3f} {self.metric} {value:.4f}")
