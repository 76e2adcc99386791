"""Cached partial fine-tuning: strategy ``partial`` trains only the top ``k`` blocks of a backbone
(and the head) on the activations of block ``L - k``, computed once with dropout off.

The backbone contract is optional :class:`~automl_pt.model.Backbone` methods
(``num_blocks``, ``encode_bottom``, ``encode_top``, ``top_modules``, plus ``collate_bottom``);
``linear_probe`` is the case ``k = 0``. :class:`automl_pt.engine.trial.TrialRunner` caches the
activations per (backbone, weights, preprocessor, data, k) in memory and, in fp16, under
``<run dir>/cache/activations-*.safetensors``; every trial with the same ``k`` reuses them. When
they would take more than half of the available memory they are memory-mapped from that file
instead of loaded (the operating system then keeps what fits).

Only the top blocks' parameters keep ``requires_grad``; the trial's weights are still the whole
backbone + head state (the bottom blocks are the untouched originals), so export and prediction
run the plain ``encode`` path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import BackboneError
from ..model import Backbone, TrialModel

#: fraction of the available memory the activation caches of one process may hold
MEMORY_FRACTION = 0.5
_FP16_MAX = 60000.0


class PartialTrialModel(TrialModel):
    """``head(backbone.encode_top(batch, k))`` on cached activations; its ``state_dict`` is a
    :class:`TrialModel`'s (whole backbone + head)."""

    def __init__(self, backbone: Backbone, head: nn.Module, top_layers: int):
        super().__init__(backbone, head)
        self.top_layers = int(top_layers)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.backbone.encode_top(batch, self.top_layers))


def supported(backbone: Backbone) -> bool:
    """Whether ``backbone`` implements the split contract (``num_blocks`` does not refuse)."""
    try:
        backbone.num_blocks()
    except (BackboneError, NotImplementedError):
        return False
    return True


def top_layers(backbone: Backbone, params: dict) -> int:
    """The trial's ``top_layers``, at most the backbone's number of blocks (a study searching
    several backbones of different depths shares one range). Raises :class:`BackboneError` for
    a backbone without the contract and for a value below 1."""
    blocks = int(backbone.num_blocks())
    k = int(params.get("top_layers", 1))
    if k < 1:
        raise BackboneError(f"top_layers = {k}: strategy 'partial' trains at least one block "
                            "(k = 0 is strategy 'linear_probe')")
    return min(k, blocks)


def freeze_bottom(backbone: Backbone, k: int) -> int:
    """Turn off gradients for every backbone parameter outside ``top_modules(k)`` (parameters
    frozen on purpose stay frozen); return the number of trainable backbone parameters."""
    top = {id(p) for m in backbone.top_modules(k) for p in m.parameters()}
    count = 0
    for p in backbone.parameters():
        if id(p) not in top:
            p.requires_grad_(False)
        elif p.requires_grad:
            count += p.numel()
    return count


@torch.no_grad()
def compute_activations(backbone: Backbone, data: dict[str, torch.Tensor], k: int,
                        device: torch.device, batch_size: int,
                        collate: Callable = lambda b: b,
                        lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``encode_bottom`` over ``data``, in eval mode, in batches sorted by ``lengths`` when given
    (each batch trimmed to its longest example by ``collate``), rows returned in input order;
    float tensors in fp16 (fp32 where a value would overflow fp16), each key concatenated over
    batches and zero-padded to the largest size in its other dimensions."""
    from .batching import sorted_batches
    from .training import _slice, _to_device

    backbone.to(device).eval()
    n = len(next(iter(data.values())))
    batches = sorted_batches(n, batch_size, lengths)
    parts: dict[str, list[torch.Tensor]] = {}
    for index in batches:
        batch = _to_device(collate(_slice(data, index)), device)
        for key, value in backbone.encode_bottom(batch, k).items():
            parts.setdefault(key, []).append(value.detach().cpu())
    order = torch.cat(batches) if batches else torch.arange(0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    out = {}
    for key, values in parts.items():
        tensor = _pad_cat(values)[inverse]          # back to input order
        if tensor.is_floating_point() and tensor.dtype != torch.float16:
            if tensor.numel() == 0 or float(tensor.abs().max()) < _FP16_MAX:
                tensor = tensor.half()
        out[key] = tensor.contiguous()
    return out


def _pad_cat(values: list[torch.Tensor]) -> torch.Tensor:
    shape = [max(v.shape[d] for v in values) for d in range(1, values[0].ndim)]
    padded = []
    for v in values:
        pad: list[int] = []
        for d in reversed(range(1, v.ndim)):
            pad += [0, shape[d - 1] - v.shape[d]]
        padded.append(nn.functional.pad(v, pad) if any(pad) else v)
    return torch.cat(padded)


def collate_for(backbone: Backbone) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Batches of cached activations: back to fp32, then the backbone's own trimming."""
    def collate(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {k: v.float() if v.is_floating_point() else v for k, v in batch.items()}
        return backbone.collate_bottom(batch)
    return collate


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else a conservative 4 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


_DTYPES = {"F16": np.float16, "BF16": None, "F32": np.float32, "F64": np.float64, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def mmap_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file memory-mapped (copy-on-write: nothing is written back),
    so a cache larger than memory is paged in as batches need it."""
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    base = 8 + header_len
    raw = np.memmap(path, dtype=np.uint8, mode="c")
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(meta["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: cannot memory-map tensor {name!r} of dtype {meta['dtype']}")
        begin, end = meta["data_offsets"]
        array = raw[base + begin:base + end].view(dtype).reshape(meta["shape"])
        out[name] = torch.from_numpy(array)
    return out
