"""The ``[search]`` keys whose check reads more than the value: ``soup`` (a mode), ``ensemble`` and
``warm_start`` (earlier run directories on disk). Used by :mod:`automl_pt.spec.config`; the
soups and the warm start themselves run in :mod:`automl_pt.engine`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.paths import STUDY_JSON_KEYS
from ..registry import did_you_mean

if TYPE_CHECKING:
    from .config import _Where

SOUP_MODES = ("greedy", "uniform", "none")
#: ``[search] warm_start = "auto"``: the run directories are found when the study starts
AUTO = "auto"


def check_search_keys(where: "_Where", se: dict[str, Any], base_dir: Path, task_type: Any) -> None:
    """Check ``[search] soup / ensemble / distill / warm_start / warm_start_sampler`` (``refit`` is
    a checked bool already); a value with a problem is recorded in ``where`` and dropped (the
    default stays)."""
    if "soup" in se and se["soup"] not in SOUP_MODES:
        where.add("search", "soup", f"unknown soup {se['soup']!r}{did_you_mean(se['soup'], SOUP_MODES)}; "
                  f"choose one of {', '.join(SOUP_MODES)}")
        se.pop("soup")
    if "ensemble" in se and se["ensemble"] < 0:
        where.add("search", "ensemble", "must be 0 (off) or the number of top trials to ensemble")
        se.pop("ensemble")
    if se.get("distill") and int(se.get("ensemble") or 0) < 2:
        where.add("search", "distill", "needs an ensemble to learn from: set [search] ensemble = k "
                  "(k >= 2, the top k trials)")
        se.pop("distill")
    if se.get("distill") and se.get("refit"):
        where.add("search", "distill", "and refit = true each retrain the best configuration for "
                  "export; choose one")
        se.pop("distill")
    if "warm_start" in se:
        se["warm_start"] = check_warm_start(where, se["warm_start"], base_dir, task_type)
    if se.get("warm_start_sampler"):
        if se.get("sampler") == "grid":
            where.add("search", "warm_start_sampler", "the grid sampler walks its grid and reads no "
                      "history; leave warm_start_sampler out or set it to false")
            se.pop("warm_start_sampler")
        elif "warm_start" not in se:
            where.add("search", "warm_start_sampler", "reads the trials of the [search] warm_start "
                      "studies: set warm_start (earlier run directories, or \"auto\") too")
            se.pop("warm_start_sampler")


def check_warm_start(where: "_Where", value: Any, base_dir: Path, task_type: Any) -> list[Path] | str:
    """The run directories of ``[search] warm_start`` (a path or a list of paths relative to the
    study file), resolved. Each must be an automl_pt run directory (a ``study.json`` automl_pt
    wrote, with its SQLite storage present) of the same task; problems are recorded in
    ``where`` (file:line) and the entry dropped. ``"auto"`` is kept as is: the run directories
    are found when the study starts (:func:`auto_run_dirs`)."""
    if value == AUTO:
        return AUTO
    entries = [value] if isinstance(value, str) else value
    out: list[Path] = []
    if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
        where.add("search", "warm_start", "must be a run directory or a list of run directories "
                  "(earlier studies, relative to this file)")
        return out
    for entry in entries:
        path = Path(entry).expanduser()
        path = (path if path.is_absolute() else base_dir / path).resolve()
        meta_path = path / "study.json"
        if not path.is_dir():
            where.add("search", "warm_start", f"{entry!r}: no such run directory ({path})")
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if not isinstance(meta, dict) or any(k not in meta for k in STUDY_JSON_KEYS):
            where.add("search", "warm_start", f"{entry!r}: not an automl_pt run directory ({path} has "
                      "no study.json that automl_pt wrote); give the run directory of an earlier study")
            continue
        if task_type and meta.get("task") and meta["task"] != task_type:
            where.add("search", "warm_start", f"{entry!r}: study {meta['study']!r} is a {meta['task']} "
                      f"study; this one is {task_type}")
            continue
        url = str(meta["optuna_url"])
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            where.add("search", "warm_start", f"{entry!r}: its Optuna storage {url} is missing")
            continue
        out.append(path)
    return out
