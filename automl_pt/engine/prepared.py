"""A prepared study, and what a worker process needs to prepare one of its own.

:func:`prepare_study` loads the plugins, checks the task, metric, backbones and search space
against them and reads the data: a :class:`PreparedStudy`. The driver's
:class:`~automl_pt.engine.study.Study` calls it once; it hands its worker processes a
:class:`WorkerPayload` (the study file or its raw dict), from which each worker prepares the same
study and opens the same Optuna study (:func:`open_optuna_study`). Workers and the scheduler
build from these, never from ``Study``, which sits above them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AutomlError, ConfigError, PluginNotFoundError
from ..plugins import PluginHost, create_plugin_host, resolve_backbone
from ..registry import TaskInfo, did_you_mean
from ..spec.config import StudyConfig, _Where, config_from_dict, load_config
from ..core.paths import OPTUNA_FILE


@dataclass
class PreparedStudy:
    """A study file checked against the plugins and its data read: what trials are built from.
    The driver prepares it once (:meth:`automl_pt.engine.study.Study.prepare`); each worker
    process prepares its own from the study's :class:`WorkerPayload`."""

    host: PluginHost
    task: TaskInfo
    metric: str
    direction: str
    space: dict
    data: Any
    pretrain: Any = None   # automl_pt.engine.pretrain.PretrainPlan when the study has [pretrain]


@dataclass(frozen=True)
class WorkerPayload:
    """What a worker process needs to rebuild a study: the study file and its overrides
    (``source``, standalone workers) or the study's raw dict with data given as files
    (``raw``, :func:`worker_payload`), and the threads its slot may use. Plain data: it
    travels to ``spawn``-ed processes."""

    raw: dict | None = None
    base_dir: str = "."
    source: str | None = None
    overrides: dict | None = None
    threads: int | None = None

    def config(self) -> StudyConfig:
        if self.source:
            return load_config(self.source, overrides=self.overrides or None)
        return config_from_dict(self.raw, base_dir=self.base_dir)


def study_host(cfg: StudyConfig, where: _Where) -> PluginHost:
    """The plugin host of a study: installed plugins plus the modules ``[study] plugins`` names
    (one that cannot be imported is a problem of the study file, at its line)."""
    try:
        return create_plugin_host(extra=cfg.study.plugins, base_dir=cfg.base_dir)
    except PluginNotFoundError as exc:
        where.add("study", "plugins", str(exc))
        return create_plugin_host()


def check_against_plugins(cfg: StudyConfig, host: PluginHost, where: _Where
                          ) -> tuple[TaskInfo | None, str, str, dict]:
    """Check what needs the plugins: the task, its metric and columns, the backbones (the
    task's defaults where ``[search] backbones`` is left out, filled into ``cfg``) and the
    search space. Records every problem in ``where``; returns ``(task, metric, direction,
    space)`` with ``task = None`` when the task is unknown."""
    from .search import build_search_space

    registry = host.registry
    if cfg.task.type not in registry.tasks:
        if cfg.task.type:
            where.add("task", "type", f"unknown task {cfg.task.type!r}"
                      f"{did_you_mean(cfg.task.type, list(registry.tasks))}; installed tasks: "
                      f"{', '.join(sorted(registry.tasks)) or 'none'}{host.failure_hint()}")
        return None, "", "", {}
    task = registry.tasks[cfg.task.type]
    metric = cfg.study.metric or task.default_metric
    direction = cfg.study.direction or "maximize"
    if metric not in task.metrics and metric not in registry.metrics:
        known = sorted(set(task.metrics) | set(registry.metrics))
        where.add("study", "metric", f"unknown metric {metric!r}{did_you_mean(metric, known)}; "
                  f"task {task.name!r} computes {', '.join(task.metrics)}; registered "
                  f"metrics: {', '.join(known)}")
    elif not cfg.study.direction:
        direction = "maximize" if registry.metrics[metric].greater_is_better else "minimize"
    for key in cfg.data.columns:
        if key not in task.input_keys and key != getattr(task, "target_key", "label_column"):
            where.add("data", key, f"unknown key for task {task.name!r}"
                      f"{did_you_mean(key, list(task.input_keys))}; it reads "
                      f"{', '.join(task.input_keys)}")
    if not cfg.search.backbones and "backbones" not in (cfg.raw.get("search") or {}):
        cfg.search.backbones = list(task.default_backbones)
        if not cfg.search.backbones:
            where.add("search", "backbones", f"task {task.name!r} has no default backbones; "
                      "list the candidates (catalog names: automl-pt backbones)")
    for name in cfg.search.backbones:
        if resolve_backbone(name, task.modality, host) is None:
            names = [b.name for b in registry.list_backbones(modality=task.modality)]
            where.add("search", "backbones", f"unknown {task.modality} backbone {name!r}"
                      f"{did_you_mean(name, names)}; use a catalog name "
                      f"({', '.join(names) or 'none installed'}), a hub name such as "
                      f"hf:ORG/NAME, or a local directory{host.failure_hint()}")
    space = build_search_space(cfg, task, host, where)
    strategy = space.get("strategy")
    if strategy is not None and "setfit" in (strategy.choices or ()) and task.kind != "classification":
        where.add("search.space", "strategy", f"'setfit' trains on pairs of examples of one class "
                  f"and another: it needs a single-label classification task, and {task.name!r} is "
                  f"{task.kind}")
    return task, metric, direction, space


