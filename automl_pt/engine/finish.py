"""The end of a study: the best trial's epoch soup, the trial soup, the ensemble and the refit
the study asks for (see :mod:`automl_pt.engine.soups` for the averaging), the export of the winner
to ``best/`` and the rows of ``derived_models.parquet``.

``[search] ensemble = k`` (k ≥ 2) measures the top ``k`` trials' averaged probabilities
(averaged logits for tasks whose outputs are not single-label probabilities) on validation
and test, with the gain over the best trial; it is a leaderboard row, not an export.

``[search] distill = true`` (with ``ensemble = k``) distils that ensemble into one model: the
best trial's configuration trained again, same seed, on targets mixed with the ensemble's outputs
on the training examples (:meth:`automl_pt.tasks.Task.distill_targets`, the teacher's share
:data:`DISTILL_WEIGHT`). Its row has ``kind = distilled``; it is exported where it beats the best
trial (and any soup) on validation. A best trial that is a closed-form probe, or a task without
soft targets, is not distilled (a line in the log says so).

``[search] refit = true`` retrains the best configuration on train + validation for the best
trial's ``best_epoch`` epochs (the last epoch's weights: nothing is held out any more) and exports
that model; its row keeps the search's validation score for the record and reports its test score.

Each soup, ensemble, distilled model and refit is a row of the leaderboard (``kind`` = ``soup`` /
``ensemble`` / ``distilled`` / ``refit``; trials are ``kind = trial``), stored in ``<run dir>/derived_models.parquet`` and the
DuckDB table ``derived_models``. ``best/`` is a soup only when the soup beats the best trial on
validation (never worse than the best trial); with ``refit`` it is the refit model.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..storage.store import best_trial, tie_key
from ..train.training import outranks
from .soups import SOUP_FILE, SOUP_TRIALS, WEIGHTS_FILE, Scored, State, make_soup

if TYPE_CHECKING:
    import torch

#: the teacher's share of a distilled model's training targets (``[search] distill``)
DISTILL_WEIGHT = 0.5


class _Scorer:
    """Builds models of trials' configurations (one at a time, reused for every state loaded
    into it) and scores states on a split through the runner's caches. ``frozen``: the states
    are linear probes of the configuration's backbone (its weights untouched), so the cached
    frozen features are scored instead of running the backbone again."""

    def __init__(self, runner: Any, prepared: Any):
        self.runner, self.prepared = runner, prepared
        self.task = runner.make_task()
        self._models: dict[str, Any] = {}

    def model(self, params: dict) -> tuple[Any, Any, Any, Any]:
        from ..model import TrialModel

        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._models:
            self._models.clear()
            info, backbone = self.runner.load_backbone(params["backbone"], params)
            prep = self.runner.preprocessor(backbone, params["backbone"], params)
            head = self.task.make_head(backbone, self.task.num_outputs(self.prepared.data.label_names), params)
            self._models[key] = (TrialModel(backbone, head).to(self.runner.device), prep, info, backbone)
        return self._models[key]

    def logits(self, params: dict, state: State, split: Any, frozen: bool = False) -> "torch.Tensor":
        from ..train.training import predict_logits

        model, prep, info, backbone = self.model(params)
        model.load_state_dict(state)
        if frozen:
            data = {"features": self.runner.features(info, backbone, prep, split)}
            return predict_logits(model, data, self.runner.device, 256)
        encoded = self.runner.encoded(prep, split)
        return predict_logits(model, encoded, self.runner.device, 64, prep.collate, prep.lengths(encoded))

    def score(self, params: dict, state: State, split: Any, frozen: bool = False) -> dict[str, float]:
        """Metrics of ``state`` on ``split``."""
        return self.scored(params, state, split, frozen)[0]

    def scored(self, params: dict, state: State, split: Any, frozen: bool = False) -> Scored:
        """Metrics and the task's loss (:meth:`automl_pt.tasks.Task.validation_loss`) of
        ``state`` on ``split``."""
        from ..train.training import metric_values

        logits = self.logits(params, state, split, frozen)
        if self.task.needs_calibration:  # decision values tuned on validation, as export does
            validation = self.prepared.data.validation
            val_logits = logits if split is validation else self.logits(params, state, validation, frozen)
            self.task.calibrate(val_logits, validation.labels)
        preds, probs = self.task.predict(logits)
        return (metric_values(self.runner.metrics, split.labels, preds, probs),
                self.task.validation_loss(split.labels, probs))

    def ensemble(self, members: list[tuple[dict, State]], split: Any) -> dict[str, float]:
        """Metrics of the members' averaged probabilities (single-label classifiers) or averaged
        logits (any other output)."""
        import numpy as np

        outputs = [self.logits(p, s, split, _probe(p)) for p, s in members]
        per = [self.task.predict(o) for o in outputs]
        single_label = all(np.ndim(prob) == 2 and np.ndim(pred) == 1 and len(pred) and
                           np.array_equal(pred, np.asarray(prob).argmax(axis=1)) for pred, prob in per)
        if single_label:
            probs = np.mean([np.asarray(pr) for _, pr in per], axis=0)
            preds = probs.argmax(axis=1)
        else:
            import torch

            if self.task.needs_calibration:  # on the averaged validation outputs
                validation = self.prepared.data.validation
                val_outputs = outputs if split is validation else [
                    self.logits(p, s, validation, _probe(p)) for p, s in members]
                self.task.calibrate(torch.stack(val_outputs).mean(0), validation.labels)
            preds, probs = self.task.predict(torch.stack(outputs).mean(0))
        from ..train.training import metric_values

        return metric_values(self.runner.metrics, split.labels, preds, probs)


def _probe(params: dict) -> bool:
    return params.get("strategy") == "linear_probe"


def _load(path: Path) -> State:
    from safetensors.torch import load_file

    return load_file(str(path))


def _row(kind: str, name: str, base: Any, members: list, validation: dict, test: dict | None,
         metric: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "base_trial": base.number, "members": json.dumps(members),
            "value": validation.get(metric) if validation else None,
            "metrics": json.dumps(validation), "test_metrics": json.dumps(test),
            "test_value": (test or {}).get(metric), "exported": False,
            "details": json.dumps(details, default=str)}


@dataclass
class _Base:
    """The best trial as the end-of-study steps see it."""

    trial: Any
    state: State
    validation: dict[str, float]
    test: dict[str, float] | None
    loss: float | None   # validation loss (ties on the metric)


class _Finisher:
    """The end-of-study steps of :func:`finish_study`, sharing one scorer and the best trial."""

    def __init__(self, study: Any, prepared: Any, ostudy: Any, runner: Any, done: list):
        self.study, self.prepared, self.ostudy, self.runner, self.done = study, prepared, ostudy, runner, done
        self.metric, self.maximize = prepared.metric, prepared.direction == "maximize"
        self.data = prepared.data
        self.scorer = _Scorer(runner, prepared)
        best = best_trial(ostudy)
        state = _load(runner.trial_dir(best.number) / WEIGHTS_FILE)
        validation, loss = best.user_attrs.get("metrics"), best.user_attrs.get("validation_loss")
        if validation is None:
            validation, loss = self.scorer.scored(best.params, state, self.data.validation, _probe(best.params))
        self.best = _Base(best, state, validation, self.test(best.params, state, _probe(best.params)), loss)

    def test(self, params: dict, state: State, frozen: bool) -> dict[str, float] | None:
        return None if self.data.test is None else self.scorer.score(params, state, self.data.test, frozen)

    def weights(self, number: int) -> State:
        return self.best.state if number == self.best.trial.number else \
            _load(self.runner.trial_dir(number) / WEIGHTS_FILE)

    def epoch_soup(self, mode: str) -> tuple[dict, State] | None:
        """The best trial's epoch soup (averaged during the trial) as a row."""
        best = self.best.trial
        info = best.user_attrs.get("epoch_soup") or {}
        path = self.runner.trial_dir(best.number) / SOUP_FILE
        if len(info.get("epochs") or []) < 2 or not path.is_file():
            return None
        state = _load(path)
        row = _row("soup", f"epochs {'+'.join(map(str, info['epochs']))} of trial {best.number}", best,
                   [f"{best.number}:{e}" for e in info["epochs"]], info["metrics"],
                   self.test(best.params, state, _probe(best.params)), self.metric, mode=mode,
                   scope="epochs", tried=info.get("tried"), validation_loss=info.get("validation_loss"))
        return row, state

    def trial_soup(self, mode: str) -> tuple[dict, State] | None:
        """The soup of the top trials sharing the best trial's backbone and init, as a row
        (``None`` when there is nothing to average, or greedy kept only the best trial)."""
        best = self.best.trial
        init = best.params.get("init", "pretrained")
        if init == "random":   # random weights differ per trial: no shared init
            return None
        group = [best] + [t for t in self.done if t.number != best.number
                          and t.params.get("backbone") == best.params.get("backbone")
                          and t.params.get("init", "pretrained") == init]
        group = group[:SOUP_TRIALS]
        if len(group) < 2:
            return None
        frozen = all(_probe(t.params) for t in group)   # probes of one backbone: its features
        ingredients = [(t.number, self.weights(t.number),
                        (self.best.validation, self.best.loss) if t is best else None) for t in group]
        soup = make_soup(mode, ingredients,
                         lambda state: self.scorer.scored(best.params, state, self.data.validation, frozen),
                         self.metric, self.maximize)
        if len(soup.members) < 2 and mode != "uniform":
            return None
        row = _row("soup", f"trials {'+'.join(map(str, soup.members))}", best, soup.members, soup.metrics,
                   self.test(best.params, soup.state, frozen), self.metric, mode=mode, scope="trials",
                   tried=soup.tried, validation_loss=soup.loss)
        return row, soup.state

    def ensemble(self, k: int) -> dict | None:
        """The top ``k`` trials' averaged outputs, as a row with its gains over the best trial."""
        if k < 2 or len(self.done) < 2:
            return None
        top = self.done[:k]
        members = [(t.params, self.weights(t.number)) for t in top]
        val = self.scorer.ensemble(members, self.data.validation)
        test = self.scorer.ensemble(members, self.data.test) if self.data.test is not None else None
        m, base = self.metric, self.best
        return _row("ensemble", f"ensemble of trials {'+'.join(str(t.number) for t in top)}", base.trial,
                    [t.number for t in top], val, test, m, validation_gain=val[m] - base.validation[m],
                    test_gain=(test[m] - base.test[m]) if test and base.test else None)

    def teacher_targets(self, k: int) -> Any:
        """Training targets mixed with the top ``k`` trials' outputs on the training split, or
        ``None`` (and why, as a warning) where the best trial or the task cannot be distilled."""
        best = self.best.trial
        if _probe(best.params):
            warnings.warn(f"[search] distill: the best trial ({best.number}) is a closed-form probe; "
                          "nothing to distil into (not distilled)", stacklevel=2)
            return None
        members = [(t.params, self.weights(t.number)) for t in self.done[:k]]
        train = self.data.train
        teacher = [self.scorer.task.predict(self.scorer.logits(p, s, train, _probe(p))) for p, s in members]
        targets = self.scorer.task.distill_targets(train.labels, teacher, DISTILL_WEIGHT)
        if targets is None:
            warnings.warn(f"[search] distill: the {self.prepared.task.name} task has no soft targets "
                          "(not distilled)", stacklevel=2)
        return targets


