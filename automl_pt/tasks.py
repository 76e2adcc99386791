"""Tasks: one contract for every shape of target.

A task owns everything about its targets; backbones only produce features. :class:`Task` is the
contract, in the order a study uses it:

* **data** (no torch): :meth:`~Task.read_targets` parses a split's label column (a class name, a
  number, a set of labels...) and names bad rows; :meth:`~Task.label_names` derives the outputs'
  names from the training targets; :meth:`~Task.encode_targets` turns targets into the array a
  :class:`~automl_pt.spec.data.Split` keeps (``labels``); :meth:`~Task.stratify` groups examples for
  the held-out validation split; :meth:`~Task.check_targets` warns about thin data;
* **model**: :meth:`~Task.fit` sees the training targets once (class counts, target mean and
  standard deviation); :meth:`~Task.build_head` puts a head on the backbone's features
  (``features = "pooled"``: ``(batch, dim)``; ``"positions"``: per token / patch / frame, see
  :meth:`automl_pt.model.Backbone.encode_positions`); :meth:`~Task.loss`;
  :meth:`~Task.fit_probe` fits a ``linear_probe`` trial in closed form where the task has one;
* **outputs**: :meth:`~Task.predict` turns logits into ``(predictions, probabilities)``, what
  metrics score; :meth:`~Task.calibrate` tunes decision values on validation (multi-label
  thresholds); :meth:`~Task.state` / :meth:`~Task.load_state` carry what was fitted or tuned to
  an exported model as JSON data; :meth:`~Task.decode` gives what ``predict`` returns per input;
* **reports and label efficiency**: :attr:`~Task.report`, :meth:`~Task.test_table`,
  :meth:`~Task.test_figure` (with :attr:`~Task.report_inputs`),
  :attr:`~Task.budget_unit` and :meth:`~Task.subset_indices`.

:class:`ClassificationTask`, :class:`RegressionTask` and :class:`MultilabelTask` implement it;
a plugin registers a task of one of these kinds for its modality with :func:`task_info`. This
module imports torch only inside the methods that need it, so registering tasks stays instant.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .errors import DataError, ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .core.linear import ProbeFit
    from .registry import TaskInfo

#: a class (or label) with fewer training examples than this gets a warning
FEW_EXAMPLES = 5
#: how many rows an error message lists
ROWS_LISTED = 10
#: ``[data] label_separator`` default: ``"a|b"`` is the label set {a, b}
LABEL_SEPARATOR = "|"
#: class weights a classification study may use (trial parameter ``class_weights``)
CLASS_WEIGHTS = ("none", "balanced")
#: largest balanced weight of a class / label (a class of one example must not dominate)
MAX_CLASS_WEIGHT = 50.0
#: a per-position target that the loss and the metrics leave out (padding, a word's later subwords)
IGNORE = -100
#: thresholds a multi-label task tries per label on validation
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def rows_text(rows: np.ndarray) -> str:
    """``"3, 7, 9 and 12 more"``: 1-based data rows for an error message."""
    rows = np.asarray(rows)
    shown = ", ".join(str(int(r)) for r in rows[:ROWS_LISTED])
    more = f" and {len(rows) - ROWS_LISTED} more" if len(rows) > ROWS_LISTED else ""
    return f"{shown}{more}"


def natural_key(s: str):
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)


def label_str(v: Any) -> str:
    """A class label as text: ``1.0`` → ``"1"``, ``" spam "`` → ``"spam"``."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def random_subset(n: int, budget: int | str, seed: int) -> np.ndarray:
    """Sorted positions of ``budget`` of ``n`` examples drawn with ``seed`` (``"all"``: every
    one); nested across budgets for one seed (the first ``budget`` of one permutation). What
    :meth:`Task.subset_indices` is for tasks whose budget counts examples."""
    if budget == "all":
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:int(budget)])


def head_width(backbone: Any, features: str) -> Any:
    """The feature width a head reading ``features`` is built for on ``backbone``:
    ``position_dim`` for ``"positions"``, the ``(channels, stride)`` of each level
    (``level_dims``) for ``"levels"``, else ``feature_dim``."""
    if features == "positions":
        return int(backbone.position_dim)
    if features == "levels":   # (channels, stride) per level
        dims = tuple(backbone.level_dims)
        if not dims:
            backbone.encode_levels({})   # the backbone has none: its refusal names it
        return dims
    return int(backbone.feature_dim)


