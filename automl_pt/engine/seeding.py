"""The trials a study runs before its sampler explores (Optuna ``enqueue_trial``).

1. The **baseline probe**: one ``linear_probe`` trial per backbone, fitted in closed form on the
   cached frozen features (:mod:`automl_pt.train.probe`), for classification studies whose strategy
   choices include ``linear_probe`` (``[search] baseline = true`` adds it where the study's
   ``[search.space] strategy`` leaves it out; ``baseline = false`` skips the probe).
2. One **known-good configuration per strategy** of the space
   (:data:`KNOWN_GOOD`, values clipped into the study's space)
   on the first backbone (``[search] known_good = false`` skips them).

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
    "partial": {"top_layers": 2, "learning_rate": 5e-4, "head_lr_multiplier": 10.0},
    # parameter-efficient strategies (automl_pt.train.adapters); opt-in, enqueued when in the space
    "lora": {"learning_rate": 1e-3, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05,
             "lora_targets": "default", "head_lr_multiplier": 10.0, "layer_decay": 1.0},
    "ia3": {"learning_rate": 1e-3, "head_lr_multiplier": 10.0, "layer_decay": 1.0},
    "bitfit": {"learning_rate": 1e-3, "head_lr_multiplier": 10.0, "layer_decay": 1.0},
}

SEEDED_ATTR = "seeded"
PROBE = "linear_probe"


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
