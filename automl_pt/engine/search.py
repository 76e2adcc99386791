"""Search space assembly (plugin defaults + study overrides) and Optuna sampler / pruner setup."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

from ..spec.config import StudyConfig, _Where
from ..registry import Param, TaskInfo, did_you_mean


def build_search_space(config: StudyConfig, task: TaskInfo, host: Any,
                       where: _Where | None = None) -> dict[str, Param]:
    """Merge every plugin's fragment (first-called plugin wins; a parameter keeps the domain and the
    condition, ``Param.condition``, of the first fragment that gives one), add ``backbone`` as a categorical over
    ``search.backbones``, then apply ``[search.space]``, checking each fixed value, choice and
    range bound against the parameter's domain. Problems are recorded in ``where`` (the
    study's collector; without one, :class:`ConfigError` lists them); an override with a
    problem leaves the default in place."""
    collect = where is not None
    where = where if collect else _Where.of(config)
    fragments = [f or {} for f in host.hook.automl_pt_search_space(task=task, config=config)]
    space: dict[str, Param] = {}
    for fragment in reversed(fragments):
        space.update(fragment)
    for name, param in space.items():
        domain = next((f[name].domain for f in fragments if name in f and f[name].domain), None)
        when = next((f[name].condition for f in fragments if name in f and f[name].condition), None)
        space[name] = replace(param, domain=domain or param.inferred_domain(), condition=when)
    space = {"backbone": Param("backbone", "categorical", choices=tuple(config.search.backbones)),
             **space}
    for name, spec in config.search.space.items():
        if name == "backbone":
            where.add("search.space", name, "set the candidates with search.backbones")
        elif name not in space:
            where.add("search.space", name, f"unknown hyperparameter{did_you_mean(name, list(space))}; "
                      f"known: {', '.join(sorted(space))}")
        else:
            space[name] = replace(_override(where, space[name], spec), condition=space[name].condition)
    _apply_preset_space(config, space, where)
    _fit_training_length(config, space)
    for name, param in list(space.items()):  # a condition no choice can meet: never suggested
        other = space.get(param.condition[0]) if param.condition else None
        if other is not None and other.kind == "categorical" and not any(
                c in param.condition[1] for c in other.choices):
            del space[name]
    strategy = space.get("strategy")
    if config.search.baseline and strategy is not None and strategy.kind == "categorical" \
            and "linear_probe" not in strategy.choices \
            and not (strategy.domain and strategy.domain.problem("linear_probe")):
        # [search] baseline = true: the probe is trial 0 (automl_pt.engine.seeding), so it is a choice
        space["strategy"] = replace(strategy, choices=("linear_probe", *strategy.choices))
    if config.search.sampler == "grid":
        ranged = [p.name for p in space.values() if p.kind != "categorical"]
        if ranged:
            where.add("search", "sampler", "the grid sampler needs a finite list for every "
                      f"hyperparameter; give [search.space] lists or values for: {', '.join(ranged)}")
    if not collect:
        where.check()
    return space


def _fit_training_length(config: StudyConfig, space: dict[str, Param]) -> None:
    """A study that fixes ``epochs`` to one value (``3`` or ``[3]``; and leaves ``min_steps``) trains exactly
    that many epochs: its ``min_steps`` becomes 0. A searched ``epochs`` (a range or a list) is
    stretched to ``min_steps`` optimizer steps on small data (automl_pt.train.training.planned_epochs)."""
    fixed = config.search.space.get("epochs")
    if isinstance(fixed, list) and len(fixed) == 1:
        fixed = fixed[0]
    if "min_steps" in space and "min_steps" not in config.search.space and fixed is not None \
            and not isinstance(fixed, (dict, list)):
        space["min_steps"] = replace(space["min_steps"], kind="categorical", choices=(0,))


def _apply_preset_space(config: StudyConfig, space: dict[str, Param], where: _Where) -> None:
    """The ``[study] preset``'s entries, for the parameters this search space has (a plugin's
    task may lack one); a value the parameter's domain refuses is reported at ``[study] preset``."""
    for name, spec in config.search.preset_space.items():
        if name in space:
            probe = _Where(None, None)
            space[name] = _override(probe, space[name], spec)
            for problem in probe.problems:
                where.add("study", "preset", f"preset {config.study.preset!r} sets {name}: "
                          f"{problem.split(': ', 2)[-1]}")


