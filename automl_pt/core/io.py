"""Atomic writes: a temp file next to the target, renamed over it, so a reader never sees half a
file and a killed writer leaves the previous one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_json(path: Path, obj: Any) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def atomic_write_parquet(frame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    os.replace(tmp, path)


def save_state(state: dict, path: Path) -> None:
    """Tensors to a safetensors file (detached, on the CPU, contiguous)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def cached_tensors(path: Path, compute: Any) -> dict:
    """Tensors from a safetensors cache file, or ``compute()`` written there (atomically). A torn
    or unreadable cache file is rebuilt."""
    if path.exists():
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:
            pass
    tensors = compute()
    save_state(tensors, path)
    return tensors
