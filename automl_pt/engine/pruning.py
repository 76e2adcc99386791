"""The default pruner (``[search] pruner = "auto"``): median pruning among trials of the same
fine-tuning strategy.

Like the median pruning of Hugging Face's Optuna backend, a trial whose validation metric after
an epoch is worse than the median of the earlier trials at that epoch is stopped, from the first
epoch on. Unlike it, a trial is only compared with trials of its own ``strategy``: a
``freeze_then_unfreeze`` trial, which trains only its head in the first epoch, starts slower than
a ``full`` fine-tune and would be killed by a global median; against its own kind it is judged
fairly. A strategy needs ``min_trials`` finished trials that reached the epoch before any of its
trials can be pruned there, so every strategy gets its chance.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import optuna


class StrategyMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial whose best value so far is worse than the median of the values that
    finished trials of the same ``group_by`` parameter (default ``strategy``) reported at the
    same step; only once ``min_trials`` such trials exist. Thread- and process-safe as any
    Optuna pruner (it reads the study's storage)."""

    def __init__(self, min_trials: int = 2, group_by: str = "strategy"):
        if min_trials < 1:
            raise ValueError("min_trials must be at least 1")
        self.min_trials = min_trials
        self.group_by = group_by

    def prune(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> bool:
        step = trial.last_step
        if step is None:
            return False
        values = [v for s, v in trial.intermediate_values.items() if s <= step and math.isfinite(v)]
        if not values:
            return False
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        mine = max(values) if maximize else min(values)
        group = trial.params.get(self.group_by)
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False, states=done)
                  if t.number != trial.number and t.params.get(self.group_by) == group
                  and step in t.intermediate_values and math.isfinite(t.intermediate_values[step])]
        if len(others) < self.min_trials:
            return False
        median = statistics.median(others)
        return mine < median if maximize else mine > median
