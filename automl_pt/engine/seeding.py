"""The trials a study runs before its sampler explores (Optuna ``enqueue_trial``).

1. The **baseline probe**: one ``linear_probe`` trial per backbone, fitted in closed form on the
   cached frozen features (:mod:`automl_pt.train.probe`), for classification studies whose strategy
   choices include ``linear_probe`` (``[search] baseline = true`` adds it where the study's
   ``[search.space] strategy`` leaves it out; ``baseline = false`` skips the probe).
2. One **known-good configuration per strategy** of the space
   (:data:`KNOWN_GOOD`, values clipped into the study's space)
   on the first backbone (``[search] known_good = false`` skips them).

The closed-form probe reads nothing of a trial's parameters but its features (``backbone``,
``init``, input sizes, pooling...): a later ``linear_probe`` trial that differs from a finished
probe only in :data:`PROBE_IGNORES` would fit the same model again. Such a trial is not run: it is
pruned at once with ``duplicate_of`` = the earlier trial (:func:`duplicate_probe`), which tells the
sampler that this corner of the space is spent, and it does not count toward ``[study] trials``
(:func:`counted_trials`), so the budget goes to fine-tuning. At most ``trials`` duplicates are
forgiven, so a space with nothing else to try still ends.

They are enqueued once, when the study is new: a resumed study never enqueues again (the Optuna
study's user attr ``seeded`` records it). A ``trials`` budget smaller than the plan keeps its
head. The grid sampler walks its grid and gets none.
"""

from __future__ import annotations

from typing import Any

from ..registry import Param

#: One configuration per strategy that works on most backbones and data sets; a study enqueues
#: one trial of each strategy in its space (values clipped into the space) before the sampler
#: explores (:func:`enqueue_seed_trials`). A new strategy adds its entry here.
KNOWN_GOOD: dict[str, dict] = {
    # fitted by L-BFGS on the cached features (automl_pt.train.probe): the rest barely matters
    "linear_probe": {"learning_rate": 1e-3, "epochs": 1, "batch_size": 32, "dropout": 0.0,
                     "label_smoothing": 0.0, "weight_decay": 1e-4, "warmup_ratio": 0.0},
    "full": {"learning_rate": 1e-4, "head_lr_multiplier": 10.0, "layer_decay": 0.9,
             "weight_decay": 0.01, "warmup_ratio": 0.1, "epochs": 5, "batch_size": 16,
             "dropout": 0.1, "label_smoothing": 0.1, "schedule": "cosine"},
    "freeze_then_unfreeze": {"learning_rate": 2e-4, "head_lr_multiplier": 10.0, "layer_decay": 0.8,
                             "weight_decay": 0.01, "warmup_ratio": 0.1, "epochs": 5,
                             "batch_size": 16, "dropout": 0.1, "label_smoothing": 0.1,
                             "schedule": "cosine"},
    # top two blocks on cached activations, at a larger learning rate than full fine-tuning
    # wants (docs/performance.md: minilm-l6 on fortunes, 3 epochs: 0.863 vs 0.656 at 1e-4;
    # clipped into the study's learning-rate range)
    # SetFit's defaults: a small learning rate, one pass over 20 pairs per example
    "setfit": {"learning_rate": 2e-5, "batch_size": 16, "setfit_pairs": 20, "warmup_ratio": 0.1},
    "partial": {"top_layers": 2, "learning_rate": 5e-4, "head_lr_multiplier": 10.0},
    # parameter-efficient strategies (automl_pt.train.adapters); opt-in, enqueued when in the space
    "lora": {"learning_rate": 1e-3, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05,
             "lora_targets": "default", "head_lr_multiplier": 10.0, "layer_decay": 1.0},
    "ia3": {"learning_rate": 1e-3, "head_lr_multiplier": 10.0, "layer_decay": 1.0},
    "bitfit": {"learning_rate": 1e-3, "head_lr_multiplier": 10.0, "layer_decay": 1.0},
}

