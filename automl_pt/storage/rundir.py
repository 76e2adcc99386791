"""The one check before automl_pt writes into a run directory, and before it replaces a folder.

A study writes ``optuna.db``, ``cache/``, ``trials/``, ``best/`` and more into its run directory
(``[storage] dir``) and replaces some of them, so it only ever writes into a folder that is

* new (created here, with its parents),
* empty, or
* one that automl_pt made: it holds the marker file :data:`MARKER` (written first thing, naming
  the study and the automl_pt version), or, for run directories from before the marker, a
  ``study.json`` that automl_pt wrote for the same study (adopted: the marker is written then).

Anything else (a user's folder, another study's run directory) raises :class:`ConfigError`
naming the folder and ``[storage] dir`` (with the study file's line where known) before anything
is written. Exports replace only folders that automl_pt wrote (:func:`check_replaceable`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..core.paths import STUDY_JSON_KEYS
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..spec.config import StudyConfig

MARKER = ".automl_pt_run"
#: the files one of which makes a folder an automl_pt export that may be replaced
EXPORT_MANIFESTS = ("automl_pt.json", "automl_pt_export.json")
#: what every study.json automl_pt writes holds (and what reading a run directory needs)


def claim_run_dir(config: "StudyConfig", create: bool = True) -> Path:
    """Check (and with ``create``, make) the run directory of ``config`` before writing into it;
    see the module docstring for what is accepted. ``create=False`` is for commands that write
    into a run directory a study made (export, report, label-efficiency): a missing or empty
    folder is refused too. Returns the run directory. Raises :class:`ConfigError` naming
    ``[storage] dir`` (file:line where known)."""
    from ..spec.config import _Where

    where = _Where.of(config)
    return check_run_dir(config.run_dir, config.study.name, create=create,
                         error=lambda msg: where.error("storage", "dir", msg))


def check_run_dir(run_dir: Path, study: str, create: bool = True,
                  error: Callable[[str], Exception] | None = None) -> Path:
    """:func:`claim_run_dir` for a folder and a study name; ``error`` makes the exception from
    a message (default: a :class:`ConfigError` starting with the folder)."""
    run_dir = Path(run_dir)
    fail = error or (lambda msg: ConfigError(msg))
    if run_dir.exists() and not run_dir.is_dir():
        raise fail(f"{run_dir} is a file, not a folder")
    marker = run_dir / MARKER
    if marker.is_file():
        owner = _marker_study(marker, fail)
        if owner != study:
            raise fail(f"{run_dir} is the run directory of study {owner!r} ({MARKER}); give study "
                       f"{study!r} its own folder")
        return run_dir
    if not run_dir.exists() or _is_empty(run_dir):
        if not create:
            state = "is empty" if run_dir.exists() else "does not exist"
            raise fail(f"{run_dir} {state}: the study has not run yet (automl-pt run STUDY.toml)")
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_marker(run_dir, study, adopted=False)
        return run_dir
    owner = legacy_study(run_dir)
    if owner == study:
        _write_marker(run_dir, study, adopted=True)
        return run_dir
    if owner is not None:
        raise fail(f"{run_dir} is the run directory of study {owner!r} (study.json); give study "
                   f"{study!r} its own folder")
    raise fail(f"{run_dir} is not empty and automl_pt did not make it (no {MARKER}); a study writes "
               "optuna.db, cache/, trials/ and best/ into its run directory and replaces some of "
               "them: give a new or empty folder")


def legacy_study(run_dir: Path) -> str | None:
    """The study name in ``run_dir/study.json`` where that file is one automl_pt writes (a run
    directory from before :data:`MARKER`), else ``None``."""
    try:
        meta = json.loads((Path(run_dir) / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not all(k in meta for k in STUDY_JSON_KEYS):
        return None
    return meta["study"] if isinstance(meta["study"], str) else None


def check_replaceable(folder: Path, what: str = "output folder",
                      error: type[Exception] = ConfigError) -> None:
    """Refuse (``error``) to replace ``folder`` unless it is missing, empty or an automl_pt
    export (one of :data:`EXPORT_MANIFESTS` inside)."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir() or folder.is_symlink():
        raise error(f"{folder}: the {what} is a file or link, not a folder; give a new folder")
    if any(folder.iterdir()) and not any((folder / m).is_file() for m in EXPORT_MANIFESTS):
        raise error(f"{folder}: exists and is not an earlier export (no {' or '.join(EXPORT_MANIFESTS)}); "
                    f"choose an empty or new {what}: it would be replaced")


def _marker_study(marker: Path, fail: Callable[[str], Exception]) -> str:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return str(data["study"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise fail(f"{marker}: unreadable run directory marker ({type(exc).__name__}: {exc}); "
                   "remove it if this is the study's folder") from None


def _is_empty(folder: Path) -> bool:
    """No entries but marker temp files (another process making the folder at the same time)."""
    return all(p.name.startswith(MARKER + ".") and p.name.endswith(".tmp") for p in folder.iterdir())


def _write_marker(run_dir: Path, study: str, adopted: bool) -> None:
    from ..core.version import __version__

    data: dict[str, Any] = {"study": study, "automl_pt": __version__,
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if adopted:
        data["adopted"] = "run directory from before the marker (its study.json names the study)"
    tmp = run_dir / f"{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, run_dir / MARKER)
