"""Checkpoint averaging, model soups, ensembles and refit: better models from the trials a study
already paid for.

``[search] soup`` (``greedy`` by default, ``uniform`` or ``none``):

* **epoch soup**: each trial keeps the weights of its best :data:`KEEP_EPOCHS` epochs on the CPU
  while it trains and averages them once it ends. ``greedy``: best epoch first, each next epoch is
  added to the average only if validation improves; ``uniform``: all of them. The average is
  saved as ``trials/<n>/soup.safetensors`` (only when it holds more than one epoch) and its
  validation metrics in the trial's ``epoch_soup`` user attribute.
* **trial soup** (end of study): the top :data:`SOUP_TRIALS` completed trials that share the best
  trial's backbone and ``init`` (and, checked on the weights, its architecture and head shape),
  in order of validation score; ``greedy`` adds a trial to the average only if validation
  improves (Wortsman et al., 2022, "Model soups"); ``uniform`` averages them all.

``[search] ensemble = k`` (k ≥ 2) measures the top ``k`` trials' averaged probabilities
(averaged logits for tasks whose outputs are not single-label probabilities) on validation
and test, with the gain over the best trial; it is a leaderboard row, not an export.

``[search] refit = true`` retrains the best configuration on train + validation for the best
trial's ``best_epoch`` epochs (the last epoch's weights: nothing is held out any more) and exports
that model; its row keeps the search's validation score for the record and reports its test score.

Each soup, ensemble and refit is a row of the leaderboard (``kind`` = ``soup`` / ``ensemble`` /
``refit``; trials are ``kind = trial``), stored in ``<run dir>/derived_models.parquet`` and the
DuckDB table ``derived_models``. ``best/`` is a soup only when the soup beats the best trial on
validation (never worse than the best trial); with ``refit`` it is the refit model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from .config import _Where

SOUP_MODES = ("greedy", "uniform", "none")
#: epochs of a trial kept (on the CPU) for its epoch soup
KEEP_EPOCHS = 3
#: trials that are candidates for the end-of-study trial soup
SOUP_TRIALS = 4
SOUP_FILE = "soup.safetensors"
WEIGHTS_FILE = "model.safetensors"

State = dict  # parameter name -> tensor


# -- config ---------------------------------------------------------------------------------
def check_search_keys(where: "_Where", se: dict[str, Any], base_dir: Path, task_type: Any) -> None:
    """Check ``[search] soup / ensemble / warm_start`` (``refit`` is a checked bool already);
    a value with a problem is recorded in ``where`` and dropped (the default stays)."""
    if "soup" in se and se["soup"] not in SOUP_MODES:
        from .registry import did_you_mean

        where.add("search", "soup", f"unknown soup {se['soup']!r}{did_you_mean(se['soup'], SOUP_MODES)}; "
                  f"choose one of {', '.join(SOUP_MODES)}")
        se.pop("soup")
    if "ensemble" in se and se["ensemble"] < 0:
        where.add("search", "ensemble", "must be 0 (off) or the number of top trials to ensemble")
        se.pop("ensemble")
    if "warm_start" in se:
        from .warmstart import check_warm_start

        se["warm_start"] = check_warm_start(where, se["warm_start"], base_dir, task_type)


# -- averaging ------------------------------------------------------------------------------
def compatible(a: State, b: State) -> bool:
    """Whether two states have the same parameter names and shapes (same architecture)."""
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def average_states(states: list[State]) -> State:
    """The uniform average of ``states`` (floating-point tensors, summed in float64 and cast back,
    so the average of identical states is exactly the state); integer buffers (step counters, position ids) are the first state's. Raises
    :class:`ValueError` when the states do not share names and shapes."""
    import torch

    if not states:
        raise ValueError("nothing to average")
    first = states[0]
    for other in states[1:]:
        if not compatible(first, other):
            raise ValueError("states with different parameter names or shapes cannot be averaged")
    out = {}
    for k, v in first.items():
        if v.is_floating_point():
            total = torch.zeros_like(v, dtype=torch.float64)
            for s in states:
                total += s[k].double()
            out[k] = (total / len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


@dataclass
class Soup:
    """An averaged state, the labels of its members (best first) and its validation metrics."""

    state: State
    members: list[Any]
    metrics: dict[str, float]
    tried: list[Any] = field(default_factory=list)


def better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def greedy_soup(ingredients: list[tuple[Any, State, dict[str, float] | None]],
                score: Callable[[State], dict[str, float]], metric: str, maximize: bool) -> Soup:
    """Greedy soup over ``ingredients`` = ``(label, state, metrics or None)``, best first: start
    from the first; add each next (compatible) one to the uniform average only if the
    validation ``metric`` of the average strictly improves. Never worse than the first
    ingredient on validation; exactly the first ingredient when nothing helps. ``score(state)``
    returns validation metrics; known metrics of an ingredient save a pass."""
    label, state, metrics = ingredients[0]
    soup = Soup(state, [label], metrics if metrics is not None else score(state), tried=[label])
    members = [state]
    for label, state, _ in ingredients[1:]:
        if not compatible(soup.state, state):
            continue
        soup.tried.append(label)
        candidate = average_states([*members, state])
        values = score(candidate)
        if better(values[metric], soup.metrics[metric], maximize):
            members.append(state)
            soup.state, soup.metrics = candidate, values
            soup.members.append(label)
    return soup


def uniform_soup(ingredients: list[tuple[Any, State, dict[str, float] | None]],
                 score: Callable[[State], dict[str, float]]) -> Soup:
    """The uniform average of the first ingredient and every later one compatible with it."""
    first = ingredients[0][1]
    chosen = [(label, s) for label, s, _ in ingredients if compatible(first, s)]
    state = average_states([s for _, s in chosen]) if len(chosen) > 1 else first
    labels = [label for label, _ in chosen]
    return Soup(state, labels, score(state) if len(chosen) > 1 else (ingredients[0][2] or score(state)),
                tried=labels)


def make_soup(mode: str, ingredients: list, score: Callable[[State], dict[str, float]],
              metric: str, maximize: bool) -> Soup:
    if mode == "uniform":
        return uniform_soup(ingredients, score)
    return greedy_soup(ingredients, score, metric, maximize)


# -- the epoch soup of one trial ------------------------------------------------------------
def epoch_soup(model: Any, task: Any, result: Any, val: dict, val_labels: Any, metrics: dict,
               metric: str, maximize: bool, device: Any, batch_size: int, collate: Callable,
               mode: str) -> Soup | None:
    """Average the best epochs of a finished :func:`~automl_pt.training.fine_tune` run
    (``result.top_states``) by ``mode``; ``None`` when fewer than two epochs were kept. The
    model's weights are left as the last one evaluated (the caller saves ``best_state``)."""
    from .training import evaluate

    if mode == "none" or len(result.top_states) < 2:
        return None

    def score(state: State) -> dict[str, float]:
        model.load_state_dict(state)
        return evaluate(model, task, val, val_labels, metrics, device, batch_size, collate)[0]

    ingredients = [(epoch, state, values) for epoch, values, state in result.top_states]
    return make_soup(mode, ingredients, score, metric, maximize)


