"""The fine-tuning loop: plain PyTorch, readable top to bottom.

``fine_tune`` trains ``TrialModel`` = backbone + task head with AdamW over parameter groups
(head learning-rate multiplier, layer-wise learning-rate decay, no weight decay on biases and
norms), linear warmup then cosine or linear decay, gradient accumulation over micro-batches, bf16
autocast on CUDA, and one of these strategies:

* ``linear_probe``: the backbone is frozen; the head trains on features computed once
  (``batch["features"]``; a classification trial fits it in closed form instead, see
  :mod:`automl_pt.train.probe`);
* ``full``: everything trains from the first step;
* ``freeze_then_unfreeze``: head only for the first third of the steps, then everything;
* ``partial``: the top k blocks and the head, on cached activations of the blocks below (the
  trial freezes the rest and passes a :class:`automl_pt.train.partial.PartialTrialModel`).

Any other strategy trains what requires gradients when training starts: ``lora`` / ``ia3`` /
``bitfit`` freeze the backbone but for their adapters / biases and norms beforehand
(:func:`automl_pt.train.adapters.apply_strategy`).

Batches are random, or length-bucketed where the preprocessor gives per-example lengths
(:mod:`automl_pt.train.batching`); validation runs sorted by length.
The best epoch's weights (by the study's validation metric) are kept and returned.

Training length fits the data: ``epochs`` is what the search picked, ``min_steps`` (when the
params have it) stretches a run on a small data set to at least that many optimizer steps (at
most :data:`MAX_PLANNED_EPOCHS` epochs, see :func:`planned_epochs`), and ``patience`` stops a
run after that many epochs without a better validation score (the best epoch is kept).
Events go to :class:`TrainerCallback` objects (progress bars, pruning, logging).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .batching import bucketed_batches, random_batches, restore_order, sorted_batches
from ..model import Task, TrialModel
from ..registry import Metric


#: the most epochs ``min_steps`` may stretch a run to (a searched ``epochs`` above it is kept)
MAX_PLANNED_EPOCHS = 50


def planned_epochs(epochs: int, steps_per_epoch: int, min_steps: int = 0) -> int:
    """Epochs a run plans: the searched ``epochs``, raised to reach ``min_steps`` optimizer steps
    (``ceil(min_steps / steps_per_epoch)``) but not beyond :data:`MAX_PLANNED_EPOCHS`."""
    needed = math.ceil(max(0, int(min_steps)) / max(1, int(steps_per_epoch)))
    return max(int(epochs), min(needed, MAX_PLANNED_EPOCHS))


#: a first epoch over at least this many training examples is checked part-way (see
#: :meth:`TrainerCallback.on_check`), so a pruner can stop a trial that is clearly behind
#: without paying for the whole epoch
CHECK_MIN_EXAMPLES = 4096
#: how far into the first epoch that check comes (share of its examples)
CHECK_FRACTION = 0.25


class TrainerCallback:
    """Hooks into the loop. ``state`` is the :class:`TrainState` (read it, don't replace it).
    Raising from ``on_epoch_end`` (e.g. ``optuna.TrialPruned``) stops training."""

    def on_train_begin(self, state: "TrainState") -> None: ...
    def on_step_end(self, state: "TrainState") -> None: ...
    def on_check(self, state: "TrainState") -> None:
        """On large data (see :data:`CHECK_MIN_EXAMPLES`): once in the first epoch, after
        :data:`CHECK_FRACTION` of it, with ``state.check_metrics`` on validation. Raising
        stops training, as from ``on_epoch_end``."""
    def on_epoch_end(self, state: "TrainState") -> None: ...
    def on_train_end(self, state: "TrainState") -> None: ...


@dataclass
class TrainState:
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    train_loss: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)      # latest validation metrics
    history: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    samples_seen: int = 0
    micro_batch_size: int = 0
    model: Any = None            # the TrialModel being trained (callbacks may inspect it)
    stopped_early: bool = False  # ``patience`` epochs passed without a better validation score
    closed_form: bool = False    # a fitted, not trained, model (the probe): no curve to prune on
    check_metrics: dict[str, float] = field(default_factory=dict)  # validation at the in-epoch check


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    samples_per_s: float
    epochs_planned: int = 0      # after ``min_steps`` (see :func:`planned_epochs`)
    epochs_run: int = 0          # fewer when early stopping ended the run
    steps: int = 0               # optimizer steps taken
    #: ``(epoch, metrics, weights, validation loss)`` of the best epochs, best first
    top_states: list[tuple[int, dict[str, float], dict[str, torch.Tensor], float | None]] = field(
        default_factory=list)
    samples_seen: int = 0
    epoch_soup: Any = None   # automl_pt.engine.soups.EpochSoup, set by the trial runner
    #: the task's validation loss of the kept epoch (:meth:`automl_pt.tasks.Task.validation_loss`)
    validation_loss: float | None = None


def device_autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def param_groups(model: TrialModel, params: dict, train_backbone: bool) -> list[dict]:
    """AdamW groups: head at ``lr * head_lr_multiplier``; backbone layer ``i`` of ``top`` at
    ``lr * layer_decay ** (top - i)``; biases and 1-d (norm) weights without weight decay."""
    lr = float(params["learning_rate"])
    wd = float(params.get("weight_decay", 0.0))
    decay = float(params.get("layer_decay", 1.0))
    groups: dict[tuple[str, int, bool], dict] = {}

    def add(name: str, p: nn.Parameter, group_lr: float, key: tuple[str, int]) -> None:
        no_wd = p.ndim <= 1 or name.endswith(".bias")
        g = groups.setdefault((key[0], key[1], no_wd), {"params": [], "lr": group_lr,
                                                         "weight_decay": 0.0 if no_wd else wd})
        g["params"].append(p)

    for name, p in model.head.named_parameters():
        add(name, p, lr * float(params.get("head_lr_multiplier", 1.0)), ("head", 0))
    if train_backbone:
        top, ids = model.backbone.num_layers_and_ids()
        for name, p in model.backbone.named_parameters():
            layer = ids.get(name, top)
            add(name, p, lr * decay ** (top - layer), ("backbone", layer))
    out = list(groups.values())
    for g in out:
        g["initial_lr"] = g["lr"]
    return out


def lr_lambda(total_steps: int, warmup_ratio: float, schedule: str) -> Callable[[int], float]:
    warmup = int(total_steps * warmup_ratio)

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _slice(data: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in data.items()}


@torch.no_grad()
def predict_logits(model: TrialModel, data: dict[str, torch.Tensor], device: torch.device,
                   batch_size: int, collate: Callable = lambda b: b,
                   lengths: torch.Tensor | None = None,
                   on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """Model outputs for every example, row ``i`` for example ``i``. With ``lengths`` (see
    :meth:`~automl_pt.model.Preprocessor.lengths`) the batches are formed in order of length,
    so each carries little padding; the rows still come back in the original order.
    ``on_batch(n)`` is called after each batch of ``n`` examples (progress bars)."""
    model.eval()
    n = len(next(iter(data.values())))
    batches = sorted_batches(n, batch_size, lengths)
    out = []
    for idx in batches:
        batch = _to_device(collate(_slice(data, idx)), device)
        with device_autocast(device):
            out.append(model(batch).float().cpu())
        if on_batch is not None:
            on_batch(len(idx))
    return restore_order(out, batches)


def evaluate(model: TrialModel, task: Task, data: dict[str, torch.Tensor], labels: np.ndarray,
             metrics: dict[str, Metric], device: torch.device, batch_size: int,
             collate: Callable = lambda b: b, lengths: torch.Tensor | None = None,
             calibrate: bool = False) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Metrics, predictions and probabilities of ``model`` on ``data``. ``calibrate``: first
    tune the task's decision values on these outputs (validation only; see
    :meth:`automl_pt.tasks.Task.calibrate`)."""
    logits = predict_logits(model, data, device, batch_size, collate, lengths)
    if calibrate and getattr(task, "needs_calibration", False):
        task.calibrate(logits, labels)
    preds, probs = task.predict(logits)
    return metric_values(metrics, labels, preds, probs), preds, probs


def calibrate_on(task: Task, model: TrialModel, data: dict[str, torch.Tensor], labels: np.ndarray,
                 device: torch.device, batch_size: int, collate: Callable = lambda b: b,
                 lengths: torch.Tensor | None = None) -> None:
    """Tune ``task``'s decision values on ``model``'s outputs for ``data`` (validation) where
    the task has any (:attr:`automl_pt.tasks.Task.needs_calibration`); else nothing runs."""
    if getattr(task, "needs_calibration", False):
        task.calibrate(predict_logits(model, data, device, batch_size, collate, lengths), labels)


def metric_values(metrics: dict[str, Metric], labels: Any, preds: Any, probs: Any) -> dict[str, float]:
    """Every metric of ``metrics`` on one set of predictions: ``{name: value}``."""
    return {name: float(m.fn(labels, preds, probs)) for name, m in metrics.items()}


def fine_tune(model: TrialModel, task: Task, train: dict[str, torch.Tensor], train_labels: np.ndarray,
              validation: dict[str, torch.Tensor], validation_labels: np.ndarray, params: dict,
              metrics: dict[str, Metric], objective_metric: str, maximize: bool,
              device: torch.device, seed: int, micro_batch_size: int | None = None,
              collate: Callable = lambda b: b, augment: Callable | None = None,
              callbacks: list[TrainerCallback] = (), train_lengths: torch.Tensor | None = None,
              validation_lengths: torch.Tensor | None = None, keep_states: int = 0,
              keep_last: bool = False) -> TrainResult:
    """Train and return the best epoch's weights (on the CPU) and the per-epoch history.

    ``train_lengths`` / ``validation_lengths`` (per-example lengths from
    :meth:`~automl_pt.model.Preprocessor.lengths`, or ``None``): training draws length-bucketed
    batches (:func:`automl_pt.train.batching.bucketed_batches`, different every epoch, reproducible
    for ``seed``) instead of random ones, and validation runs sorted by length.
    ``keep_states``: also keep the weights of the best ``n`` epochs on the CPU
    (``TrainResult.top_states``; memory bounded by ``n`` copies), for checkpoint averaging.
    ``keep_last``: return the last epoch's weights whatever the validation says (a refit on
    train + validation, where validation is no longer held out; no early stopping then)."""
    run = _FineTune(model, params, device, seed, micro_batch_size, len(train_labels), keep_last, callbacks)
    batches = _Batches(task, train, task.target_tensor(train_labels), train_lengths, collate, augment)

    def scored() -> tuple[dict[str, float], float | None]:
        values, _, probs = evaluate(model, task, validation, validation_labels, metrics, device,
                                    max(run.micro, 64), collate, validation_lengths, calibrate=True)
        return values, task.validation_loss(validation_labels, probs)

    def validate() -> dict[str, float]:
        return scored()[0]

    run.begin()
    for epoch in range(1, run.state.epochs + 1):
        seconds = run.train_epoch(epoch, batches, validate)
        values, loss = scored()
        run.end_epoch(values, seconds, objective_metric, maximize, keep_states, keep_last, loss)
        if run.state.stopped_early:
            break
    return run.finish()


@dataclass
class _Batches:
    """The training data of a :func:`fine_tune` run and how a batch of it reaches the model."""

    task: Task
    data: dict[str, torch.Tensor]
    targets: torch.Tensor
    lengths: torch.Tensor | None
    collate: Callable
    augment: Callable | None

    def order(self, n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
        """This epoch's batches of the ``n`` examples: random, or length-bucketed where lengths
        are known."""
        return (random_batches(n, batch_size, generator) if self.lengths is None
                else bucketed_batches(self.lengths, batch_size, generator))

    def get(self, idx: torch.Tensor, device: torch.device,
            generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One micro-batch on ``device``: inputs and targets (augmented, possibly soft)."""
        batch = _to_device(self.collate(_slice(self.data, idx)), device)
        targets = self.targets[idx].to(device, non_blocking=True)
        if self.augment is not None:  # may mix examples and return soft targets
            batch = self.augment({**batch, "targets": targets}, generator)
            targets = batch.pop("targets")
        if self.task.targets_in_batch:  # the model reads them (teacher forcing)
            batch = {**batch, "targets": targets}
        return batch, targets


def _set_trainable(params: list[nn.Parameter], on: bool) -> None:
    for p in params:
        p.requires_grad_(on)


class _FineTune:
    """One :func:`fine_tune` run: the model set up to train (which parameters train, optimizer,
    learning-rate schedule) and what its epochs share (steps, the best epoch so far)."""

    def __init__(self, model: TrialModel, params: dict, device: torch.device, seed: int,
                 micro_batch_size: int | None, n: int, keep_last: bool, callbacks: list[TrainerCallback]):
        strategy = params.get("strategy", "full")
        self.model, self.params, self.device, self.n, self.callbacks = model, params, device, n, callbacks
        self.batch_size = int(params["batch_size"])
        self.micro = min(self.batch_size, int(micro_batch_size or self.batch_size))
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.probe = strategy == "linear_probe"
        self.trainable = self._freeze_backbone()
        model.to(device)
        self.optimizer = torch.optim.AdamW(param_groups(model, params, train_backbone=not self.probe),
                                           fused=device.type == "cuda")
        steps_per_epoch = math.ceil(n / self.batch_size)
        epochs = planned_epochs(int(params["epochs"]), steps_per_epoch, int(params.get("min_steps") or 0))
        self.patience = 0 if keep_last else int(params.get("patience") or 0)
        self.state = TrainState(epochs=epochs, total_steps=steps_per_epoch * epochs,
                                micro_batch_size=self.micro, model=model)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(self.state.total_steps, float(params.get("warmup_ratio", 0.0)),
                                      str(params.get("schedule", "cosine"))))
        self.unfreeze_at = self.state.total_steps // 3 if strategy == "freeze_then_unfreeze" else 0
        if self.unfreeze_at:
            _set_trainable(self.trainable, False)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_loss: float | None = None
        self.top_states: list[tuple[int, dict[str, float], dict[str, torch.Tensor], float | None]] = []
        self.train_seconds = 0.0
        # large data: one look at validation part-way through the first epoch (not after a refit's)
        self.check_at = math.ceil(n * CHECK_FRACTION) if n >= CHECK_MIN_EXAMPLES and not keep_last else 0

    def _freeze_backbone(self) -> list[nn.Parameter]:
        """Freeze the backbone for a probe; the parameters it may train otherwise. Parameters the
        backbone froze on purpose (e.g. fixed positional embeddings) stay frozen."""
        trainable = [p for p in self.model.backbone.parameters() if p.requires_grad]
        _set_trainable(list(self.model.backbone.parameters()), False)
        _set_trainable(trainable, not self.probe)
        return trainable

    def begin(self) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(self.state)

    def _train_mode(self) -> None:
        self.model.train()
        if self.probe:
            self.model.backbone.eval()  # frozen features: no dropout noise

    def train_epoch(self, epoch: int, batches: _Batches, validate: Callable[[], dict[str, float]]) -> float:
        """One pass over the training batches; sets ``state.train_loss`` and returns its seconds."""
        self.state.epoch = epoch
        self._train_mode()
        t0 = time.perf_counter()
        loss_sum, loss_count = 0.0, 0
        for idx in batches.order(self.n, self.batch_size, self.generator):
            total, count = self._step(idx, batches)
            loss_sum, loss_count = loss_sum + total, loss_count + count
            if self.check_at and self.state.samples_seen >= self.check_at:   # part-way through epoch 1
                self._check(validate)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        epoch_seconds = time.perf_counter() - t0
        self.train_seconds += epoch_seconds
        self.state.train_loss = loss_sum / max(1, loss_count)
        return epoch_seconds

    def _step(self, idx: torch.Tensor, batches: _Batches) -> tuple[float, int]:
        """One optimizer step on the batch ``idx``, in micro-batches whose gradients add up;
        returns the summed loss and the number of examples."""
        if self.unfreeze_at and self.state.step == self.unfreeze_at:
            _set_trainable(self.trainable, True)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, loss_count = 0.0, 0
        for m_start in range(0, len(idx), self.micro):
            m_idx = idx[m_start:m_start + self.micro]
            batch, targets = batches.get(m_idx, self.device, self.generator)
            with device_autocast(self.device):
                logits = self.model(batch)
            loss = batches.task.loss(logits, targets, self.params)
            (loss * (len(m_idx) / len(idx))).backward()
            loss_sum += float(loss.detach()) * len(m_idx)
            loss_count += len(m_idx)
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        self.state.samples_seen += len(idx)
        for cb in self.callbacks:
            cb.on_step_end(self.state)
        return loss_sum, loss_count

    def _check(self, validate: Callable[[], dict[str, float]]) -> None:
        """The one in-epoch look at validation (large data), for callbacks' ``on_check``."""
        self.check_at = 0
        self.state.check_metrics = validate()
        self._train_mode()
        for cb in self.callbacks:
            cb.on_check(self.state)

    def end_epoch(self, values: dict[str, float], epoch_seconds: float, objective_metric: str,
                  maximize: bool, keep_states: int, keep_last: bool,
                  validation_loss: float | None = None) -> None:
        """Record the epoch's validation ``values`` (and the task's ``validation_loss``), keep its
        weights where it is the best (or among the ``keep_states`` best), decide on early
        stopping and tell the callbacks."""
        state = self.state
        state.metrics = values
        row = {"epoch": state.epoch, "train_loss": state.train_loss,
               "samples_per_s": self.n / epoch_seconds, "epoch_seconds": epoch_seconds,
               "learning_rate": self.optimizer.param_groups[0]["lr"],
               **{f"val_{k}": v for k, v in values.items()}}
        if validation_loss is not None:
            row["validation_loss"] = validation_loss
        state.history.append(row)
        value = values[objective_metric]
        better = state.best_value is None or outranks(value, validation_loss, state.best_value,
                                                      self.best_loss, maximize)
        if better or keep_last:
            state.best_value, state.best_epoch = value, state.epoch
            self.best_state = clone_state(self.model)
            self.best_metrics = dict(values)
            self.best_loss = validation_loss
        if keep_states:
            _keep_top(self.top_states, keep_states, state.epoch, values, validation_loss, objective_metric,
                      maximize, self.best_state if better else None, self.model)
        if self.patience and state.epoch < state.epochs and state.epoch - state.best_epoch >= self.patience:
            state.stopped_early = True
        for cb in self.callbacks:
            cb.on_epoch_end(state)

    def finish(self) -> TrainResult:
        state = self.state
        for cb in self.callbacks:
            cb.on_train_end(state)
        assert self.best_state is not None
        return TrainResult(self.best_state, state.best_epoch, self.best_metrics, state.history,
                           state.samples_seen / max(self.train_seconds, 1e-9), epochs_planned=state.epochs,
                           epochs_run=state.epoch, steps=state.step,
                           top_states=self.top_states, samples_seen=state.samples_seen,
                           validation_loss=self.best_loss)


def outranks(value: float, loss: float | None, other_value: float, other_loss: float | None,
             maximize: bool) -> bool:
    """Whether one validation result (the objective metric's ``value`` and the task's validation
    ``loss``, :meth:`automl_pt.tasks.Task.validation_loss`, or ``None``) ranks above another: a
    better metric; on a tie (accuracy on a small validation split often ties), a lower loss. A
    result without a finite loss never wins a tie. The one order of epochs, soups and exports;
    trials tie-break the same way (:func:`automl_pt.storage.store.best_trial`)."""
    if value != other_value:
        return value > other_value if maximize else value < other_value
    if loss is None or not math.isfinite(loss):
        return False
    return other_loss is None or not math.isfinite(other_loss) or loss < other_loss


def _keep_top(top: list, n: int, epoch: int, values: dict[str, float], loss: float | None, metric: str,
              maximize: bool, state: dict[str, torch.Tensor] | None, model: nn.Module) -> None:
    """Insert this epoch into ``top`` (best first by :func:`outranks`, at most ``n``) if it
    ranks; ``state``: the CPU copy already made for the best epoch (shared, not copied twice)."""
    value = values[metric]
    rank = sum(1 for _, m, _, m_loss in top if not outranks(value, loss, m[metric], m_loss, maximize))
    if rank >= n:
        return
    if state is None:
        state = clone_state(model)
    top.insert(rank, (epoch, dict(values), state, loss))
    del top[n:]


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on the CPU (the kept best epoch, a soup ingredient...)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
