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
``[study] trials`` and could become the best trial without weights to export.
"""

from __future__ import annotations

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


def fits(param: "Param", value: Any) -> bool:
    """Whether ``value`` is one this study's parameter can take."""
    if param.kind == "categorical":
        return any(value == c and type(value) is type(c) or
                   (isinstance(c, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
                    and value == c) for c in param.choices)
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
