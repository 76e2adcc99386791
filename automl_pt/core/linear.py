"""Closed-form linear fits on frozen features (logistic regression by full-batch L-BFGS, ridge and
least squares), each strength of an L2 grid scored on validation. The tasks' ``fit_probe`` and
:mod:`automl_pt.train.probe` use them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

#: L2 strengths tried, as ``1 / C`` in scikit-learn's terms (penalty ``l2 / (2 n) * ||W||^2`` on the
#: mean cross-entropy of ``n`` examples); strongest first, so each fit warm-starts the next.
L2_GRID = (30000.0, 10000.0, 3000.0, 1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0)
MAX_ITER = 100
#: below this many feature values (examples x dimensions) the fit runs on one thread: its matrix
#: products are too small to share, and on a busy machine more threads only wait on each other
ONE_THREAD_BELOW = 20_000_000


@dataclass
class ProbeFit:
    """The fitted probe: ``weight`` (labels, dim) and ``bias`` act on raw (unstandardised) features."""

    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    metrics: dict[str, float]          # validation metrics of the kept strength
    val_loss: float
    train_loss: float
    fit_seconds: float
    path: list[dict[str, float]]       # one row per strength: l2, val_loss, val_<metric>


def _standardise(train_x: torch.Tensor, val_x: torch.Tensor):
    x = train_x.detach().float().cpu()
    v = val_x.detach().float().cpu()
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    # (nearly) constant dimensions stay unscaled instead of blowing float noise up to unit variance
    std = std.clamp_min(max(1e-3 * float(std.mean()), 1e-12))
    return (x - mean) / std, (v - mean) / std, mean, std


def _one_thread(train_x: torch.Tensor):
    """A context that runs small fits on one thread (see :data:`ONE_THREAD_BELOW`)."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        threads = torch.get_num_threads()
        if train_x.numel() < ONE_THREAD_BELOW:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
    return ctx()


def fit_logistic(train_x: torch.Tensor, train_y: np.ndarray, val_x: torch.Tensor, val_y: np.ndarray,
                 num_labels: int, score: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]],
                 objective_metric: str, maximize: bool, grid: tuple[float, ...] = L2_GRID,
                 max_iter: int = MAX_ITER) -> ProbeFit:
    """Fit multinomial logistic regression on ``train_x`` for every L2 strength of ``grid``
    (warm-started along the path) and keep the one that scores best on ``(val_x, val_y)``.
    ``score(labels, preds, probs)`` returns the validation metrics (``objective_metric`` among
    them). Raises ``ValueError`` on empty inputs."""
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    vy = torch.as_tensor(np.asarray(val_y), dtype=torch.long)

    def score_logits(logits: torch.Tensor) -> dict[str, float]:
        probs = torch.softmax(logits, dim=-1).numpy()
        return score(np.asarray(val_y), probs.argmax(1), probs)

    return fit_linear(train_x, y, val_x, vy, num_labels, torch.nn.functional.cross_entropy,
                      score_logits, objective_metric, maximize, grid, max_iter)