class Task:
    """The task contract (see the module docstring). The defaults are single-label
    classification's, so a plugin task that only overrides :meth:`build_head`, :meth:`loss` and
    :meth:`predict` reads its data as class labels."""

    name: str = ""
    kind: str = "classification"
    #: the head reads ``"pooled"`` features ``(batch, dim)``, ``"positions"`` or ``"levels"``
    #: (maps at several resolutions, :meth:`automl_pt.model.Backbone.encode_levels`);
    #: ``"backbone"``: it is given the backbone itself (see :meth:`make_head`)
    features: str = "pooled"
    #: label efficiency budgets: ``"per_class"`` (labels per class) or ``"examples"``
    budget_unit: str = "per_class"
    #: what a label-efficiency budget counts, in words, for plots and tables (``""``: "labels
    #: per class" or "labelled examples", by :attr:`budget_unit`)
    budget_noun: str = ""
    #: what the report shows for the best model's test predictions: ``"confusion"`` (a
    #: confusion matrix), ``"scatter"`` (predicted vs. true numbers), ``"per_label"`` (F1 per label)
    report: str = "confusion"
    #: ``linear_probe`` trials are fitted in closed form by :meth:`fit_probe`
    closed_form_probe: bool = False
    #: :meth:`predict` depends on values tuned on validation by :meth:`calibrate`
    needs_calibration: bool = False
    #: ``label_smoothing`` and ``mixup`` (soft single-label targets) apply
    single_label: bool = True
    #: what an ``onnx`` / ``torchscript`` export returns (its output's name): ``"logits"``
    #: (softmax gives probabilities), ``"values"`` (numbers in the target's units) or
    #: ``"probabilities"`` (one sigmoid per label); see :meth:`export_head`, :meth:`export_outputs`
    export_output: str = "logits"
    #: the model reads the training targets (teacher forcing: a decoder's inputs): training puts
    #: them in the batch as ``batch["targets"]`` and :meth:`loss` receives what the model made
    #: of them (it may compute the loss itself); evaluation batches carry no targets
    targets_in_batch: bool = False
    #: the pretrained model scores the task before any fine-tuning (a speech recogniser
    #: transcribes zero-shot): the study scores it on validation and test once and keeps it as
    #: ``baseline`` (``best/metrics.json``, the results store, the leaderboard)
    scores_baseline: bool = False
    _class_weight: Any = None

    # -- data ------------------------------------------------------------------------------
    def read_targets(self, values: list, rows: np.ndarray, source: str, split: str,
                     options: dict | None = None) -> list:
        """Targets parsed from a split's label values (``None`` where missing; the caller has
        refused missing labels in labelled splits already). Raises :class:`DataError` naming
        the rows of values it cannot read."""
        return [None if v is None else label_str(v) for v in values]

    def align_inputs(self, inputs: list, targets: list, rows: np.ndarray, source: str,
                     split: str) -> list:
        """The split's inputs as the task reads them, checked against its targets (a tag per
        word of each sentence); :class:`DataError` naming the rows that do not match. The
        default returns ``inputs`` unchanged."""
        return inputs

    def label_names(self, targets: list, source: str, label_column: str) -> list[str]:
        """Names of the model's outputs, from the training targets (classes, labels, or the
        target column). Raises :class:`DataError` when the targets cannot train this task."""
        names = sorted({t for t in targets if t is not None}, key=natural_key)
        if len(names) < 2:
            raise DataError(f"{source}: training data has {len(names)} distinct label(s); "
                            "classification needs at least 2")
        return names

    def encode_targets(self, targets: list, label_names: list[str], rows: np.ndarray,
                       source: str, split: str) -> np.ndarray:
        """The array a split keeps (row ``i`` for example ``i``). Raises :class:`DataError`
        naming the rows whose targets the training split never had."""
        index = {n: i for i, n in enumerate(label_names)}
        unseen = np.array([t not in index for t in targets], dtype=bool)
        if unseen.any():
            names = sorted({t for t, u in zip(targets, unseen) if u})
            raise DataError(f"{source}: {int(unseen.sum())} row(s) in {split} have labels never seen in "
                            f"train ({', '.join(map(repr, names[:10]))}), data rows {rows_text(np.asarray(rows)[unseen])}")
        return np.array([index[t] for t in targets], dtype=np.int64)

    def stratify(self, encoded: np.ndarray) -> np.ndarray | None:
        """A group per example that the held-out validation split keeps in proportion (``None``:
        a random split)."""
        return encoded

    def class_counts(self, encoded: np.ndarray, label_names: list[str]) -> np.ndarray | None:
        """Training examples per class / label (``None`` where classes mean nothing)."""
        return np.bincount(encoded, minlength=len(label_names))

    def check_targets(self, encoded: np.ndarray, label_names: list[str], source: str) -> None:
        """Warn (:class:`~automl_pt.errors.DataWarning`) about classes with very few training
        examples."""
        counts = self.class_counts(encoded, label_names)
        if counts is None:
            return
        from .errors import DataWarning

        few = [(n, int(c)) for n, c in zip(label_names, counts) if c < FEW_EXAMPLES]
        if few:
            listed = ", ".join(f"{n!r} ({c})" for n, c in few[:10]) + (" ..." if len(few) > 10 else "")
            unit = "class" if self.kind == "classification" else "label"
            warnings.warn(f"{source}: {len(few)} {unit}{'es' if unit == 'class' and len(few) > 1 else 's' if len(few) > 1 else ''} with fewer "
                          f"than {FEW_EXAMPLES} training examples: {listed}; their scores will be noisy "
                          "(more examples help; [search.space] class_weights = [\"none\", \"balanced\"] "
                          "searches balanced class weights)", DataWarning, stacklevel=3)

    def imbalanced(self, encoded: np.ndarray, label_names: list[str]) -> bool:
        """Whether the most frequent class has at least 3x the examples of the rarest: the study
        then searches ``class_weights`` (none / balanced) unless the study file fixes it."""
        counts = self.class_counts(encoded, label_names)
        if counts is None or len(counts) == 0 or counts.min() <= 0:
            return counts is not None and len(counts) > 0 and counts.max() > 0
        return bool(counts.max() >= 3 * counts.min())

    # -- model -----------------------------------------------------------------------------
    def fit(self, train_targets: np.ndarray, label_names: list[str]) -> None:
        """See the training targets once before training (class weights, target scaling)."""
        counts = self.class_counts(np.asarray(train_targets), label_names)
        self._class_weight = None if counts is None else balanced_weights(counts, len(train_targets))

    def state(self) -> dict[str, Any]:
        """What :meth:`fit` / :meth:`calibrate` learnt that predictions need, as JSON data
        (saved in the exported model's manifest, ``task_state``)."""
        return {}

    def load_state(self, state: dict[str, Any], where: str) -> None:
        """Restore :meth:`state` read from an exported model; :class:`ModelLoadError` naming
        ``where`` when a value is missing or of the wrong type."""
        return None

    def num_outputs(self, label_names: list[str]) -> int:
        return len(label_names)

    def build_head(self, feature_dim: int, num_labels: int, params: dict) -> "torch.nn.Module":
        from .heads import ClassificationHead

        return ClassificationHead(feature_dim, num_labels, float(params.get("dropout", 0.1)))

    def make_head(self, backbone: Any, num_outputs: int, params: dict) -> "torch.nn.Module":
        """The head for ``backbone`` (every model of a study is built through this). The default
        is :meth:`build_head` on the width :attr:`features` reads
        (:func:`head_width`: ``position_dim`` for ``"positions"``, the
        ``(channels, stride)`` of each level for ``"levels"``, else ``feature_dim``); a task whose head depends on the backbone (a
        sequence decoder the backbone carries, a per-frame classifier otherwise) overrides it.
        A head whose ``features`` attribute is ``"backbone"`` is called as ``head(backbone,
        batch)`` and drives the backbone itself (see :class:`automl_pt.model.TrialModel`)."""
        return self.build_head(head_width(backbone, self.features), num_outputs, params)

    #: options ``Predictor.predict(..., **options)`` accepts for this task (name -> type), set on
    #: the head by :meth:`set_predict_options` (e.g. a beam size for generation)
    predict_options: dict[str, type] = {}

    def set_predict_options(self, head: Any, options: dict[str, Any]) -> None:
        """Apply prediction options to ``head`` (each an attribute of that name). ``ValueError``
        naming the task's options for an unknown one or a value of the wrong type."""
        for key, value in options.items():
            kind = self.predict_options.get(key)
            if kind is None:
                known = ", ".join(self.predict_options) or "none"
                raise ValueError(f"task {self.name!r} has no prediction option {key!r} (options: {known})")
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"prediction option {key!r} must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, kind) or (kind is int and value < 1):
                raise ValueError(f"prediction option {key!r} must be a positive {kind.__name__}, got {value!r}")
            setattr(head, key, value)

    def scores_zero_shot(self, head: Any) -> bool:
        """Whether a model of this task with ``head`` (as :meth:`make_head` built it on the
        pretrained backbone, before any training) already predicts something meaningful (a
        decoder the backbone carries; never a freshly initialised layer). Only asked where
        :attr:`scores_baseline`."""
        return False

    def predictions_frame(self, labels: np.ndarray, predictions: Any) -> Any:
        """The best model's test predictions as ``test_predictions.parquet`` keeps them (a
        pandas DataFrame), or ``None`` for the core's table of the task's kind (class indices,
        numbers, label sets)."""
        return None

    def target_tensor(self, targets: np.ndarray) -> "torch.Tensor":
        import torch

        return torch.as_tensor(np.asarray(targets), dtype=torch.long)

    def loss(self, logits: "torch.Tensor", targets: "torch.Tensor", params: dict) -> "torch.Tensor":
        raise NotImplementedError

    def predict(self, logits: "torch.Tensor") -> tuple[np.ndarray, Any]:
        """``(predictions, probabilities)`` from logits (what metrics score)."""
        raise NotImplementedError

    def calibrate(self, logits: "torch.Tensor", targets: np.ndarray) -> None:
        """Tune decision values on validation outputs (see :attr:`needs_calibration`)."""
        return None

    def validation_loss(self, targets: np.ndarray, probabilities: Any) -> float | None:
        """A finer score of the validation outputs than the study's metric, lower is better:
        trials that tie on the metric (accuracy on a small validation split often does) rank
        by it (:func:`automl_pt.storage.store.best_trial`). ``None`` (the default): none."""
        return None

    def distill_targets(self, targets: np.ndarray, teacher: list[tuple[np.ndarray, Any]],
                        weight: float) -> np.ndarray | None:
        """Training targets for distilling an ensemble into one model (``[search] distill``):
        the encoded ``targets`` mixed with the teacher's, ``teacher`` being each ensemble
        member's :meth:`predict` output ``(predictions, probabilities)`` on the same examples
        and ``weight`` the teacher's share. ``None`` (the default): the task does not distill."""
        return None

    def fit_probe(self, train_x: "torch.Tensor", train_y: np.ndarray, val_x: "torch.Tensor",
                  val_y: np.ndarray, num_outputs: int,
                  score: Callable[[Any, Any], dict[str, float]], objective_metric: str,
                  maximize: bool) -> "ProbeFit":
        """A linear head fitted in closed form on frozen features (see :mod:`automl_pt.train.probe`);
        ``score(predictions, probabilities)`` gives the validation metrics of what
        :meth:`predict` makes of the validation logits. Only where ``closed_form_probe``."""
        raise NotImplementedError

    def decode(self, predictions: np.ndarray, probabilities: Any, label_names: list[str]) -> list:
        """What ``predict`` returns per input: a label, a list of labels, a number."""
        return [label_names[int(i)] for i in predictions]

    # -- export ---------------------------------------------------------------------------------
    def export_head(self, head: "torch.nn.Module") -> "torch.nn.Module":
        """The head as exported models carry it (every format but ``native``): one whose
        outputs mean what the task predicts wherever a linear layer can hold that (regression:
        the target's mean and standard deviation folded into the final linear layer). The
        default is ``head`` itself."""
        return head

    def export_shape(self, label_names: list[str]) -> list:
        """The shape of what an ``onnx`` / ``torchscript`` export returns, as recorded in
        ``automl_pt_export.json`` (``"batch"`` and sizes or names of the other axes)."""
        if self.features == "positions":   # an output per position of the input
            return ["batch", "position", self.num_outputs(label_names)]
        return ["batch", self.num_outputs(label_names)]

    def export_outputs(self, outputs: "torch.Tensor") -> "torch.Tensor":
        """What an ``onnx`` / ``torchscript`` export returns from :meth:`export_head`'s outputs
        (:attr:`export_output` names it; multi-label: the sigmoid). Traced, so torch ops only."""
        return outputs

    def export_files(self, model: "torch.nn.Module", fmt: str, directory: Any,
                     sample_outputs: Callable[[], list["torch.Tensor"]]) -> dict[str, Any]:
        """Files an ``onnx`` / ``torchscript`` export of this task needs besides the main one
        (e.g. a speech recogniser's decoder, which turns the exported encoder's states into
        text), written into ``directory``; ``sample_outputs()`` computes the main file's outputs
        on the two sample batches it was checked on (only a task that needs them pays for
        them). Returns what ``automl_pt_export.json`` records of them
        (``files``: role -> file name, merged with the main file's; anything else is added as
        is). None by default; raise :class:`~automl_pt.export.support.ExportFormatError` for a
        format the task cannot complete."""
        return {}

    # -- reports -------------------------------------------------------------------------------
    def test_table(self, labels: np.ndarray, predictions: Any) -> Any:
        """Test scores broken down by what the task knows of its outputs, which the report shows
        under the best model's test figure: a pandas DataFrame (a row per group, e.g. per kind
        of span; ``attrs["title"]`` says what the rows are), or ``None`` (the default: the
        figure says it all). ``predictions`` are :meth:`predict`'s."""
        return None

    #: the best model's test predictions keep each test input (an ``input`` column of
    #: ``best/test_predictions.parquet``: a file path, as the split held it), for :meth:`test_figure`
    report_inputs: bool = False

    def test_figure(self, frame: Any, label_names: list[str]) -> Any:
        """A figure of the best model's test predictions that the report shows in its test
        section (a matplotlib Figure), or ``None`` (the default: the core's figure of the task's
        kind, if any). ``frame`` is ``best/test_predictions.parquet`` as written at export
        (:meth:`predictions_frame`, or the core's table), with an ``input`` column where
        :attr:`report_inputs`; the task's :meth:`state` has been loaded from the exported model."""
        return None

    # -- label efficiency ----------------------------------------------------------------------
    def subset_indices(self, targets: np.ndarray, budget: int | str, seed: int) -> np.ndarray:
        """Positions of a training subset of ``budget`` units (:attr:`budget_unit`; ``"all"``:
        every labelled example), drawn with ``seed``, nested across budgets for one seed.
        Classification: ``budget`` examples of every class (all of a class that has fewer)."""
        labels = np.asarray(targets)
        if budget == "all":
            return np.flatnonzero(labels >= 0)
        rng = np.random.default_rng(seed)
        picked = []
        for c in np.unique(labels[labels >= 0]):
            idx = np.flatnonzero(labels == c)
            picked.append(idx[rng.permutation(len(idx))][:int(budget)])
        return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def concat_targets(*parts: np.ndarray) -> np.ndarray:
    """Encoded targets of several splits as one array. Per-position targets (a tag per word,
    ``IGNORE`` where a sentence has no more words) are padded to the widest split first; so are
    targets that are a variable-length list of items per example, ``(examples, items, values)``
    float arrays padded with NaN rows."""
    if all(p.ndim == 2 for p in parts) and len({p.shape[1] for p in parts}) > 1:
        width = max(p.shape[1] for p in parts)
        parts = tuple(np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=IGNORE) for p in parts)
    elif all(p.ndim == 3 for p in parts) and len({p.shape[1] for p in parts}) > 1:
        # a variable-length list of items per example (rows of numbers, NaN-padded)
        width = max(p.shape[1] for p in parts)
        parts = tuple(np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=np.nan)
                      for p in parts)
    return np.concatenate(parts)


