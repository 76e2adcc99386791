"""Batch order: length-bucketed training batches and length-sorted inference.

A batch is padded to its longest example (text: :meth:`Preprocessor.collate` trims to the
longest attention mask; audio: to the longest clip), so random batches of short texts carry
mostly padding. Where a preprocessor reports per-example lengths
(:meth:`automl_pt.model.Preprocessor.lengths`), training draws *bucketed* batches:

1. a seeded random permutation of the examples, cut into pools of ``POOL_BATCHES`` batches;
2. each pool sorted by a jittered length (lengths within ``JITTER`` of each other trade places
   at random), then cut into batches of similar lengths;
3. the order of all batches shuffled.

Batches therefore differ from epoch to epoch, every example is seen once per epoch, and the
same generator state gives the same order. Inference (:func:`sorted_batches`) runs examples
sorted by length and the caller puts the results back in the original order.
"""

from __future__ import annotations

import torch

#: batches per pool sorted together (larger: less padding, less randomness)
POOL_BATCHES = 64
#: relative jitter of the sort key, so near-equal lengths mix between epochs
JITTER = 0.1


def random_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Plain random batches: ``randperm(n)`` cut into ``batch_size`` slices (the last may be
    shorter)."""
    order = torch.randperm(n, generator=generator)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


def bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                     pool_batches: int = POOL_BATCHES, jitter: float = JITTER) -> list[torch.Tensor]:
    """Batches of indices of similar ``lengths`` (see the module docstring). Every index in
    ``range(len(lengths))`` appears exactly once; at most one batch is shorter than
    ``batch_size``. Draws from ``generator`` only (reproducible for a seed)."""
    n = len(lengths)
    if n == 0:
        return []
    lengths = lengths.to(torch.float64).flatten()
    perm = torch.randperm(n, generator=generator)
    noise = 1.0 + jitter * (2.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 1.0)
    key = lengths[perm] * noise
    pool = max(1, pool_batches) * batch_size
    batches: list[torch.Tensor] = []
    leftovers: list[torch.Tensor] = []
    for start in range(0, n, pool):
        members = perm[start:start + pool]
        ranked = members[torch.argsort(key[start:start + pool], stable=True)]
        full = len(ranked) // batch_size * batch_size
        batches += list(ranked[:full].split(batch_size))
        if full < len(ranked):
            leftovers.append(ranked[full:])
    if leftovers:  # the pools' remainders: sorted together into (at most) one short batch more
        rest = torch.cat(leftovers)
        rest = rest[torch.argsort(lengths[rest], stable=True)]
        batches += list(rest.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle.tolist()]


def sorted_batches(n: int, batch_size: int, lengths: torch.Tensor | None) -> list[torch.Tensor]:
    """Inference batches: indices ``0..n-1`` in order, or, given ``lengths``, sorted by
    decreasing length (the largest batch first: an out-of-memory error comes at once). Results
    computed batch by batch are put back with :func:`restore_order`."""
    if lengths is None:
        order = torch.arange(n)
    else:
        order = torch.argsort(lengths.flatten().to(torch.float64), descending=True, stable=True)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


def restore_order(parts: list[torch.Tensor], batches: list[torch.Tensor]) -> torch.Tensor:
    """Row ``i`` of the result is the output for example ``i``, given ``parts[j]`` computed on
    ``batches[j]`` (as :func:`sorted_batches` made them). Per-position outputs whose batches
    have different numbers of positions (``(batch, positions, ...)``) are padded to the most
    positions with NaN (floats; ``-1`` otherwise): no real position is ever NaN."""
    if not parts:
        return torch.empty(0)
    if len({tuple(p.shape[1:]) for p in parts}) > 1 and all(p.dim() >= 2 for p in parts):
        width = [max(p.shape[d] for p in parts) for d in range(1, parts[0].dim())]
        fill = float("nan") if parts[0].is_floating_point() else -1
        padded = []
        for p in parts:
            out = torch.full((p.shape[0], *width), fill, dtype=p.dtype)
            out[tuple(slice(0, n) for n in p.shape)] = p
            padded.append(out)
        parts = padded
    stacked = torch.cat(parts)
    index = torch.cat(batches)
    out = torch.empty_like(stacked)
    out[index] = stacked
    return out


def padded_tokens(lengths: torch.Tensor, batches: list[torch.Tensor]) -> int:
    """Elements a padded batch carries, summed over ``batches``: ``len(batch) * longest``."""
    return int(sum(len(b) * int(lengths[b].max()) for b in batches if len(b)))
