"""Files of a run directory that several layers name, and the driver lock on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import AutomlError

OPTUNA_FILE = "optuna.db"
RESULTS_FILE = "results.duckdb"
DRIVER_LOCK = "driver.lock"
#: the keys of ``study.json`` a reader needs (warm start, results of an earlier run)
STUDY_JSON_KEYS = ("study", "metric", "direction", "optuna_url")


class DriverLock:
    """An exclusive lock on ``<run dir>/driver.lock`` held while a driver runs the study: a second
    driver on the same run directory is refused, and readers know a driver is writing."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / DRIVER_LOCK
        self._fd: int | None = None

    def __enter__(self) -> "DriverLock":
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise AutomlError(f"another automl-pt driver is running this study ({self.path}); "
                              "wait for it, or run 'automl-pt worker' to add devices to it") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def driver_running(run_dir: Path) -> bool:
    """Whether a driver holds the run directory's lock right now."""
    import fcntl

    path = Path(run_dir) / DRIVER_LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