def balanced_weights(counts: np.ndarray, n: int) -> np.ndarray:
    """``n / (classes * count)`` per class (scikit-learn's "balanced"), capped at
    :data:`MAX_CLASS_WEIGHT`; a class without examples gets weight 1."""
    counts = np.asarray(counts, dtype=np.float64)
    w = np.where(counts > 0, n / (len(counts) * np.maximum(counts, 1)), 1.0)
    return np.minimum(w, MAX_CLASS_WEIGHT).astype(np.float32)


class ClassificationTask(Task):
    """Single-label classification: linear head over pooled features, cross-entropy with label
    smoothing (and balanced class weights where ``class_weights = "balanced"``), softmax
    probabilities; the probe is multinomial logistic regression."""

    closed_form_probe = True

    def __init__(self, name: str = "classification"):
        self.name = name
        self._class_weight: np.ndarray | None = None

    def target_tensor(self, targets):
        """Class indices, or (distillation) a float ``(examples, classes)`` matrix of soft
        targets, which the cross-entropy reads as probabilities."""
        import torch

        targets = np.asarray(targets)
        if targets.ndim == 2 and targets.dtype.kind == "f":
            return torch.as_tensor(targets, dtype=torch.float32)
        return torch.as_tensor(targets, dtype=torch.long)

    def distill_targets(self, targets, teacher, weight):
        """``(1 - weight) * one-hot + weight * the members' averaged probabilities``."""
        probs = np.mean([np.asarray(p, dtype=np.float64) for _, p in teacher], axis=0)
        onehot = np.eye(probs.shape[1])[np.asarray(targets, dtype=np.int64)]
        return ((1.0 - weight) * onehot + weight * probs).astype(np.float32)

    def loss(self, logits, targets, params):
        import torch

        weight = None
        if params.get("class_weights", "none") == "balanced" and self._class_weight is not None:
            weight = torch.as_tensor(self._class_weight, device=logits.device)
        return torch.nn.functional.cross_entropy(logits.float(), targets, weight=weight,
                                                 label_smoothing=float(params.get("label_smoothing", 0.0)))

    def predict(self, logits):
        import torch

        probs = torch.softmax(logits.detach().float(), dim=-1).cpu().numpy()
        return probs.argmax(axis=1), probs

    def validation_loss(self, targets, probabilities):
        """Mean negative log-likelihood of the true labels (cross-entropy without smoothing)."""
        if probabilities is None or len(targets) == 0:
            return None
        probs = np.asarray(probabilities, dtype=np.float64)
        true = probs[np.arange(len(targets)), np.asarray(targets, dtype=np.int64)]
        return float(-np.log(np.clip(true, 1e-12, 1.0)).mean())

    def fit_probe(self, train_x, train_y, val_x, val_y, num_outputs, score, objective_metric, maximize):
        from .core.linear import fit_logistic

        return fit_logistic(train_x, train_y, val_x, val_y, num_outputs,
                            lambda y, preds, probs: score(preds, probs), objective_metric, maximize)


