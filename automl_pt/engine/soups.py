"""Checkpoint averaging and model soups: better models from the trials a study already paid for.

``[search] soup`` (``greedy`` by default, ``uniform`` or ``none``):

* **epoch soup**: each trial keeps the weights of its best :data:`KEEP_EPOCHS` epochs on the CPU
  while it trains and averages them once it ends. ``greedy``: best epoch first, each next epoch is
  added to the average only if validation improves; ``uniform``: all of them. The average is
  saved as ``trials/<n>/soup.safetensors`` (only when it holds more than one epoch) and its
  validation metrics in the trial's ``epoch_soup`` user attribute.
* **trial soup** (end of study): the top :data:`SOUP_TRIALS` completed trials that share the best
  trial's backbone and ``init`` (and, checked on the weights, its architecture and head shape),
  in order of validation score; ``greedy`` adds a trial to the average only if validation
  improves (Wortsman et al., 2022, "Model soups"); ``uniform`` averages them all.

"Improves" is :func:`automl_pt.train.training.outranks`: a better validation metric, or the same
metric and a lower validation loss (the task's log loss). On a small validation split accuracy
ties often (every candidate right on all but one example), and a soup that is as accurate and more
confident on the right answers is the better model; the paper's own rule (``>=`` on held-out
accuracy) would take any tie.

The trial soup, the ensemble and the refit are made at the end of the study by
:mod:`automl_pt.engine.finish`, which builds models through the trial runner; this module only
averages states, so the trial runner can use it for its epoch soup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..train.training import outranks

#: epochs of a trial kept (on the CPU) for its epoch soup
KEEP_EPOCHS = 3
#: trials that are candidates for the end-of-study trial soup
SOUP_TRIALS = 4
SOUP_FILE = "soup.safetensors"
WEIGHTS_FILE = "model.safetensors"

State = dict  # parameter name -> tensor
#: a state's validation result: ``(metrics, validation loss or None)``
Scored = tuple[dict[str, float], "float | None"]


# -- averaging ------------------------------------------------------------------------------
def compatible(a: State, b: State) -> bool:
    """Whether two states have the same parameter names and shapes (same architecture)."""
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def average_states(states: list[State]) -> State:
    """The uniform average of ``states`` (floating-point tensors, summed in float64 and cast back,
    so the average of identical states is exactly the state); integer buffers (step counters, position ids) are the first state's. Raises
    :class:`ValueError` when the states do not share names and shapes."""
    import torch

    if not states:
        raise ValueError("nothing to average")
    first = states[0]
    for other in states[1:]:
        if not compatible(first, other):
            raise ValueError("states with different parameter names or shapes cannot be averaged")
    out = {}
    for k, v in first.items():
        if v.is_floating_point():
            total = torch.zeros_like(v, dtype=torch.float64)
            for s in states:
                total += s[k].double()
            out[k] = (total / len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


@dataclass
class Soup:
    """An averaged state, the labels of its members (best first), its validation metrics and
    validation loss."""

    state: State
    members: list[Any]
    metrics: dict[str, float]
    tried: list[Any] = field(default_factory=list)
    loss: float | None = None


def greedy_soup(ingredients: list[tuple[Any, State, Scored | None]],
                score: Callable[[State], Scored], metric: str, maximize: bool) -> Soup:
    """Greedy soup over ``ingredients`` = ``(label, state, (metrics, loss) or None)``, best
    first: start from the first; add each next (compatible) one to the uniform average only if
    the average outranks the soup so far on validation (:func:`outranks`: a better ``metric``,
    or the same and a lower loss). Never worse than the first ingredient on validation; exactly
    the first ingredient when nothing helps. ``score(state)`` returns ``(metrics, loss)``; a
    known result of an ingredient saves a pass."""
    label, state, known = ingredients[0]
    metrics, loss = known if known is not None else score(state)
    soup = Soup(state, [label], metrics, tried=[label], loss=loss)
    members = [state]
    for label, state, _ in ingredients[1:]:
        if not compatible(soup.state, state):
            continue
        soup.tried.append(label)
        candidate = average_states([*members, state])
        values, loss = score(candidate)
        if outranks(values[metric], loss, soup.metrics[metric], soup.loss, maximize):
            members.append(state)
            soup.state, soup.metrics, soup.loss = candidate, values, loss
            soup.members.append(label)
    return soup


def uniform_soup(ingredients: list[tuple[Any, State, Scored | None]],
                 score: Callable[[State], Scored]) -> Soup:
    """The uniform average of the first ingredient and every later one compatible with it."""
    first = ingredients[0][1]
    chosen = [(label, s) for label, s, _ in ingredients if compatible(first, s)]
    state = average_states([s for _, s in chosen]) if len(chosen) > 1 else first
    labels = [label for label, _ in chosen]
    metrics, loss = score(state) if len(chosen) > 1 else (ingredients[0][2] or score(state))
    return Soup(state, labels, metrics, tried=labels, loss=loss)


def make_soup(mode: str, ingredients: list, score: Callable[[State], Scored],
              metric: str, maximize: bool) -> Soup:
    if mode == "uniform":
        return uniform_soup(ingredients, score)
    return greedy_soup(ingredients, score, metric, maximize)


# -- the epoch soup of one trial ------------------------------------------------------------
def epoch_soup(model: Any, task: Any, result: Any, val: dict, val_labels: Any, metrics: dict,
               metric: str, maximize: bool, device: Any, batch_size: int, collate: Callable,
               mode: str) -> Soup | None:
    """Average the best epochs of a finished :func:`~automl_pt.train.training.fine_tune` run
    (``result.top_states``) by ``mode``; ``None`` when fewer than two epochs were kept. The
    model's weights are left as the last one evaluated (the caller saves ``best_state``)."""
    from ..train.training import evaluate

    if mode == "none" or len(result.top_states) < 2:
        return None

    def score(state: State) -> Scored:
        model.load_state_dict(state)
        values, _, probs = evaluate(model, task, val, val_labels, metrics, device, batch_size, collate,
                                    calibrate=True)
        return values, task.validation_loss(val_labels, probs)

    ingredients = [(epoch, state, (values, loss)) for epoch, values, state, loss in result.top_states]
    return make_soup(mode, ingredients, score, metric, maximize)


def save_epoch_soup(soup: Soup, trial: Any, trial_dir: Path) -> None:
    """Record a trial's epoch soup: weights in ``soup.safetensors`` when it averages more than
    one epoch, and ``{"epochs", "tried", "metrics", "validation_loss"}`` in the trial's
    ``epoch_soup`` attribute."""
    from ..core.io import save_state

    if len(soup.members) > 1:
        save_state(soup.state, trial_dir / SOUP_FILE)
    else:
        (trial_dir / SOUP_FILE).unlink(missing_ok=True)
    trial.set_user_attr("epoch_soup", {"epochs": [int(e) for e in soup.members],
                                       "tried": [int(e) for e in soup.tried], "metrics": soup.metrics,
                                       "validation_loss": soup.loss})


# -- end of study ---------------------------------------------------------------------------
def kept_trials(config: Any) -> int:
    """How many top trials keep their weights until the end of the study."""
    keep = 1
    if config.search.soup != "none":
        keep = SOUP_TRIALS
    return max(keep, int(config.search.ensemble or 0))