def prepare_study(cfg: StudyConfig, host: PluginHost | None = None) -> PreparedStudy:
    """Load plugins (``host`` when given), check task / metric / backbones / search space, read
    and check the data. Raises :class:`ConfigError` (every problem of the study file at once),
    :class:`DataError`, :class:`BackboneError`."""
    from ..spec.data import load_study_data

    where = _Where.of(cfg)
    host = host or study_host(cfg, where)
    task, metric, direction, space = check_against_plugins(cfg, host, where)
    plan = None
    if cfg.pretrain is not None and task is not None:  # objective checked up front
        from .pretrain import PretrainPlan

        plan = PretrainPlan(cfg, host, task)
        try:
            plan.objective()
        except ConfigError as exc:
            where.problems.extend(exc.problems)
    where.check()
    registry = host.registry
    data = load_study_data(cfg, task, registry)
    floor = registry.metrics[metric].min_classes if metric in registry.metrics else 0
    if floor and len(data.label_names) <= floor:
        raise where.error("study", "metric", f"{metric} needs more than {floor} classes; the data "
                          f"has {len(data.label_names)}")
    _search_class_weights(cfg, task, data, space)
    prepared = PreparedStudy(host, task, metric, direction, space, data)
    if plan is not None:  # the unlabeled data checked up front
        from .pretrain import derived_options

        plan.split()
        plan.derived = derived_options(host, task, data.train.inputs)   # as the trials get them
        prepared.pretrain = plan
    return prepared


def _search_class_weights(cfg: StudyConfig, task: TaskInfo, data: Any, space: dict) -> None:
    """Imbalanced classes (the most frequent at least 3x the rarest, see
    :meth:`automl_pt.tasks.Task.imbalanced`): search ``class_weights`` over none / balanced,
    unless the study file sets it. Balanced data keeps the fixed ``"none"`` of the default space."""
    from ..registry import Param

    param = space.get("class_weights")
    user = {**cfg.search.preset_space, **cfg.search.space}
    if param is None or "class_weights" in user:
        return
    if task.create().imbalanced(data.train.labels, data.label_names):
        space["class_weights"] = Param("class_weights", "categorical", choices=("none", "balanced"),
                                       domain=param.domain)


def worker_payload(cfg: StudyConfig, prepared: PreparedStudy) -> WorkerPayload:
    """What a worker process needs to rebuild the study of ``cfg``. Data given as Python objects
    is written once to ``<run dir>/worker-data/*.parquet`` for the workers to read."""
    import copy

    from ..spec.data import read_frame

    raw = copy.deepcopy({k: v for k, v in cfg.raw.items() if k != "data"})
    data = dict(cfg.raw.get("data", {}))
    folder = cfg.run_dir / "worker-data"
    for split in ("train", "validation", "test"):
        value = getattr(cfg.data, split)
        if value is None:
            continue
        if isinstance(value, (str, Path)):
            data[split] = str(value)
        else:
            folder.mkdir(exist_ok=True)
            frame = read_frame(value, prepared.host.registry, {}, f"data.{split}")
            path = folder / f"{split}.parquet"
            frame.to_parquet(path, index=False)
            data[split] = str(path)
    raw["data"] = data
    raw.setdefault("storage", {})["dir"] = str(cfg.run_dir)
    base_dir = str(cfg.source.parent) if cfg.source else "."
    return WorkerPayload(raw=raw, base_dir=base_dir)


def optuna_url(cfg: StudyConfig) -> str:
    if cfg.storage.optuna == "sqlite":
        return f"sqlite:///{(cfg.run_dir / OPTUNA_FILE).resolve()}"
    return cfg.storage.optuna


def open_optuna_study(cfg: StudyConfig, prepared: PreparedStudy, heartbeat: bool = True):
    """The study's Optuna study (created or loaded), with heartbeats and one retry of a trial
    whose worker died when ``heartbeat``. Its sampler reads the ``[search] warm_start`` studies'
    trials as history (:func:`automl_pt.engine.warmstart.with_history`, unless
    ``warm_start_sampler = false``) and draws each closed-form probe once
    (:func:`automl_pt.engine.seeding.probe_once`, wrapped outside it)."""
    import optuna

    from .search import make_pruner, make_sampler

    import warnings

    kwargs = {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if heartbeat:
        kwargs = dict(heartbeat_interval=cfg.storage.heartbeat_interval,
                      grace_period=cfg.storage.grace_period,
                      heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    try:
        storage = optuna.storages.RDBStorage(optuna_url(cfg), **kwargs)
    except ImportError as exc:
        raise ConfigError(f"[storage] optuna = {cfg.storage.optuna!r} needs a database "
                          "driver: pip install 'automl-pt[postgres]' (psycopg)") from exc
    except Exception as exc:
        if "sqlalchemy" not in type(exc).__module__:
            raise
        raise AutomlError(f"cannot open the Optuna storage {redact(optuna_url(cfg))}: "
                          f"{str(exc).splitlines()[0]}") from exc
    from .seeding import fits_each_probe_once, probe_once

    sampler = make_sampler(cfg, prepared.space)
    if cfg.search.warm_start and cfg.search.warm_start_sampler and cfg.search.sampler != "grid":
        from .warmstart import sampler_history, with_history

        # the earlier studies' trials, read once per process: history, never this study's trials
        history, sources = sampler_history(cfg, prepared)
        if history:
            sampler = with_history(sampler, history, sources)
    if fits_each_probe_once(cfg, prepared.task):
        sampler = probe_once(sampler)   # each closed-form probe is fitted once
    return optuna.create_study(
        study_name=cfg.study.name, storage=storage, load_if_exists=True,
        direction=prepared.direction, sampler=sampler,
        pruner=make_pruner(cfg, prepared.space))


def redact(url: str) -> str:
    """Hide the password of an RDB URL in messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