class RegressionTask(Task):
    """One number per example: a linear head on pooled features, mean squared error on
    standardised targets (the training targets' mean and standard deviation, saved with the
    model), predictions un-scaled; the probe is ridge regression in closed form."""

    kind = "regression"
    budget_unit = "examples"
    report = "scatter"
    closed_form_probe = True
    single_label = False

    def __init__(self, name: str = "regression"):
        self.name = name
        self.mean, self.std = 0.0, 1.0

    def read_targets(self, values, rows, source, split, options=None):
        out, bad = [], []
        for v, row in zip(values, rows):
            if v is None:
                out.append(None)
                continue
            try:
                x = float(v.strip() if isinstance(v, str) else v)
                if isinstance(v, bool) or not math.isfinite(x):
                    raise ValueError
            except (TypeError, ValueError):
                bad.append((int(row), v))
                x = float("nan")
            out.append(x)
        if bad:
            listed = ", ".join(f"row {r}: {v!r}" for r, v in bad[:ROWS_LISTED])
            raise DataError(f"{source}: {len(bad)} label(s) in {split} are not finite numbers, as "
                            f"task {self.name!r} needs ({listed}{' ...' if len(bad) > ROWS_LISTED else ''})")
        return out

    def label_names(self, targets, source, label_column):
        values = np.array([t for t in targets if t is not None], dtype=np.float64)
        if len(values) < 2 or float(values.std()) == 0.0:
            raise DataError(f"{source}: the training targets in column {label_column!r} are all the "
                            "same number; regression needs targets that vary")
        return [label_column]

    def encode_targets(self, targets, label_names, rows, source, split):
        return np.array(targets, dtype=np.float32)

    def stratify(self, encoded):
        """Quintiles of the target, so validation spans its range."""
        if len(encoded) < 10:
            return None
        edges = np.quantile(encoded, [0.2, 0.4, 0.6, 0.8])
        return np.searchsorted(edges, encoded, side="right")

    def class_counts(self, encoded, label_names):
        return None

    def imbalanced(self, encoded, label_names):
        return False

    def fit(self, train_targets, label_names):
        y = np.asarray(train_targets, dtype=np.float64)
        self.mean = float(y.mean())
        self.std = float(y.std()) or 1.0

    def state(self):
        return {"target_mean": self.mean, "target_std": self.std}

    def load_state(self, state, where):
        for key in ("target_mean", "target_std"):
            v = state.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ModelLoadError(f"{where}: task_state.{key} must be a finite number, got {v!r}; "
                                     "re-export the model")
        if state["target_std"] <= 0:
            raise ModelLoadError(f"{where}: task_state.target_std must be positive; re-export the model")
        self.mean, self.std = float(state["target_mean"]), float(state["target_std"])

    def num_outputs(self, label_names):
        return 1

    def target_tensor(self, targets):
        import torch

        return torch.as_tensor((np.asarray(targets, dtype=np.float64) - self.mean) / self.std,
                               dtype=torch.float32)

    def loss(self, logits, targets, params):
        import torch

        return torch.nn.functional.mse_loss(logits.float().reshape(-1), targets.float().reshape(-1))

    def predict(self, logits):
        values = logits.detach().float().reshape(len(logits), -1)[:, 0].cpu().numpy()
        return values.astype(np.float64) * self.std + self.mean, None

    def distill_targets(self, targets, teacher, weight):
        """``(1 - weight) * target + weight * the members' averaged predictions``."""
        values = np.mean([np.asarray(v, dtype=np.float64) for v, _ in teacher], axis=0)
        return (1.0 - weight) * np.asarray(targets, dtype=np.float64) + weight * values

    def fit_probe(self, train_x, train_y, val_x, val_y, num_outputs, score, objective_metric, maximize):
        from .core.linear import fit_ridge

        def score_logits(logits):
            return score(*self.predict(logits))

        return fit_ridge(train_x, self.target_tensor(train_y), val_x, self.target_tensor(val_y),
                         score_logits, objective_metric, maximize)

    def decode(self, predictions, probabilities, label_names):
        return [float(v) for v in predictions]

    export_output = "values"

    def export_head(self, head):
        """A copy of ``head`` whose final linear layer (``head.linear``) outputs numbers in the
        target's units: ``weight * std`` and ``bias * std + mean``, so exported models need no
        un-scaling step. :class:`ModelLoadError` for a head without such a layer."""
        import copy

        import torch

        linear = getattr(head, "linear", None)
        if not isinstance(linear, torch.nn.Linear) or linear.out_features != 1 or linear.bias is None:
            raise ModelLoadError(f"task {self.name!r}: the head {type(head).__name__} has no final "
                                 "linear layer with one output (head.linear) to fold the target's "
                                 "mean and standard deviation into; export 'native' instead")
        folded = copy.deepcopy(head).eval()
        with torch.no_grad():
            folded.linear.weight.mul_(self.std)
            folded.linear.bias.mul_(self.std).add_(self.mean)
        return folded

    def subset_indices(self, targets, budget, seed):
        return random_subset(len(targets), budget, seed)