SEEDED_ATTR = "seeded"
PROBE = "linear_probe"
#: user attr of a ``linear_probe`` trial skipped because an earlier trial fitted the same probe
DUPLICATE_ATTR = "duplicate_of"
#: parameters the closed-form probe does not read (training-only): two ``linear_probe`` trials
#: equal in everything else fit the same model. A parameter not listed here (a plugin's, say)
#: is taken to matter.
PROBE_IGNORES = frozenset({
    "learning_rate", "head_lr_multiplier", "layer_decay", "weight_decay", "warmup_ratio",
    "epochs", "batch_size", "dropout", "label_smoothing", "schedule", "min_steps", "patience",
    "mixup", "augmentation_strength", "top_layers", "class_weights",
    "lora_rank", "lora_alpha", "lora_dropout", "lora_targets",
})


def probe_key(params: dict[str, Any]) -> tuple:
    """What determines a closed-form probe: the parameters it reads."""
    return tuple(sorted((k, repr(v)) for k, v in params.items() if k not in PROBE_IGNORES))


def duplicate_probe(trials: list[Any], params: dict[str, Any], number: int) -> int | None:
    """The number of a complete ``linear_probe`` trial among ``trials`` (Optuna frozen trials)
    that fitted the probe ``params`` would fit again, else ``None``."""
    if params.get("strategy") != PROBE:
        return None
    key = probe_key(params)
    for t in trials:
        if (t.number != number and t.state.name == "COMPLETE" and t.params.get("strategy") == PROBE
                and not t.user_attrs.get(DUPLICATE_ATTR) and probe_key(t.params) == key):
            return t.number
    return None


def _replacement(trials: list[Any], choices: tuple, strategy: str = PROBE) -> Any:
    """The strategy to run instead of a repeated probe: the least-tried other choice (the
    earliest listed on a tie)."""
    others = [c for c in choices if c != strategy]
    if not others:
        return strategy
    tried = {c: sum(1 for t in trials if t.params.get("strategy") == c) for c in others}
    return min(others, key=lambda c: (tried[c], others.index(c)))


def fits_each_probe_once(config: Any, task_info: Any) -> bool:
    """Whether a study skips repeated probes (:func:`probe_once`, :func:`duplicate_probe`): its
    task fits ``linear_probe`` in closed form (the training parameters do not matter), and its
    sampler is not a grid (a grid runs each point the study file lists)."""
    return config.search.sampler != "grid" and bool(
        getattr(task_info.create(), "closed_form_probe", False))


def probe_once(sampler: Any) -> Any:
    """``sampler`` (an Optuna sampler) drawing each closed-form probe once: when it draws
    ``strategy = "linear_probe"`` and a finished trial already fitted that probe (the same
    parameters but :data:`PROBE_IGNORES`, judged on those drawn before ``strategy``: see
    :func:`automl_pt.engine.search.suggest_params`), the trial gets the least-tried other
    strategy instead. TPE alone keeps drawing the probe once it leads, and every repeat would
    fit the same model; a space with ``linear_probe`` alone keeps it (the repeats are then
    skipped by the trial, :func:`duplicate_probe`)."""
    from .search import sampler_wrapper

    class ProbeOnce(sampler_wrapper()):
        def __str__(self) -> str:
            return f"ProbeOnce({self.base})"

        def sample_relative(self, study, trial, search_space):
            params = self.base.sample_relative(study, trial, search_space)
            if params.get("strategy") == PROBE:
                done = study.get_trials(deepcopy=False)
                if duplicate_probe(done, {**trial.params, **params}, trial.number) is not None:
                    params = {**params, "strategy": _replacement(
                        done, search_space["strategy"].choices)}
            return params

        def sample_independent(self, study, trial, name, distribution):
            value = self.base.sample_independent(study, trial, name, distribution)
            if name == "strategy" and value == PROBE:
                done = study.get_trials(deepcopy=False)
                if duplicate_probe(done, {**trial.params, name: value}, trial.number) is not None:
                    value = _replacement(done, tuple(distribution.choices))
            return value

    return ProbeOnce(sampler)


