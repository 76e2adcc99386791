"""Devices and threads: the device slots of ``resources.devices``, the first device, the cores
this process may use and their share per worker."""

from __future__ import annotations

import os

from ..errors import ConfigError


def device_slots(spec: str, trials_per_device: int) -> list[str]:
    """``auto`` → every CUDA device, else the CPU; ``cuda`` → every CUDA device; ``cuda:0,2`` →
    those; ``cpu`` → the CPU. Each device appears ``trials_per_device`` times."""
    import torch

    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        devices = ["cpu"]
    else:
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(f"resources.devices = {spec!r} but no CUDA device is available; "
                              "use \"cpu\" or \"auto\"")
        if spec in ("auto", "cuda"):
            devices = [f"cuda:{i}" for i in range(count)]
        else:
            devices = [f"cuda:{int(i)}" for i in spec.split(":", 1)[1].split(",")]
            missing = [d for d in devices if int(d.split(":")[1]) >= count]
            if missing:
                raise ConfigError(f"resources.devices names {', '.join(missing)} but this machine "
                                  f"has {count} CUDA device(s)")
    return [d for d in devices for _ in range(trials_per_device)]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def threads_per_slot(slots: list[str], configured: int | None) -> int:
    """Threads per worker: ``resources.num_threads``, else the available cores shared evenly
    among the worker slots (at least one)."""
    if configured:
        return configured
    return max(1, available_cores() // max(1, len(slots)))


def resolve_device(spec: str):
    """The first device of ``resources.devices`` (``auto`` → the first CUDA device if there is
    one, else the CPU); parsed by :func:`device_slots`."""
    import torch

    return torch.device(device_slots(spec, 1)[0])