class MultilabelTask(Task):
    """A set of labels per example (``"a|b"`` joined by ``[data] label_separator``, or a list):
    a linear head with one sigmoid output per label, binary cross-entropy (positives weighted by
    their rarity where ``class_weights = "balanced"``), per-label decision thresholds tuned on
    validation for F1 and saved with the model; the probe is one-vs-rest logistic regression."""

    kind = "multilabel"
    report = "per_label"
    closed_form_probe = True
    needs_calibration = True
    single_label = False

    def __init__(self, name: str = "multilabel"):
        self.name = name
        self.thresholds: np.ndarray | None = None
        self._pos_weight: np.ndarray | None = None

    def read_targets(self, values, rows, source, split, options=None):
        sep = (options or {}).get("label_separator") or LABEL_SEPARATOR
        out, bad = [], []
        for v, row in zip(values, rows):
            if v is None:
                out.append(None)
                continue
            if isinstance(v, np.ndarray):
                v = v.tolist()
            if isinstance(v, (list, tuple)):
                items = v
            elif isinstance(v, str):
                items = v.split(sep)
            else:
                items = [v]
            labels = [label_str(x) for x in items if x is not None]
            if any(not x for x in labels) or any(isinstance(x, (list, dict)) for x in items):
                bad.append((int(row), v))
            out.append(tuple(sorted(set(x for x in labels if x), key=natural_key)))
        if bad:
            listed = ", ".join(f"row {r}: {v!r}" for r, v in bad[:ROWS_LISTED])
            raise DataError(f"{source}: {len(bad)} label set(s) in {split} have an empty label ({listed}); "
                            f"join labels with {sep!r} ([data] label_separator) or give a list")
        return out

    def label_names(self, targets, source, label_column):
        names = sorted({x for t in targets if t is not None for x in t}, key=natural_key)
        if len(names) < 2:
            raise DataError(f"{source}: training data has {len(names)} distinct label(s) in column "
                            f"{label_column!r}; multi-label classification needs at least 2")
        return names

    def encode_targets(self, targets, label_names, rows, source, split):
        index = {n: i for i, n in enumerate(label_names)}
        unseen = np.array([any(x not in index for x in t) for t in targets], dtype=bool)
        if unseen.any():
            names = sorted({x for t in targets for x in t if x not in index})
            raise DataError(f"{source}: {int(unseen.sum())} row(s) in {split} have labels never seen in "
                            f"train ({', '.join(map(repr, names[:10]))}), data rows {rows_text(np.asarray(rows)[unseen])}")
        out = np.zeros((len(targets), len(label_names)), dtype=np.float32)
        for i, t in enumerate(targets):
            out[i, [index[x] for x in t]] = 1.0
        return out

    def stratify(self, encoded):
        """Each example's rarest label (``-1``: none), so rare labels reach validation."""
        counts = encoded.sum(0)
        rarity = np.where(encoded > 0, counts[None, :], np.inf)
        group = rarity.argmin(1)
        return np.where(np.isfinite(rarity.min(1)), group, -1)

    def class_counts(self, encoded, label_names):
        return np.asarray(encoded).sum(0).astype(np.int64)

    def fit(self, train_targets, label_names):
        y = np.asarray(train_targets, dtype=np.float64)
        pos = y.sum(0)
        self._pos_weight = np.minimum((len(y) - pos) / np.maximum(pos, 1), MAX_CLASS_WEIGHT).astype(np.float32)

    def state(self):
        return {"thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds]}

    def load_state(self, state, where):
        t = state.get("thresholds")
        if t is None:
            self.thresholds = None
            return
        if not isinstance(t, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                              and 0.0 <= x <= 1.0 for x in t):
            raise ModelLoadError(f"{where}: task_state.thresholds must be a list of numbers in [0, 1]; "
                                 "re-export the model")
        self.thresholds = np.asarray(t, dtype=np.float64)

    def target_tensor(self, targets):
        import torch

        return torch.as_tensor(np.asarray(targets), dtype=torch.float32)

    def loss(self, logits, targets, params):
        import torch

        pos_weight = None
        if params.get("class_weights", "none") == "balanced" and self._pos_weight is not None:
            pos_weight = torch.as_tensor(self._pos_weight, device=logits.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits.float(), targets.float(), pos_weight=pos_weight)

    def predict(self, logits):
        import torch

        probs = torch.sigmoid(logits.detach().float()).cpu().numpy().astype(np.float64)
        thresholds = 0.5 if self.thresholds is None or len(self.thresholds) != probs.shape[1] else self.thresholds
        return (probs >= thresholds).astype(np.int64), probs

    def validation_loss(self, targets, probabilities):
        """Mean binary cross-entropy over examples and labels."""
        if probabilities is None or len(targets) == 0:
            return None
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
        y = np.asarray(targets, dtype=np.float64)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())

    def distill_targets(self, targets, teacher, weight):
        """``(1 - weight) * 0/1 targets + weight * the members' averaged probabilities``."""
        probs = np.mean([np.asarray(p, dtype=np.float64) for _, p in teacher], axis=0)
        return ((1.0 - weight) * np.asarray(targets, dtype=np.float64) + weight * probs).astype(np.float32)

    def calibrate(self, logits, targets):
        """Per label, the threshold of :data:`THRESHOLDS` with the best F1 on these outputs
        (ties: the one nearest 0.5; a label absent from them keeps 0.5)."""
        import torch

        probs = torch.sigmoid(logits.detach().float()).cpu().numpy()
        self.thresholds = tune_thresholds(probs, np.asarray(targets))

    def fit_probe(self, train_x, train_y, val_x, val_y, num_outputs, score, objective_metric, maximize):
        import torch

        from .core.linear import fit_linear

        def score_logits(logits):
            self.calibrate(logits, val_y)
            return score(*self.predict(logits))

        return fit_linear(train_x, self.target_tensor(train_y), val_x, self.target_tensor(val_y),
                          num_outputs, torch.nn.functional.binary_cross_entropy_with_logits,
                          score_logits, objective_metric, maximize)

    def decode(self, predictions, probabilities, label_names):
        return [[n for n, on in zip(label_names, row) if on] for row in np.asarray(predictions)]

    export_output = "probabilities"

    def export_outputs(self, outputs):
        return outputs.sigmoid()

    def subset_indices(self, targets, budget, seed):
        """``budget`` examples of every label (examples with several labels count for each)."""
        targets = np.asarray(targets)
        if budget == "all":
            return np.arange(len(targets))
        rng = np.random.default_rng(seed)
        chosen: set[int] = set()
        for j in range(targets.shape[1]):
            idx = np.flatnonzero(targets[:, j] > 0)
            rng.shuffle(idx)
            chosen.update(idx[:int(budget)].tolist())
        return np.array(sorted(chosen), dtype=np.int64)


