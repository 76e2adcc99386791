"""Warm start from earlier studies: ``[search] warm_start = ["runs/a", "runs/b"]``.

Each entry is an earlier study's run directory (relative to the study file), for the same task.
When a study starts (no trial yet), the best completed trial of each earlier study is enqueued
(Optuna ``enqueue_trial``), in the order listed, before the sampler explores. Only the params
that fit this study's search space are kept (a name this space does not have, a backbone that is
not a candidate, a value outside a range); the others are dropped with a :class:`DataWarning`
naming them, and the sampler fills them in.

Earlier studies are read through their own Optuna storage, opened read-only (a SQLite file in
their run directory with ``mode=ro``; another RDB URL is only read): never written to.

``warm_start = "auto"`` finds the earlier studies itself: every other automl_pt run directory
next to this study's (the same parent folder, e.g. ``runs/``) that holds a study of the same task
whose best configuration uses one of this study's backbones, newest first, at most
:data:`AUTO_MAX` of them. Finding none is not an error (a first study has nothing to start from).

The earlier trials are not added to this study as finished trials: they would count towards
``[study] trials`` and could become the best trial without weights to export. Instead the
sampler sees them as history (``[search] warm_start_sampler``, on by default; not the grid
sampler): :func:`with_history` wraps it so that TPE, GP or random sampling reads the earlier
studies' finished trials (complete, and pruned with their intermediate values) before this
study's own, from a view of the study that lives in the worker process only
(:func:`earlier_history`, :class:`HistoryView`). An earlier trial is given to the sampler only
when every param it has that this study also searches fits this study's space (the others are
dropped: this study's space may lack a parameter the earlier one had), with this study's
distributions, and only from an earlier study that optimised the same metric in the same
direction (``study.json`` records both; the Optuna study's own direction is checked too).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec.search_keys import AUTO

if TYPE_CHECKING:
    from ..spec.config import StudyConfig, _Where
    from ..registry import Param


#: ``warm_start = "auto"`` starts from at most this many earlier studies (the newest)
AUTO_MAX = 3


def auto_run_dirs(run_dir: Path, task_type: str) -> list[Path]:
    """``warm_start = "auto"``: the other automl_pt run directories in ``run_dir``'s parent folder
    whose study is a ``task_type`` study with its SQLite storage present, newest ``study.json``
    first (the backbone check happens when their best configurations are read)."""
    from ..core.paths import STUDY_JSON_KEYS

    found: list[tuple[float, Path]] = []
    parent = Path(run_dir).resolve().parent
    for path in sorted(parent.iterdir()) if parent.is_dir() else []:
        meta_path = path / "study.json"
        if path == Path(run_dir).resolve() or not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or any(k not in meta for k in STUDY_JSON_KEYS):
            continue
        if meta.get("task") != task_type:
            continue
        url = str(meta["optuna_url"])
        if not url.startswith("sqlite:///") or not Path(url.removeprefix("sqlite:///")).is_file():
            continue
        found.append((meta_path.stat().st_mtime, path))
    return [p for _, p in sorted(found, key=lambda x: -x[0])]


def read_only_url(url: str) -> str:
    """A SQLite storage URL opened read-only (``mode=ro``): reading cannot write to it."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    return url


def earlier_best(run_dir: Path) -> tuple[str, dict[str, Any] | None]:
    """``(study name, params of its best completed trial or None)`` of an earlier run
    directory, read through its own storage without writing to it."""
    import optuna

    meta = json.loads((Path(run_dir) / "study.json").read_text())
    storage = optuna.storages.RDBStorage(read_only_url(str(meta["optuna_url"])),
                                         skip_table_creation=True)
    study = optuna.load_study(study_name=meta["study"], storage=storage)
    try:
        best = study.best_trial
    except ValueError:
        return meta["study"], None
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return meta["study"], dict(best.params)