def finish_study(study: Any, prepared: Any, ostudy: Any) -> dict[str, float] | None:
    """End of a study: epoch soup of the best trial, trial soup, ensemble, refit (as the study
    asks), export of the winner to ``best/`` and the rows of ``derived_models.parquet``.
    Returns the exported model's test metrics. The best trial's test score is measured too
    whenever a derived model is, so the rows compare on both splits."""
    import optuna

    from ..export.predictor import export_best
    from ..core.devices import resolve_device
    from .trial import TrialRunner

    cfg = study.config
    runner = TrialRunner(cfg, prepared.host, prepared.task, prepared.data, prepared.space,
                         resolve_device(cfg.resources.devices), study.run_dir)
    best = best_trial(ostudy)
    mode, k = cfg.search.soup, int(cfg.search.ensemble or 0)
    done = sorted((t for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                   if (runner.trial_dir(t.number) / WEIGHTS_FILE).is_file()),
                  key=lambda t: (-t.value if prepared.direction == "maximize" else t.value, *tie_key(t)))
    if (mode == "none" and k < 2 and not cfg.search.refit) or \
            not (runner.trial_dir(best.number) / WEIGHTS_FILE).is_file():
        _write_rows(study.run_dir, [])
        return export_best(study, prepared, ostudy, runner)   # its error names the missing weights

    steps = _Finisher(study, prepared, ostudy, runner, done)
    candidates = [c for c in (steps.epoch_soup(mode), steps.trial_soup(mode)) if c] if mode != "none" else []
    rows = [row for row, _ in candidates]
    ensemble = steps.ensemble(k)
    rows += [ensemble] if ensemble else []
    teacher = steps.teacher_targets(k) if cfg.search.distill and ensemble else None
    base, metric, maximize = steps.best, steps.metric, steps.maximize
    del steps   # frees the scorer's model before a refit or distillation trains one
    if teacher is not None:
        row, state = distill(study, prepared, runner, best, teacher, [t.number for t in done[:k]], base)
        rows.append(row)
        candidates.append((row, state))

    if cfg.search.refit:
        test, info = refit(study, prepared, ostudy, runner, best)
        row = _row("refit", f"refit of trial {best.number}", best, [best.number], base.validation, test,
                   metric, **info)
        row["exported"] = True
        rows.append(row)
    else:
        # a soup (or distilled model) only when it outranks the best trial on validation:
        # a better metric, or the same metric and a lower validation loss
        winner = (base.validation[metric], base.loss, None, None)
        for row, state in candidates:
            value, loss = json.loads(row["metrics"])[metric], json.loads(row["details"]).get("validation_loss")
            if outranks(value, loss, winner[0], winner[1], maximize):
                winner = (value, loss, row, state)
        if winner[2] is None:
            test = export_best(study, prepared, ostudy, runner)
        else:
            _, _, row, state = winner
            test = export_best(study, prepared, ostudy, runner, state=state,
                               validation=json.loads(row["metrics"]),
                               source={"kind": row["kind"], "name": row["name"],
                                       "members": json.loads(row["members"])})
            row["exported"] = True
    trial_row = _row("trial", f"trial {best.number}", best, [best.number], base.validation, base.test, metric)
    trial_row["exported"] = not any(r["exported"] for r in rows)
    _write_rows(study.run_dir, [trial_row, *rows] if rows else [])
    return test