def _override(where: _Where, default: Param, spec: Any) -> Param:
    """The parameter as ``[search.space]`` sets it (a list, a value or a range), or ``default``
    when the setting has a problem (recorded in ``where``)."""
    domain = default.domain or default.inferred_domain()
    name = default.name
    if not isinstance(spec, dict):
        choices = spec if isinstance(spec, list) else [spec]
        bad = [f"{problem}" for c in choices if (problem := domain.problem(c))]
        if bad:
            where.add("search.space", name, "; ".join(bad))
            return default
        return Param(name, "categorical", choices=tuple(choices), domain=domain,
                     condition=default.condition)
    if domain.kind == "choice":
        where.add("search.space", name, f"{name} is categorical ({domain.describe()}); give a "
                  "list of choices instead of a range")
        return default
    low, high = spec["low"], spec["high"]
    if domain.kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        where.add("search.space", name, f"{name} is an integer; low and high must be integers")
        return default
    bad = [f"{end} {problem}" for end, v in (("low", low), ("high", high)) if (problem := domain.problem(v))]
    if bad:
        where.add("search.space", name, "; ".join(bad))
        return default
    # a range keeps the default's scale unless it says otherwise: learning rates stay log-scale
    log = bool(spec.get("log", default.log and default.kind != "categorical"))
    if log and low <= 0:
        where.add("search.space", name, f"{name} is searched on a log scale: low must be > 0, got "
                  f"{low} (or set log = false)")
        return default
    return Param(name, domain.kind, low, high, log=log, step=spec.get("step"), domain=domain,
                 condition=default.condition)


def suggest_params(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """The trial's parameters; a conditional one (``Param.condition``) only where its condition
    holds. ``strategy`` is drawn after the other unconditional parameters, so that the sampler
    knows a probe's features when it draws it (:func:`automl_pt.engine.seeding.probe_once`)."""
    free = [name for name, p in space.items() if p.condition is None]
    free = [n for n in free if n != "strategy"] + [n for n in free if n == "strategy"]
    params = {name: space[name].suggest(trial) for name in free}
    for name, p in space.items():
        if p.condition is not None and p.condition[0] in params and params[p.condition[0]] in p.condition[1]:
            params[name] = p.suggest(trial)
    return params


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


@lru_cache(maxsize=1)
def sampler_wrapper() -> type:
    """The base class of samplers that wrap another (``base``): every call goes to ``base``
    unless the subclass overrides it (:func:`automl_pt.engine.seeding.probe_once`,
    :func:`automl_pt.engine.warmstart.with_history`). Built on first use: optuna is imported
    only then."""
    import optuna

    class SamplerWrapper(optuna.samplers.BaseSampler):
        def __init__(self, base: Any):
            self.base = base

        def infer_relative_search_space(self, study, trial):
            return self.base.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.base.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, name, distribution):
            return self.base.sample_independent(study, trial, name, distribution)

        def before_trial(self, study, trial):
            self.base.before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            self.base.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.base.reseed_rng()

    return SamplerWrapper


def make_pruner(config: StudyConfig, space: dict[str, Param]):
    import optuna

    epochs = space.get("epochs")
    max_epochs = int(max(epochs.choices) if epochs and epochs.kind == "categorical" else
                     (epochs.high if epochs else 5))
    if config.search.pruner == "none" or max_epochs < 2:
        return optuna.pruners.NopPruner()
    if config.search.pruner == "auto":
        from .pruning import StrategyMedianPruner

        return StrategyMedianPruner()
    if config.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