def _is_choice(value: Any, choice: Any) -> bool:
    """``value`` is ``choice`` (of the same type; an int may stand for an equal float choice)."""
    return (value == choice and type(value) is type(choice) or
            (isinstance(choice, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
             and value == choice))


def fits(param: "Param", value: Any) -> bool:
    """Whether ``value`` is one this study's parameter can take."""
    if param.kind == "categorical":
        return any(_is_choice(value, c) for c in param.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if param.kind == "int" and int(value) != value:
        return False
    return float(param.low) <= value <= float(param.high)


def fitting_params(params: dict[str, Any], space: dict[str, "Param"]) -> tuple[dict[str, Any], list[str]]:
    """``(kept, dropped)``: the params this study's space can take, and the names of the others."""
    kept = {k: v for k, v in params.items() if k in space and fits(space[k], v)}
    return kept, [k for k in params if k not in kept]


def warm_start_trials(config: "StudyConfig", prepared: Any) -> list[tuple[dict[str, Any], dict]]:
    """``(params, user_attrs)`` of the best configuration of each ``[search] warm_start`` study,
    in order, a configuration already listed not repeated; params that do not fit this study's
    space are dropped with a :class:`DataWarning` naming them."""
    from ..errors import DataWarning

    enqueued: list = []
    auto = config.search.warm_start == AUTO
    run_dirs = (auto_run_dirs(config.run_dir, prepared.task.name) if auto
                else config.search.warm_start)
    for run_dir in run_dirs:
        if auto and len(enqueued) >= AUTO_MAX:
            break
        name, params = earlier_best(Path(run_dir))
        if auto and (params is None or not fits(prepared.space["backbone"], params.get("backbone"))):
            continue      # nothing to start from, or another backbone: not this study's kin
        if params is None:
            warnings.warn(f"[search] warm_start: study {name!r} ({run_dir}) has no completed trial; "
                          "nothing to start from", DataWarning, stacklevel=2)
            continue
        kept, dropped = fitting_params(params, prepared.space)
        if dropped:
            warnings.warn(f"[search] warm_start: from study {name!r} ({run_dir}), dropped params that "
                          f"do not fit this study's search space: "
                          f"{', '.join(f'{k}={params[k]!r}' for k in dropped)}", DataWarning, stacklevel=2)
        if kept and kept not in [p for p, _ in enqueued]:
            enqueued.append((kept, {"warm_start": str(run_dir)}))
    return enqueued


# -- the earlier trials as the sampler's history ----------------------------------------------
#: user attr of the sampler's copy of an earlier trial: the run directory it comes from
HISTORY_ATTR = "warm_start_history"


class _Distributions:
    """Stands in for an Optuna trial in :meth:`Param.suggest`: returns the distribution each
    ``suggest_*`` call would give a live trial (the same arguments, so equal distributions)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(choices=choices)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> Any:
        import optuna

        return optuna.distributions.IntDistribution(low=low, high=high, log=log, step=step)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(low, high, log=log, step=step)


def space_distributions(space: dict[str, "Param"]) -> dict[str, Any]:
    """The Optuna distribution of each parameter of ``space``, as its trials suggest it
    (:func:`automl_pt.engine.search.suggest_params`)."""
    return {name: param.suggest(_Distributions()) for name, param in space.items()}


def history_params(params: dict[str, Any], space: dict[str, "Param"],
                   distributions: dict[str, Any]) -> dict[str, Any] | None:
    """An earlier trial's ``params`` in this study's space (the names this space lacks dropped,
    each value as this space's distribution holds it: the choice itself, an int, a float), or
    ``None`` when a value does not fit (outside a range, off a step, not a choice) or nothing is
    left."""
    kept, dropped = fitting_params(params, space)
    if not kept or any(name in space for name in dropped):
        return None
    out: dict[str, Any] = {}
    for name, value in kept.items():
        param, dist = space[name], distributions[name]
        if param.kind == "categorical":
            value = next(c for c in param.choices if _is_choice(value, c))
        else:
            value = int(value) if param.kind == "int" else float(value)
        try:
            if not dist._contains(dist.to_internal_repr(value)):
                return None
        except (ValueError, TypeError):
            return None
        out[name] = value
    return out


def earlier_history(run_dir: Path, space: dict[str, "Param"], metric: str, direction: str
                    ) -> tuple[str, list[Any], int, str | None]:
    """``(study name, trials, left out, why none)``: the finished trials of the earlier study in
    ``run_dir`` as this study's sampler may read them (:func:`history_params`; complete trials
    with their value, pruned ones with their intermediate values; skipped duplicate probes, which
    measured nothing, left out), read through its own storage without writing to it. ``why
    none`` says why no trial is given: the earlier study optimised another metric or direction."""
    import optuna

    from .seeding import DUPLICATE_ATTR

    meta = json.loads((Path(run_dir) / "study.json").read_text())
    name = meta["study"]
    if meta.get("metric") != metric or meta.get("direction") != direction:
        return name, [], 0, (f"it optimised {meta.get('metric')} ({meta.get('direction')}), this "
                             f"study {metric} ({direction})")
    storage = optuna.storages.RDBStorage(read_only_url(str(meta["optuna_url"])),
                                         skip_table_creation=True)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        if len(study.directions) != 1 or study.direction.name.lower() != direction:
            return name, [], 0, f"its Optuna study is not a single {direction} objective"
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        finished = study.get_trials(deepcopy=False, states=done)
    finally:
        storage.remove_session()
        storage.engine.dispose()
    distributions = space_distributions(space)
    trials, left_out = [], 0
    for t in finished:
        params = history_params(t.params, space, distributions)
        if t.user_attrs.get(DUPLICATE_ATTR) is not None or params is None:
            left_out += 1
            continue
        pruned = t.state == optuna.trial.TrialState.PRUNED
        trials.append(optuna.trial.create_trial(
            state=t.state, value=None if pruned else t.value, params=params,
            distributions={k: distributions[k] for k in params},
            intermediate_values=dict(t.intermediate_values) if pruned else None,
            user_attrs={HISTORY_ATTR: str(run_dir)}))
    return name, trials, left_out, None


def history_run_dirs(config: "StudyConfig", prepared: Any) -> list[Path]:
    """The earlier run directories whose trials the sampler reads: ``[search] warm_start``'s, or
    for ``"auto"`` the sibling run directories (:func:`auto_run_dirs`) whose best configuration
    uses one of this study's backbones, at most :data:`AUTO_MAX`."""
    if config.search.warm_start != AUTO:
        return [Path(p) for p in config.search.warm_start]
    out: list[Path] = []
    for run_dir in auto_run_dirs(config.run_dir, prepared.task.name):
        if len(out) >= AUTO_MAX:
            break
        _, params = earlier_best(run_dir)
        if params is not None and fits(prepared.space["backbone"], params.get("backbone")):
            out.append(run_dir)
    return out


def sampler_history(config: "StudyConfig", prepared: Any) -> tuple[list[Any], list[dict]]:
    """``(trials, sources)``: the earlier studies' trials for this study's sampler, numbered
    from 0 in the order of :func:`history_run_dirs`, and per earlier study what was taken
    (``{"run_dir", "study", "trials", "left_out"}``; ``"skipped"`` with the reason where none
    was: another metric or direction, with a :class:`DataWarning`)."""
    from ..errors import DataWarning

    trials: list[Any] = []
    sources: list[dict] = []
    for run_dir in history_run_dirs(config, prepared):
        name, got, left_out, why = earlier_history(run_dir, prepared.space, prepared.metric,
                                                   prepared.direction)
        source = {"run_dir": str(run_dir), "study": name, "trials": len(got), "left_out": left_out}
        if why:
            source["skipped"] = why
            warnings.warn(f"[search] warm_start: the sampler does not read the trials of study "
                          f"{name!r} ({run_dir}): {why}", DataWarning, stacklevel=2)
        sources.append(source)
        trials += got
    for number, t in enumerate(trials):
        t.number = number
    return trials, sources


def _renumbered(trial: Any, offset: int) -> Any:
    """A shallow copy of ``trial`` numbered ``offset`` higher (its params, values and ids shared)."""
    out = copy.copy(trial)
    out.number = trial.number + offset
    return out


class HistoryView:
    """What the wrapped sampler sees of a study: the earlier trials (numbered ``0 .. n-1``)
    followed by the study's own (numbered ``n`` higher, so that numbers stay unique and
    increasing, as Optuna's search-space cache and TPE's ordering expect); everything else is
    the study itself (its storage, id, directions: what the sampler writes goes to the study)."""

    def __init__(self, study: Any, history: list[Any]):
        self._view_of = study
        self._history = history

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view_of, name)

    def _with_history(self, own: list[Any], states: Any, deepcopy: bool) -> list[Any]:
        offset = len(self._history)
        trials = ([t for t in self._history if states is None or t.state in states]
                  + [_renumbered(t, offset) for t in own])
        return copy.deepcopy(trials) if deepcopy else trials

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[Any]:
        own = self._view_of._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        return self._with_history(own, states, deepcopy)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        # the study's own get_trials: a Hyperband bracket's view of it filters its trials
        return self._with_history(self._view_of.get_trials(deepcopy=False, states=states), states, deepcopy)

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()


def with_history(sampler: Any, history: list[Any], sources: list[dict] = ()) -> Any:
    """``sampler`` (an Optuna sampler; not the grid) reading ``history`` (finished
    ``FrozenTrial`` s in this study's space, numbered ``0 .. n-1``: :func:`sampler_history`)
    before the study's own trials, when it infers its search space and samples; the history is
    never written to the study. ``before_trial`` / ``after_trial`` get the study itself. Wrap
    it before :func:`automl_pt.engine.seeding.probe_once`, which judges repeats on this study's
    trials only."""
    from .search import sampler_wrapper

    class WarmHistory(sampler_wrapper()):
        def __init__(self, base: Any, history: list[Any], sources: list[dict]):
            super().__init__(base)
            self.history = list(history)
            self.sources = list(sources)

        def __str__(self) -> str:
            studies = sum(1 for s in self.sources if s["trials"])
            n = len(self.history)
            return (f"WarmHistory({self.base}, {n} earlier trial{'' if n == 1 else 's'} from "
                    f"{studies} stud{'y' if studies == 1 else 'ies'})")

        def _view(self, study: Any, trial: Any) -> tuple[Any, Any]:
            return HistoryView(study, self.history), _renumbered(trial, len(self.history))

        def infer_relative_search_space(self, study, trial):
            return self.base.infer_relative_search_space(*self._view(study, trial))

        def sample_relative(self, study, trial, search_space):
            return self.base.sample_relative(*self._view(study, trial), search_space)

        def sample_independent(self, study, trial, name, distribution):
            return self.base.sample_independent(*self._view(study, trial), name, distribution)

    return WarmHistory(sampler, history, sources)