def distill(study: Any, prepared: Any, runner: Any, best: Any, targets: Any, members: list[int],
            base: _Base) -> tuple[dict[str, Any], State]:
    """Train ``best``'s configuration (same seed) on the training inputs with ``targets`` (the
    teacher's mixed in); its best epoch on validation is the distilled model. Returns its row
    and weights."""
    from ..spec.data import Split

    train = prepared.data.train
    soft = Split(train.name, train.inputs, targets, train.rows, train.source)
    params = dict(best.params)
    micro = int(study.config.resources.micro_batch_size or params["batch_size"])
    result = runner._train(None, params, study.config.study.seed + best.number,
                           min(micro, int(params["batch_size"])), train_split=soft)
    scorer = _Scorer(runner, prepared)
    validation, loss = scorer.scored(params, result.best_state, prepared.data.validation)
    test = None if prepared.data.test is None else scorer.score(params, result.best_state, prepared.data.test)
    metric = prepared.metric
    row = _row("distilled", f"ensemble of trials {'+'.join(map(str, members))} distilled into trial "
               f"{best.number}'s configuration", best, members, validation, test, metric,
               teacher_weight=DISTILL_WEIGHT, best_epoch=result.best_epoch, validation_loss=loss,
               validation_gain=validation[metric] - base.validation[metric],
               test_gain=(test[metric] - base.test[metric]) if test and base.test else None)
    return row, result.best_state