def tune_thresholds(probs: np.ndarray, targets: np.ndarray,
                    grid: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """Per column, the threshold of ``grid`` maximising F1 of ``probs >= t`` against ``targets``
    (ties: the one nearest 0.5; a column without positives keeps 0.5)."""
    grid_arr = np.asarray(grid, dtype=np.float64)
    out = np.full(probs.shape[1], 0.5)
    for j in range(probs.shape[1]):
        y = targets[:, j] > 0
        if not y.any():
            continue
        pred = probs[:, j][None, :] >= grid_arr[:, None]
        tp = (pred & y).sum(1)
        f1 = 2 * tp / np.maximum(pred.sum(1) + y.sum(), 1)
        best = f1.max()
        candidates = grid_arr[f1 >= best - 1e-12]
        out[j] = float(candidates[np.argmin(np.abs(candidates - 0.5))])
    return out


# -- registration ---------------------------------------------------------------------------
KINDS: dict[str, type[Task]] = {"classification": ClassificationTask, "regression": RegressionTask,
                                "multilabel": MultilabelTask}
#: metrics each kind computes every epoch (the default first)
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2", "spearman"),
    "multilabel": ("micro_f1", "macro_f1", "subset_accuracy", "mean_average_precision"),
}
DESCRIPTIONS = {"classification": "single-label {m} classification",
                "regression": "{m} regression: one number per example (a numeric label column)",
                "multilabel": "multi-label {m} classification: a set of labels per example "
                              "(joined by [data] label_separator, or a list)"}