def fit_linear(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
               num_outputs: int, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               score_logits: Callable[[torch.Tensor], dict[str, float]], objective_metric: str,
               maximize: bool, grid: tuple[float, ...] = L2_GRID, max_iter: int = MAX_ITER) -> ProbeFit:
    """A linear layer fitted by full-batch L-BFGS on standardised features for every L2 strength
    of ``grid`` (strongest first, warm-started), minimising ``loss(logits, targets)`` (mean over
    examples) plus ``l2 / (2 n) ||W||^2``; the strength whose validation logits score best
    (``score_logits(logits)`` → metrics; ties: lower validation loss) is kept. Raises
    ``ValueError`` on empty inputs."""
    if len(train_x) == 0 or len(val_x) == 0:
        raise ValueError("the probe needs training and validation examples")
    with _one_thread(train_x):
        t0 = time.perf_counter()
        xs, vs, mean, std = _standardise(train_x, val_x)
        n, dim = xs.shape
        w = torch.zeros(dim, num_outputs, requires_grad=True)
        b = torch.zeros(num_outputs, requires_grad=True)
        best: tuple[tuple[float, float], dict] | None = None
        path = []
        for l2 in sorted(grid, reverse=True):
            opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10,
                                    tolerance_grad=1e-5, tolerance_change=1e-9,
                                    line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                opt.zero_grad()
                value = loss(xs @ w + b, train_y) + l2 / (2 * n) * (w * w).sum()
                value.backward()
                return value

            opt.step(closure)
            with torch.no_grad():
                logits = vs @ w + b
                val_loss = float(loss(logits, val_y))
                metrics = {k: float(m) for k, m in score_logits(logits).items()}
            best = _keep(best, path, l2, val_loss, metrics, objective_metric, maximize,
                         lambda: float(loss(xs @ w + b, train_y)), w, b)
        return _folded(best, mean, std, t0, path)


def fit_ridge(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
              score_logits: Callable[[torch.Tensor], dict[str, float]], objective_metric: str,
              maximize: bool, grid: tuple[float, ...] = L2_GRID) -> ProbeFit:
    """Ridge regression in closed form on standardised features and (standardised) targets
    ``train_y`` for every L2 strength of ``grid`` (one eigendecomposition of the Gram matrix
    for them all): ``(X^T X + l2 I) w = X^T y`` on centred data, the same penalty as
    :func:`fit_linear` on the mean squared error. The strength whose validation predictions
    score best (ties: lower validation error) is kept. Raises ``ValueError`` on empty inputs."""
    if len(train_x) == 0 or len(val_x) == 0:
        raise ValueError("the probe needs training and validation examples")
    with _one_thread(train_x):
        t0 = time.perf_counter()
        xs, vs, mean, std = _standardise(train_x, val_x)
        x64, v64 = xs.double(), vs.double()
        y = train_y.double().reshape(-1, 1)
        y_mean = y.mean(0)
        evals, evecs = torch.linalg.eigh(x64.T @ x64)
        proj = evecs.T @ (x64.T @ (y - y_mean))
        best = None
        path: list[dict[str, float]] = []
        for l2 in sorted(grid, reverse=True):
            w = evecs @ (proj / (evals.clamp_min(0) + l2)[:, None])
            b = y_mean
            with torch.no_grad():
                logits = (v64 @ w + b).float()
                val_loss = float(((logits.reshape(-1) - val_y.float().reshape(-1)) ** 2).mean())
                metrics = {k: float(m) for k, m in score_logits(logits).items()}
            best = _keep(best, path, l2, val_loss, metrics, objective_metric, maximize,
                         lambda: float((((x64 @ w + b) - y) ** 2).mean()), w.float(), b.float())
        return _folded(best, mean, std, t0, path)


def _keep(best, path, l2, val_loss, metrics, objective_metric, maximize, train_loss, w, b):
    """Record one strength on the ``path``; return it as ``best`` when it beats the kept one."""
    value = metrics[objective_metric]
    path.append({"l2": l2, "val_loss": val_loss, **{f"val_{k}": m for k, m in metrics.items()}})
    key = (value if maximize else -value, -val_loss)
    if best is None or key > best[0]:
        with torch.no_grad():
            return (key, {"w": w.detach().clone(), "b": b.detach().clone(), "l2": l2,
                          "metrics": metrics, "val_loss": val_loss, "train_loss": train_loss()})
    return best


def _folded(best, mean, std, t0, path) -> ProbeFit:
    assert best is not None
    kept = best[1]
    # fold the standardisation into the layer: W (x - mean) / std + b
    weight = (kept["w"] / std[:, None]).T.contiguous()
    bias = kept["b"] - (mean / std) @ kept["w"]
    return ProbeFit(weight.float(), bias.float(), kept["l2"], kept["metrics"], kept["val_loss"],
                    kept["train_loss"], time.perf_counter() - t0, path)