def save_epoch_soup(soup: Soup, trial: Any, trial_dir: Path) -> None:
    """Record a trial's epoch soup: weights in ``soup.safetensors`` when it averages more than
    one epoch, and ``{"epochs", "tried", "metrics"}`` in the trial's ``epoch_soup`` attribute."""
    from .trial import save_state

    if len(soup.members) > 1:
        save_state(soup.state, trial_dir / SOUP_FILE)
    else:
        (trial_dir / SOUP_FILE).unlink(missing_ok=True)
    trial.set_user_attr("epoch_soup", {"epochs": [int(e) for e in soup.members],
                                       "tried": [int(e) for e in soup.tried], "metrics": soup.metrics})


# -- end of study ---------------------------------------------------------------------------
def kept_trials(config: Any) -> int:
    """How many top trials keep their weights until the end of the study."""
    keep = 1
    if config.search.soup != "none":
        keep = SOUP_TRIALS
    return max(keep, int(config.search.ensemble or 0))


class _Scorer:
    """Builds models of trials' configurations (one at a time, reused for every state loaded
    into it) and scores states on a split through the runner's caches. ``frozen``: the states
    are linear probes of the configuration's backbone (its weights untouched), so the cached
    frozen features are scored instead of running the backbone again."""

    def __init__(self, runner: Any, prepared: Any):
        self.runner, self.prepared = runner, prepared
        self.task = prepared.task.create()
        self._models: dict[str, Any] = {}

    def model(self, params: dict) -> tuple[Any, Any, Any, Any]:
        from .model import TrialModel

        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self._models:
            self._models.clear()
            info, backbone = self.runner.load_backbone(params["backbone"], params)
            prep = self.runner.preprocessor(backbone, params["backbone"])
            head = self.task.build_head(backbone.feature_dim, len(self.prepared.data.label_names), params)
            self._models[key] = (TrialModel(backbone, head).to(self.runner.device), prep, info, backbone)
        return self._models[key]

    def logits(self, params: dict, state: State, split: Any, frozen: bool = False) -> "torch.Tensor":
        from .training import predict_logits

        model, prep, info, backbone = self.model(params)
        model.load_state_dict(state)
        if frozen:
            data = {"features": self.runner.features(info, backbone, prep, split)}
            return predict_logits(model, data, self.runner.device, 256)
        return predict_logits(model, self.runner.encoded(prep, split), self.runner.device, 64, prep.collate)

    def metrics(self, logits: "torch.Tensor", split: Any) -> dict[str, float]:
        preds, probs = self.task.predict(logits)
        return {name: float(m.fn(split.labels, preds, probs)) for name, m in self.runner.metrics.items()}

    def score(self, params: dict, state: State, split: Any, frozen: bool = False) -> dict[str, float]:
        return self.metrics(self.logits(params, state, split, frozen), split)

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

            preds, probs = self.task.predict(torch.stack(outputs).mean(0))
        return {name: float(m.fn(split.labels, preds, probs)) for name, m in self.runner.metrics.items()}


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


