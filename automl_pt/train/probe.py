"""The frozen-feature probe: multinomial logistic regression on cached backbone features,
fitted with full-batch L-BFGS, its L2 strength chosen on the validation split.

A ``linear_probe`` trial of a classification task runs :func:`fit_probe` instead of SGD epochs:
features are standardised, one model is fitted per strength of :data:`L2_GRID` (strongest
first, each warm-started from the previous one), and the strength whose model scores best on
validation (the study's metric; ties go to the lower validation loss) is kept. The
standardisation is folded into the head's linear layer, so the trial's weights are an ordinary
:class:`~automl_pt.heads.ClassificationHead` state and export / predict work unchanged. It is
recorded as a one-epoch trial (``best_epoch`` 1; the history row adds ``l2``).

Every classification study starts with this probe (see :mod:`automl_pt.engine.seeding`), so the best
trial is never worse on validation than it; :func:`probe_floor` gives that floor to anything
else that may export a model (soups, refits, ensembles).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.linear import fit_logistic

def probe_applies(task: Any, head: Any) -> bool:
    """Whether ``linear_probe`` trials of this task are fitted in closed form: a task that has
    a closed-form probe (``closed_form_probe``: classification, regression, multi-label) with
    the standard linear head."""
    from ..heads import ClassificationHead

    return bool(getattr(task, "closed_form_probe", False)) and isinstance(head, ClassificationHead)


def fit_probe(model: Any, train: torch.Tensor, train_labels: np.ndarray, validation: torch.Tensor,
              validation_labels: np.ndarray, metrics: dict[str, Any], objective_metric: str,
              maximize: bool, callbacks: list[Any] = (), task: Any = None):
    """A ``linear_probe`` trial: fit the head of ``model`` (a :class:`TrialModel` whose head is a
    :class:`ClassificationHead`) on frozen features by the ``task``'s closed form
    (:meth:`automl_pt.tasks.Task.fit_probe`; default: single-label classification,
    :func:`fit_logistic`) and return a :class:`~automl_pt.train.training.TrainResult` of one epoch;
    callbacks see one step and one epoch (``epochs.parquet`` gets one row). The state says
    ``closed_form``: its value is final, not an epoch-1 score, so it is not reported to the
    pruner (which would hold trials still training against it)."""
    from ..tasks import ClassificationTask
    from .training import TrainResult, TrainState, clone_state, metric_values

    task = task if task is not None else ClassificationTask()
    state = TrainState(epochs=1, total_steps=1, micro_batch_size=len(train_labels), model=model,
                       closed_form=True)
    for cb in callbacks:
        cb.on_train_begin(state)
    num_labels = model.head.linear.out_features
    if task.kind == "classification":
        labels = max(int(np.max(train_labels)), int(np.max(validation_labels))) + 1
        if labels > num_labels:
            raise ValueError(f"labels up to {labels - 1} for a head of {num_labels} outputs")

    fit = task.fit_probe(train, train_labels, validation, validation_labels, num_labels,
                         lambda preds, probs: metric_values(metrics, validation_labels, preds, probs),
                         objective_metric, maximize)
    with torch.no_grad():
        model.head.linear.weight.copy_(fit.weight)
        model.head.linear.bias.copy_(fit.bias)
    state.epoch, state.step, state.samples_seen = 1, 1, len(train_labels)
    for cb in callbacks:
        cb.on_step_end(state)
    state.train_loss, state.metrics = fit.train_loss, dict(fit.metrics)
    state.best_value, state.best_epoch = fit.metrics[objective_metric], 1
    with torch.no_grad():   # the fitted head on the validation features: the task's loss there
        _, probs = task.predict(validation.float().cpu() @ fit.weight.float().cpu().T + fit.bias.float().cpu())
    validation_loss = task.validation_loss(validation_labels, probs)
    row = {"epoch": 1, "train_loss": fit.train_loss,
           "samples_per_s": len(train_labels) / max(fit.fit_seconds, 1e-9),
           "epoch_seconds": fit.fit_seconds, "l2": fit.l2,
           **{f"val_{k}": v for k, v in fit.metrics.items()}}
    if validation_loss is not None:
        row["validation_loss"] = validation_loss
    state.history.append(row)
    for cb in callbacks:
        cb.on_epoch_end(state)
    for cb in callbacks:
        cb.on_train_end(state)
    best_state = clone_state(model)
    result = TrainResult(best_state, 1, dict(fit.metrics), state.history, row["samples_per_s"],
                         epochs_planned=1, epochs_run=1, steps=1, validation_loss=validation_loss)
    result.probe = fit  # type: ignore[attr-defined]  # the L2 path, for the trial's user attrs
    return result


# -- the floor other exports must not fall below -----------------------------------------------
def is_probe_trial(trial: Any) -> bool:
    """Whether a finished Optuna trial is a closed-form probe (it records ``probe_l2``)."""
    return trial.user_attrs.get("probe_l2") is not None


def probe_floor(ostudy: Any) -> float | None:
    """The best validation value among the study's completed probe trials (``None`` when it has
    none). A model a study exports instead of its best trial (a soup, an ensemble, a refit) must
    not score worse than this on validation: check with :func:`meets_probe_floor`."""
    import optuna

    values = [t.value for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if is_probe_trial(t) and t.value is not None]
    if not values:
        return None
    maximize = ostudy.direction == optuna.study.StudyDirection.MAXIMIZE
    return max(values) if maximize else min(values)


def meets_probe_floor(ostudy: Any, value: float) -> bool:
    """Whether a validation ``value`` (in the study's metric) is at least as good as
    :func:`probe_floor` (always true when the study has no probe trial)."""
    import optuna

    floor = probe_floor(ostudy)
    if floor is None:
        return True
    return value >= floor if ostudy.direction == optuna.study.StudyDirection.MAXIMIZE else value <= floor