def refit(study: Any, prepared: Any, ostudy: Any, runner: Any, best: Any
          ) -> tuple[dict[str, float] | None, dict[str, Any]]:
    """Retrain ``best``'s configuration on train + validation for its ``best_epoch`` epochs
    (same seed as the trial), export it to ``best/`` (with ``refit`` details in
    ``metrics.json``) and return ``(test metrics, details)``."""
    import numpy as np

    from ..spec.data import Split
    from ..export.predictor import export_best
    from ..tasks import concat_targets

    data = prepared.data
    epochs = int(best.user_attrs.get("best_epoch") or best.params["epochs"])
    params = {**best.params, "epochs": epochs, "min_steps": 0}   # exactly the best epochs
    combined = Split("train+validation", [*data.train.inputs, *data.validation.inputs],
                     concat_targets(data.train.labels, data.validation.labels),
                     np.concatenate([data.train.rows, data.validation.rows]), data.train.source)
    micro = int(study.config.resources.micro_batch_size or params["batch_size"])
    result = runner._train(None, params, study.config.study.seed + best.number,
                           min(micro, int(params["batch_size"])), train_split=combined, keep_last=True)
    details = {"epochs": epochs, "examples": len(combined), "samples_seen": result.samples_seen,
               "search_validation": best.user_attrs.get("metrics")}
    test = export_best(study, prepared, ostudy, runner, state=result.best_state,
                       source={"kind": "refit", "name": f"refit of trial {best.number}", **details})
    return test, details


def _write_rows(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``<run dir>/derived_models.parquet`` (ingested into DuckDB by the store)."""
    import pandas as pd

    from ..storage.store import DERIVED_COLUMNS, DERIVED_FILE
    from ..core.io import atomic_write_parquet

    frame = pd.DataFrame(rows, columns=[c for c in DERIVED_COLUMNS if c != "study"])
    frame["base_trial"] = frame["base_trial"].astype("Int64")
    frame["exported"] = frame["exported"].astype("boolean")
    for c in ("value", "test_value"):
        frame[c] = frame[c].astype("float64")
    atomic_write_parquet(frame, run_dir / DERIVED_FILE)