def finish_study(study: Any, prepared: Any, ostudy: Any) -> dict[str, float] | None:
    """End of a study: epoch soup of the best trial, trial soup, ensemble, refit (as the study
    asks), export of the winner to ``best/`` and the rows of ``derived_models.parquet``.
    Returns the exported model's test metrics. The best trial's test score is measured too
    whenever a derived model is, so the rows compare on both splits."""
    import optuna

    from .export import export_best
    from .study import resolve_device
    from .trial import TrialRunner

    cfg = study.config
    runner = TrialRunner(cfg, prepared.host, prepared.task, prepared.data, prepared.space,
                         resolve_device(cfg.resources.devices), study.run_dir)
    best = ostudy.best_trial
    metric, maximize = prepared.metric, prepared.direction == "maximize"
    mode, k = cfg.search.soup, int(cfg.search.ensemble or 0)
    data = prepared.data
    done = sorted((t for t in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                   if (runner.trial_dir(t.number) / WEIGHTS_FILE).is_file()),
                  key=lambda t: t.value, reverse=maximize)
    best_path = runner.trial_dir(best.number) / WEIGHTS_FILE
    if mode == "none" and k < 2 and not cfg.search.refit or not best_path.is_file():
        _write_rows(study.run_dir, [])
        return export_best(study, prepared, ostudy, runner)   # its error names the missing weights

    scorer = _Scorer(runner, prepared)
    rows: list[dict[str, Any]] = []
    best_state = _load(best_path)
    best_val = best.user_attrs.get("metrics") or scorer.score(best.params, best_state, data.validation,
                                                              _probe(best.params))
    test_of = (lambda params, state, frozen: scorer.score(params, state, data.test, frozen)) \
        if data.test is not None else (lambda params, state, frozen: None)
    best_test = test_of(best.params, best_state, _probe(best.params))
    candidates = []   # (validation value, row, state, params) of what may be exported
    if mode != "none":
        info = best.user_attrs.get("epoch_soup") or {}
        soup_path = runner.trial_dir(best.number) / SOUP_FILE
        if len(info.get("epochs") or []) > 1 and soup_path.is_file():
            state = _load(soup_path)
            row = _row("soup", f"epochs {'+'.join(map(str, info['epochs']))} of trial {best.number}",
                       best, [f"{best.number}:{e}" for e in info["epochs"]], info["metrics"],
                       test_of(best.params, state, _probe(best.params)), metric, mode=mode, scope="epochs",
                       tried=info.get("tried"))
            rows.append(row)
            candidates.append((info["metrics"][metric], row, state, best.params))
        group = [t for t in done if t.params.get("backbone") == best.params.get("backbone")
                 and t.params.get("init", "pretrained") == best.params.get("init", "pretrained")
                 and t.params.get("init") != "random"][:SOUP_TRIALS]
        group = [best] + [t for t in group if t.number != best.number]
        frozen = all(_probe(t.params) for t in group)   # probes of one backbone: its features
        if len(group) > 1:
            ingredients = [(t.number, best_state if t is best else _load(runner.trial_dir(t.number) / WEIGHTS_FILE),
                            best_val if t is best else None) for t in group]
            soup = make_soup(mode, ingredients,
                             lambda state: scorer.score(best.params, state, data.validation, frozen),
                             metric, maximize)
            if len(soup.members) > 1 or mode == "uniform":
                row = _row("soup", f"trials {'+'.join(map(str, soup.members))}", best, soup.members,
                           soup.metrics, test_of(best.params, soup.state, frozen), metric, mode=mode,
                           scope="trials", tried=soup.tried)
                rows.append(row)
                candidates.append((soup.metrics[metric], row, soup.state, best.params))
    if k >= 2 and len(done) >= 2:
        top = done[:k]
        members = [(t.params, _load(runner.trial_dir(t.number) / WEIGHTS_FILE)) for t in top]
        val = scorer.ensemble(members, data.validation)
        test = scorer.ensemble(members, data.test) if data.test is not None else None
        rows.append(_row("ensemble", f"ensemble of trials {'+'.join(str(t.number) for t in top)}", best,
                         [t.number for t in top], val, test, metric,
                         validation_gain=val[metric] - best_val[metric],
                         test_gain=(test[metric] - best_test[metric]) if test and best_test else None))
    del scorer

    if cfg.search.refit:
        test, info = refit(study, prepared, ostudy, runner, best)
        row = _row("refit", f"refit of trial {best.number}", best, [best.number], best_val, test, metric,
                   **info)
        row["exported"] = True
        rows.append(row)
    else:
        winner = None
        for value, row, state, params in candidates:   # strictly better than the best trial only
            if better(value, best_val[metric], maximize) and (
                    winner is None or better(value, winner[0], maximize)):
                winner = (value, row, state, params)
        if winner is None:
            test = export_best(study, prepared, ostudy, runner)
        else:
            value, row, state, _ = winner
            test = export_best(study, prepared, ostudy, runner, state=state,
                               validation=json.loads(row["metrics"]),
                               source={"kind": row["kind"], "name": row["name"],
                                       "members": json.loads(row["members"])})
            row["exported"] = True
    trial_row = _row("trial", f"trial {best.number}", best, [best.number], best_val,
                     best_test if best_test is not None else None, metric)
    trial_row["exported"] = not any(r["exported"] for r in rows)
    _write_rows(study.run_dir, [trial_row, *rows] if rows else [])
    return test


def refit(study: Any, prepared: Any, ostudy: Any, runner: Any, best: Any
          ) -> tuple[dict[str, float] | None, dict[str, Any]]:
    """Retrain ``best``'s configuration on train + validation for its ``best_epoch`` epochs
    (same seed as the trial), export it to ``best/`` (with ``refit`` details in
    ``metrics.json``) and return ``(test metrics, details)``."""
    import numpy as np

    from .data import Split
    from .export import export_best

    data = prepared.data
    epochs = int(best.user_attrs.get("best_epoch") or best.params["epochs"])
    params = {**best.params, "epochs": epochs}
    combined = Split("train+validation", [*data.train.inputs, *data.validation.inputs],
                     np.concatenate([data.train.labels, data.validation.labels]),
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

    from .store import DERIVED_COLUMNS, DERIVED_FILE
    from .trial import atomic_write_parquet

    frame = pd.DataFrame(rows, columns=[c for c in DERIVED_COLUMNS if c != "study"])
    frame["base_trial"] = frame["base_trial"].astype("Int64")
    frame["exported"] = frame["exported"].astype("boolean")
    for c in ("value", "test_value"):
        frame[c] = frame[c].astype("float64")
    atomic_write_parquet(frame, run_dir / DERIVED_FILE)

