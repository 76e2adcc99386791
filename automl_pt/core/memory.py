"""Memory: how much a process or device holds, and giving freed memory back."""

from __future__ import annotations

import os
from typing import Any


def release_memory() -> None:
    """Give freed memory back: Python objects, the CUDA cache, and glibc's free lists."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def memory_mb(device: Any) -> float:
    """GPU memory allocated on ``device``, or this process's resident set size on the CPU."""
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
