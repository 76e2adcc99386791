"""Search space assembly (plugin defaults + study overrides) and Optuna sampler / pruner setup."""

from __future__ import annotations

from typing import Any

from .builtin.search_space import STRATEGIES
from .config import StudyConfig, _Where
from .registry import Param, TaskInfo, did_you_mean


def build_search_space(config: StudyConfig, task: TaskInfo, host: Any) -> dict[str, Param]:
    """Merge every plugin's fragment (first-called plugin wins), add ``backbone`` as a
    categorical over ``search.backbones``, then apply ``[search.space]``."""
    fragments = host.hook.automl_pt_search_space(task=task, config=config)
    space: dict[str, Param] = {}
    for fragment in reversed(fragments):
        space.update(fragment or {})
    space = {"backbone": Param("backbone", "categorical", choices=tuple(config.search.backbones)),
             **space}
    where = _Where(config.source, config.source.read_text() if config.source else None)
    for name, spec in config.search.space.items():
        if name == "backbone":
            raise where.error("search.space", name, "set the candidates with search.backbones")
        if name not in space:
            raise where.error("search.space", name, f"unknown hyperparameter{did_you_mean(name, list(space))}; "
                              f"known: {', '.join(sorted(space))}")
        space[name] = _override(where, space[name], spec)
    if "strategy" in space:
        for s in space["strategy"].choices:
            if s not in STRATEGIES:
                raise where.error("search.space", "strategy",
                                  f"unknown strategy {s!r}{did_you_mean(str(s), STRATEGIES)}; "
                                  f"choose from {', '.join(STRATEGIES)}")
    if config.search.sampler == "grid":
        ranged = [p.name for p in space.values() if p.kind != "categorical"]
        if ranged:
            raise where.error("search", "sampler", "the grid sampler needs a finite list for every "
                              f"hyperparameter; give [search.space] lists or values for: {', '.join(ranged)}")
    return space


def _override(where: _Where, default: Param, spec: Any) -> Param:
    if isinstance(spec, list):
        return Param(default.name, "categorical", choices=tuple(spec))
    if not isinstance(spec, dict):
        return Param(default.name, "categorical", choices=(spec,))
    low, high = spec["low"], spec["high"]
    wants_int = default.kind == "int" or (
        default.kind == "categorical" and all(isinstance(c, int) for c in default.choices))
    if wants_int and not (isinstance(low, int) and isinstance(high, int)):
        raise where.error("search.space", default.name, f"{default.name} is an integer; low and high "
                          "must be integers")
    if default.kind == "categorical" and not wants_int:
        raise where.error("search.space", default.name, f"{default.name} is categorical "
                          f"{default.describe()}; give a list of choices instead of a range")
    kind = "int" if wants_int else "float"
    if kind == "int" and low < 1 and default.name in ("epochs", "batch_size"):
        raise where.error("search.space", default.name, "must be at least 1")
    return Param(default.name, kind, low, high, log=bool(spec.get("log", False)), step=spec.get("step"))


def suggest_params(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    return {name: param.suggest(trial) for name, param in space.items()}


def make_sampler(config: StudyConfig, space: dict[str, Param]):
    import optuna

    seed = config.study.seed
    name = config.search.sampler
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({n: list(p.choices) for n, p in space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(2, (config.study.trials or 10) // 3)))


def make_pruner(config: StudyConfig, space: dict[str, Param]):
    import optuna

    epochs = space.get("epochs")
    max_epochs = int(max(epochs.choices) if epochs and epochs.kind == "categorical" else
                     (epochs.high if epochs else 5))
    if config.search.pruner == "none" or max_epochs < 2:
        return optuna.pruners.NopPruner()
    if config.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
