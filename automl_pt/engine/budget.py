"""Timeout planning: a trial that cannot finish before ``[study] timeout`` is not started.

When a trial has sampled its parameters, its duration is estimated from the finished trials of the
study (their setup time and seconds per epoch, recorded by :class:`automl_pt.engine.trial.TrialRunner`),
preferring trials with the same backbone, strategy and batch size. If the estimate does not fit
in the time left, the trial is not trained: it is recorded as failed with ``state_reason =
"over_budget"`` (it does not count toward ``max_failures``) and the driver stops starting trials
after :data:`MAX_BUDGET_SKIPS` such trials in a row. Without finished trials there is no
estimate: the first trial always runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

OVER_BUDGET = "over_budget"
#: consecutive over-budget trials after which the driver stops starting trials
MAX_BUDGET_SKIPS = 3
#: the keys a finished trial is matched on, most specific first
_MATCH_KEYS = (("backbone", "strategy", "batch_size"), ("backbone", "strategy"), ("backbone",), ())


class OverBudget(Exception):
    """Raised in place of training a trial that cannot finish before the study's deadline."""


def estimate_trial_seconds(finished: list[Any], params: dict[str, Any]) -> float | None:
    """Seconds a trial with ``params`` is expected to take, from ``finished`` trials (Optuna
    ``FrozenTrial``s carrying the ``duration_s`` / ``setup_s`` / ``history`` user attributes):
    median setup time plus ``params["epochs"]`` (default 1) times the median seconds per epoch
    of the most similar trials. ``None`` when no finished trial has a duration."""
    timed = [t for t in finished if t.user_attrs.get("duration_s") is not None]
    for keys in _MATCH_KEYS:
        similar = [t for t in timed if all(t.params.get(k) == params.get(k) for k in keys)]
        if similar:
            break
    else:
        return None
    setups, per_epoch, whole = [], [], []
    for t in similar:
        duration = float(t.user_attrs["duration_s"])
        setup = t.user_attrs.get("setup_s")
        epochs_run = len(t.user_attrs.get("history") or [])
        if setup is not None and epochs_run:
            setups.append(float(setup))
            per_epoch.append(max(0.0, duration - float(setup)) / epochs_run)
        else:
            whole.append(duration)   # no epochs recorded (e.g. a closed-form fit): as a whole
    epochs = int(params.get("epochs") or 1)
    if per_epoch:
        return statistics.median(setups) + epochs * statistics.median(per_epoch)
    return statistics.median(whole)


def check_time_left(trial: Any, params: dict[str, Any], deadline: float | None,
                    now: float | None = None) -> None:
    """Raise :class:`OverBudget` (after recording why on ``trial``) when the trial's estimated
    duration does not fit before ``deadline`` (``time.time()`` seconds)."""
    if deadline is None:
        return
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    estimate = estimate_trial_seconds(trial.study.get_trials(deepcopy=False, states=done), params)
    left = deadline - (time.time() if now is None else now)
    if estimate is None or estimate <= left:
        return
    message = (f"not started: estimated {estimate:.0f} s, {max(0.0, left):.0f} s left before the "
               "study's timeout")
    _quiet_optuna(trial.number)
    trial.set_user_attr("state_reason", OVER_BUDGET)
    trial.set_user_attr("error", message)
    trial.set_user_attr("estimated_s", estimate)
    raise OverBudget(message)


def _quiet_optuna(number: int) -> None:
    """Optuna logs every failed trial with its traceback; an over-budget trial is a decision,
    not a failure (the driver reports it in one line)."""
    import logging

    logger = logging.getLogger("optuna.study._optimize")
    quiet = next((f for f in logger.filters if isinstance(f, _SkipOverBudget)), None)
    if quiet is None:
        quiet = _SkipOverBudget()
        logger.addFilter(quiet)
    quiet.numbers.add(number)


class _SkipOverBudget:
    def __init__(self) -> None:
        self.numbers: set[int] = set()

    def filter(self, record: Any) -> bool:
        message = record.getMessage()
        return "OverBudget(" not in message and not any(
            message.startswith(f"Trial {n} failed") for n in self.numbers)