def create_task(kind: str, name: str) -> Task:
    return KINDS[kind](name)


class _Creator:
    """A picklable ``TaskInfo.create``: ``create_task(kind, name)``."""

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name

    def __call__(self) -> Task:
        return create_task(self.kind, self.name)


def task_info(kind: str, name: str, modality: str, input_key: str, *,
              metrics: tuple[str, ...] | None = None, **fields: Any) -> "TaskInfo":
    """The :class:`~automl_pt.registry.TaskInfo` of a task of ``kind`` (``classification``,
    ``regression``, ``multilabel``) on ``modality``: a plugin pairs its inputs (``input_key``,
    ``input_is_path``, ``check_input``, ``default_backbones``) with the generic task.
    ``metrics`` replaces the kind's list (the first is the default)."""
    from .registry import TaskInfo

    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; one of {', '.join(KINDS)}")
    metrics = tuple(metrics or METRICS[kind])
    fields.setdefault("description", DESCRIPTIONS[kind].format(m=modality))
    return TaskInfo(name=name, modality=modality, create=_Creator(kind, name), metrics=metrics,
                    default_metric=metrics[0], input_key=input_key, kind=kind, **fields)


def make_task(info: "TaskInfo", data: Any = None) -> Task:
    """The task object of ``info``, fitted on ``data.train``'s targets when ``data`` is given."""
    task = info.create()
    if data is not None:
        task.fit(data.train.labels, data.label_names)
    return task
