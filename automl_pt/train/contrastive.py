"""Strategy ``setfit``: contrastive fine-tuning on pairs of labelled examples, then the
closed-form probe on the tuned features (the SetFit recipe, Tunstall et al. 2022, for any
backbone whose pooled features compare by cosine: sentence encoders, image and audio
encoders alike).

From the ``n`` labelled training examples, ``setfit_pairs`` pairs per example are drawn, half
of them with an example of the same class (target cosine 1), half with one of another class
(target 0). The backbone is trained for one pass over the pairs with the mean squared error
between the cosine similarity of the two pooled features and the target (SetFit's
``CosineSimilarityLoss``), AdamW at the trial's ``learning_rate``, ``batch_size`` pairs per
step. A handful of labels thus gives ``n * setfit_pairs`` training signals instead of ``n``,
which is what small budgets need. The head is then fitted in closed form on the tuned
backbone's features (:mod:`automl_pt.train.probe`), its regularisation picked on validation.

Single-label classification only (pairs need classes): other tasks get a clear error.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

#: pairs drawn per labelled example (SetFit's ``num_iterations`` is 20: 20 pairs per example)
DEFAULT_PAIRS = 20


def draw_pairs(labels: np.ndarray, pairs_per_example: int, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, same)``: for every example with a label, ``pairs_per_example`` pairs,
    alternately with another example of its class (``same = 1``; itself where the class has one
    example) and with one of another class (``same = 0``; skipped where there is none). Drawn
    with ``seed``; shuffled."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(labels >= 0)
    by_class = {c: idx[labels[idx] == c] for c in np.unique(labels[idx])}
    first, second, same = [], [], []
    for i in idx:
        mine = by_class[labels[i]]
        others = idx[labels[idx] != labels[i]]
        for r in range(pairs_per_example):
            if r % 2 == 0:
                pool = mine[mine != i] if len(mine) > 1 else mine
                first.append(i), second.append(pool[rng.integers(len(pool))]), same.append(1.0)
            elif len(others):
                first.append(i), second.append(others[rng.integers(len(others))]), same.append(0.0)
    order = rng.permutation(len(first))
    return (np.asarray(first, dtype=np.int64)[order], np.asarray(second, dtype=np.int64)[order],
            np.asarray(same, dtype=np.float32)[order])


def contrastive_tune(backbone: Any, encoded: dict[str, torch.Tensor], labels: np.ndarray,
                     params: dict, device: torch.device, seed: int,
                     collate: Callable = lambda b: b,
                     on_step: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """Train ``backbone`` in place on pairs of ``encoded`` examples (see the module docstring);
    returns ``{"pairs", "steps", "loss", "seconds"}`` (``loss``: the mean of the last steps).
    ``on_step(step, loss)`` is called after each optimizer step."""
    first, second, same = draw_pairs(labels, int(params.get("setfit_pairs") or DEFAULT_PAIRS), seed)
    if not len(first):
        raise ValueError("strategy 'setfit' needs labelled training examples")
    if not (same == 0).any():
        raise ValueError("strategy 'setfit' needs at least two classes in the training data")
    batch_size = int(params["batch_size"])
    backbone.to(device).train()
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=float(params["learning_rate"]),
                                  weight_decay=float(params.get("weight_decay", 0.01)))
    steps = math.ceil(len(first) / batch_size)
    warmup = max(1, int(steps * float(params.get("warmup_ratio", 0.1))))
    scheduler = torch.optim.lr_scheduler.LambdaLR(   # linear warmup, then linear decay to 0
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    torch.manual_seed(seed)
    t0, recent = time.perf_counter(), []
    for step in range(steps):
        sl = slice(step * batch_size, (step + 1) * batch_size)
        a, b = torch.as_tensor(first[sl]), torch.as_tensor(second[sl])
        target = torch.as_tensor(same[sl], device=device)
        u = backbone.encode(_batch(encoded, a, collate, device))
        v = backbone.encode(_batch(encoded, b, collate, device))
        loss = torch.nn.functional.mse_loss(torch.nn.functional.cosine_similarity(u.float(), v.float()), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        recent = (recent + [float(loss.detach())])[-20:]
        if on_step is not None:
            on_step(step + 1, recent[-1])
    backbone.eval()
    return {"pairs": int(len(first)), "steps": steps, "loss": float(np.mean(recent)),
            "seconds": time.perf_counter() - t0}


def _batch(encoded: dict[str, torch.Tensor], idx: torch.Tensor, collate: Callable,
           device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in collate({k: v[idx] for k, v in encoded.items()}).items()}