def counted_trials(trials: list[Any], target: int | None) -> int:
    """Finished (complete or pruned) trials that count toward ``[study] trials = target``:
    skipped duplicate probes do not, up to ``target`` of them (then each counts, so a space
    whose every draw repeats a probe still ends)."""
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    duplicates = sum(1 for t in finished if t.user_attrs.get(DUPLICATE_ATTR) is not None)
    return len(finished) - duplicates + max(0, duplicates - (target or 0))


def clip_value(param: Param, value: Any) -> Any:
    """``value`` moved into ``param``'s range (ints rounded, steps snapped), the nearest numeric
    choice of a categorical, or ``None`` when no choice fits."""
    if param.kind == "categorical":
        if value in param.choices:
            return value
        numeric = [c for c in param.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric:
            return min(numeric, key=lambda c: abs(c - value))
        return None
    low, high = float(param.low), float(param.high)
    v = min(max(float(value), low), high)
    if param.step:
        v = min(low + round((v - low) / float(param.step)) * float(param.step), high)
    return int(round(v)) if param.kind == "int" else v


def configuration(strategy: str, space: dict[str, Param], backbone: str) -> dict[str, Any]:
    """The known-good parameters of ``strategy`` that exist in ``space``, clipped into it, with
    ``strategy`` and ``backbone`` set (``init = "pretrained"`` where the space searches init)."""
    params: dict[str, Any] = {}
    for name, value in KNOWN_GOOD.get(strategy, {}).items():
        if name in space:
            clipped = clip_value(space[name], value)
            if clipped is not None:
                params[name] = clipped
    init = space.get("init")
    if init is not None and "pretrained" in init.choices:
        params["init"] = "pretrained"
    params.update(strategy=strategy, backbone=backbone)
    return params


def plan(config: Any, space: dict[str, Param], classification: bool,
         warm: list[tuple[dict, dict]] = ()) -> list[tuple[dict, dict]]:
    """``(params, user_attrs)`` of the trials to enqueue, in order (see the module docstring):
    the probe, then ``warm`` (the ``[search] warm_start`` studies' best configurations,
    :mod:`automl_pt.engine.warmstart`), then the known-good configurations."""
    if config.search.sampler == "grid":
        return []
    strategy = space.get("strategy")
    choices = tuple(strategy.choices) if strategy is not None and strategy.kind == "categorical" else ()
    backbones = list(space["backbone"].choices)
    out: list[tuple[dict, dict]] = []
    baseline = config.search.baseline is not False and classification and PROBE in choices
    if baseline:
        out += [(configuration(PROBE, space, b), {SEEDED_ATTR: "baseline"}) for b in backbones]
    out += list(warm)
    if config.search.known_good:
            out += [(configuration(s, space, backbones[0]), {SEEDED_ATTR: "known_good"})
                for s in choices if s in KNOWN_GOOD and not (baseline and s == PROBE)]
    if config.study.trials:
        out = out[:config.study.trials]
    return out


def enqueue_seed_trials(ostudy: Any, config: Any, space: dict[str, Param], task: Any,
                        warm: Any = None) -> list[dict]:
    """Enqueue :func:`plan`'s trials into a new Optuna study; returns their params (empty for a
    study that has trials already or was seeded before)."""
    if ostudy.user_attrs.get(SEEDED_ATTR) is not None or ostudy.get_trials(deepcopy=False):
        return []
    # every task with a closed-form probe (classification, regression, multi-label) starts with it
    trials = plan(config, space, bool(getattr(task, "closed_form_probe", False)), warm() if warm else ())
    for params, attrs in trials:
        ostudy.enqueue_trial(params, user_attrs=attrs)
    ostudy.set_user_attr(SEEDED_ATTR, len(trials))
    return [p for p, _ in trials]
