"""Read, validate and split a study's data. Everything is checked before any training starts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import StudyConfig
from ..errors import DataError
from ..registry import Registry, TaskInfo

MAX_ROWS_LISTED = 10


@dataclass
class Split:
    """One split: raw inputs, targets and the source rows. ``labels`` is the task's encoding of
    the targets (:meth:`automl_pt.tasks.Task.encode_targets`): class indices (``-1`` when
    unlabelled), numbers, or an ``(examples, labels)`` 0/1 matrix."""

    name: str
    inputs: list[Any]
    labels: np.ndarray
    rows: np.ndarray          # 1-based data row numbers in the source (for error messages)
    source: str

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, positions: np.ndarray, name: str | None = None) -> "Split":
        """The examples at ``positions`` (an index array), same source."""
        return Split(name or self.name, [self.inputs[i] for i in positions], self.labels[positions],
                     self.rows[positions], self.source)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for x in self.inputs:
            h.update(str(x).encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]


@dataclass
class StudyData:
    train: Split
    validation: Split
    test: Split | None
    label_names: list[str]            # the outputs' names: classes, labels, or the target column
    skipped: dict[str, list[dict[str, Any]]] = None  # split -> [{"row", "input", "reason"}]
    kind: str = "classification"      # the task's kind (automl_pt.tasks)

    def describe(self) -> dict[str, Any]:
        skipped = {k: len(v) for k, v in (self.skipped or {}).items()}
        out = {"train": len(self.train), "validation": len(self.validation),
               "test": len(self.test) if self.test else 0, "labels": self.label_names,
               "skipped_bad_files": skipped, "skipped_total": sum(skipped.values())}
        if self.kind != "classification":
            out["kind"] = self.kind
        return out


def _rows(rows: np.ndarray) -> str:
    from ..tasks import rows_text

    return rows_text(rows)


def read_frame(source: Any, registry: Registry, options: dict, what: str):
    """A pandas DataFrame from a path (through the registered readers) or a Python object
    (DataFrame, list of dicts, dict of lists, Hugging Face ``datasets.Dataset``)."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    if isinstance(source, (str, Path)):
        path = Path(source)
        for reader in registry.readers.values():
            if reader.accepts(path):
                try:
                    return reader.read(path, options)
                except DataError:
                    raise
                except Exception as exc:
                    raise DataError(f"{what}: cannot read {path} with the {reader.name!r} reader: "
                                    f"{type(exc).__name__}: {exc}") from exc
        raise DataError(f"{what}: no data reader accepts {path} (readers: "
                        f"{', '.join(f'{r.name} ({r.description})' for r in registry.readers.values())})")
    if hasattr(source, "to_pandas"):
        return source.to_pandas()
    if isinstance(source, (list, dict)):
        return pd.DataFrame(source)
    raise DataError(f"{what}: unsupported data object {type(source).__name__}; give a path, a pandas "
                    "DataFrame, a list of dicts or a datasets.Dataset")


def _frame_to_split(frame, name: str, input_col: str | list[str], label_col: str, source: str,
                    require_labels: bool = True, variants: dict | None = None,
                    input_keys: list[str] | None = None, label_key: str = "label_column"
                    ) -> tuple[list[Any], list[Any], np.ndarray]:
    """Inputs, label values as written (``None`` where missing) and 1-based rows of a split's
    frame (the task parses the values: :meth:`automl_pt.tasks.Task.read_targets`). ``variants`` (label -> {how it is written: (source, first row)}) collects how each label is
    written, for :func:`_warn_label_variants`. With several input columns (``input_col`` a list,
    ``input_keys`` their ``[data]`` keys) every input is a tuple of the row's values."""
    import pandas as pd

    cols = [input_col] if isinstance(input_col, str) else list(input_col)
    keys = list(input_keys or ["text_column"] * len(cols))
    for col, key in [*zip(cols, keys), *([(label_col, label_key)] if require_labels else [])]:
        if col not in frame.columns:
            raise DataError(f"{source}: no column {col!r} (columns: {', '.join(map(str, frame.columns))}); "
                            f"set data.{key} in the study")
    if len(frame) == 0:
        raise DataError(f"{source}: {name} data is empty")
    rows = np.arange(1, len(frame) + 1)
    columns = [frame[col].tolist() for col in cols]
    for col, values in zip(cols, columns):
        check_not_empty(values, rows, col, name, source)
    inputs = columns[0] if len(columns) == 1 else list(zip(*columns))
    labels: list[str | None] = [None] * len(frame)
    if label_col in frame.columns:
        raw = frame[label_col].tolist()
        missing = np.array([not isinstance(v, (list, tuple, np.ndarray)) and (
            v is None or (isinstance(v, float) and np.isnan(v)) or
            (isinstance(v, str) and not v.strip()) or bool(pd.isna(v))) for v in raw], dtype=bool)
        if missing.any() and require_labels:
            raise DataError(f"{source}: {int(missing.sum())} missing label(s) in column {label_col!r} "
                            f"({name}), data rows {_rows(rows[missing])}")
        labels = [None if m else v for v, m in zip(raw, missing)]
        if variants is not None:
            for v, label, row in zip(raw, labels, rows):
                if label is not None:
                    variants.setdefault(_label_str(label), {}).setdefault(_written(v), (source, int(row)))
    return inputs, labels, rows


def is_empty_value(x: Any) -> bool:
    """Whether an input value is missing: ``None``, NaN, a blank string or an empty list (a
    sentence of no words)."""
    return (x is None or (isinstance(x, float) and np.isnan(x)) or (isinstance(x, str) and not x.strip())
            or (isinstance(x, (list, tuple, np.ndarray)) and len(x) == 0))


def check_not_empty(inputs: list, rows: np.ndarray, column: str, name: str, source: str) -> None:
    """Raise :class:`DataError` listing the data ``rows`` (1-based) of ``inputs`` that are empty
    (see :func:`is_empty_value`); ``name`` is the split (``train``...), ``source`` the table."""
    empty = np.array([is_empty_value(x) for x in inputs], dtype=bool)
    if empty.any():
        raise DataError(f"{source}: {int(empty.sum())} empty value(s) in column {column!r} "
                        f"({name}), data rows {_rows(rows[empty])}")


def input_problems(task: TaskInfo, inputs: list) -> list[tuple[int, str]]:
    """``(position, reason)`` for every input the task's ``check_input`` rejects (an exception
    in the check is a reason too; a missing library is raised). Empty when the task has none."""
    if task.check_input is None:
        return []
    problems = []
    for i, x in enumerate(inputs):
        try:
            reason = task.check_input(x)
        except ImportError:
            raise  # a missing library is not a bad file
        except Exception as exc:  # report the file as bad, with what went wrong
            reason = f"{type(exc).__name__}: {exc}"
        if reason:
            problems.append((i, reason))
    return problems


def _label_str(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _written(v: Any) -> str:
    """How a label value is written: ``1``, ``1.0``, ``'1'``, ``' spam'``."""
    return repr(v.item() if isinstance(v, np.generic) else v)


def _warn_label_variants(variants: dict[str, dict[str, tuple[str, int]]], label_names: list[str],
                         train_source: str) -> None:
    """A :class:`DataWarning` for every label written more than one way (they are read as one
    label: ``1`` / ``1.0`` / ``"1"``, ``"spam"`` / ``"spam "``), and for distinct labels that are
    the same number (``"1"`` and ``"1.0"``: two classes)."""
    import math
    import warnings

    from ..errors import DataWarning

    for label, ways in variants.items():
        if len(ways) < 2:
            continue
        places: dict[str, list[str]] = {}
        for source, row in ways.values():
            places.setdefault(source, []).append(str(row))
        where = "; ".join(f"{src} row{'s' if len(r) > 1 else ''} {', '.join(r)}" for src, r in places.items())
        warnings.warn(f"label {label!r} is written {len(ways)} ways: {', '.join(ways)} (first at {where}); "
                      "they are read as one label", DataWarning, stacklevel=3)
    numbers: dict[float, list[str]] = {}
    for name in label_names:
        try:
            value = float(name)
        except ValueError:
            continue
        if math.isfinite(value):
            numbers.setdefault(value, []).append(name)
    for names in numbers.values():
        if len(names) > 1:
            warnings.warn(f"{train_source}: labels {' and '.join(map(repr, names))} are different "
                          "classes but the same number; write each class one way if they are one",
                          DataWarning, stacklevel=3)


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>"


def load_study_data(config: StudyConfig, task: TaskInfo, registry: Registry) -> StudyData:
    """Read train / validation / test, check them, encode their targets through the task
    (:class:`automl_pt.tasks.Task`: class indices, numbers, label sets) and split off a
    stratified validation set when none is given. Raises :class:`DataError`."""
    input_cols = config.input_columns(task)
    input_col = input_cols[0]
    label_col = config.target_column(task)
    options = {"base_dir": str(config.source.parent) if config.source else ".",
               "input_column": input_col, "label_column": label_col,
               "on_bad_file": config.data.on_bad_file}
    targets_of = task.create()
    target_options = {"label_separator": config.data.label_separator}

    parsed = {}
    skipped: dict[str, list[dict[str, Any]]] = {}
    variants: dict[str, dict[str, tuple[str, int]]] = {}
    for name in ("train", "validation", "test"):
        source = getattr(config.data, name)
        if source is None:
            continue
        frame = read_frame(source, registry, options, f"data.{name}")
        inputs, labels, rows = _frame_to_split(
            frame, name, input_cols, label_col, _describe(source),
            variants=variants if targets_of.kind == "classification" else None,
            input_keys=list(task.input_keys), label_key=getattr(task, "target_key", "label_column"))
        labels = targets_of.read_targets(labels, rows, _describe(source), name, target_options)
        inputs = targets_of.align_inputs(inputs, labels, rows, _describe(source), name)
        if task.input_is_path:
            base = Path(source).parent if isinstance(source, (str, Path)) and Path(source).is_file() \
                else Path(options["base_dir"])
            inputs = [str(p) if Path(str(p)).is_absolute() else str(base / str(p)) for p in inputs]
        if task.check_input is not None:
            inputs, labels, rows, bad = _check_inputs(task, inputs, labels, rows, name,
                                                      _describe(source), config.data.on_bad_file)
            if bad:
                skipped[name] = bad
        parsed[name] = ((inputs, labels, rows), _describe(source))

    (train_inputs, train_labels, train_rows), train_src = parsed["train"]
    label_names = targets_of.label_names(train_labels, train_src, label_col)
    if targets_of.kind == "classification":
        _warn_label_variants(variants, label_names, train_src)

    def make(name: str, inputs, labels, rows, src) -> Split:
        return Split(name, list(inputs), targets_of.encode_targets(labels, label_names, rows, src, name),
                     np.asarray(rows), src)

    train = make("train", train_inputs, train_labels, train_rows, train_src)
    if "validation" in parsed:
        (vi, vl, vr), vsrc = parsed["validation"]
        validation = make("validation", vi, vl, vr, vsrc)
    else:
        train, validation = stratified_split(train, config.data.validation_fraction, config.study.seed,
                                             targets_of.stratify(train.labels))
    targets_of.check_targets(train.labels, label_names, train_src)
    test = None
    if "test" in parsed:
        (ti, tl, tr), tsrc = parsed["test"]
        test = make("test", ti, tl, tr, tsrc)
    return StudyData(train, validation, test, label_names, skipped, kind=targets_of.kind)


def _check_inputs(task: TaskInfo, inputs: list, labels: list, rows: np.ndarray, name: str,
                  source: str, on_bad_file: str):
    """Run the task's ``check_input`` on every input; raise listing the bad ones, or drop them
    (``on_bad_file = "skip"``) and return what was skipped."""
    bad = [{"row": int(rows[i]), "input": str(inputs[i]), "reason": reason, "index": i}
           for i, reason in input_problems(task, inputs)]
    if not bad:
        return inputs, labels, rows, []
    if on_bad_file != "skip":
        listed = "\n".join(f"  row {b['row']}: {b['input']}: {b['reason']}" for b in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DataError(f"{source}: {len(bad)} bad file(s) in {name}:\n{listed}{more}\n"
                        "Fix or remove them, or set data.on_bad_file = \"skip\" to leave them out.")
    drop = {b["index"] for b in bad}
    keep = [i for i in range(len(inputs)) if i not in drop]
    if not keep:
        raise DataError(f"{source}: every file in {name} is bad (first: {bad[0]['input']}: "
                        f"{bad[0]['reason']})")
    for b in bad:
        b.pop("index")
    return ([inputs[i] for i in keep], [labels[i] for i in keep], rows[keep], bad)


def stratified_split(split: Split, fraction: float, seed: int,
                     groups: np.ndarray | None = None) -> tuple[Split, Split]:
    """Hold out ``fraction`` of every group (at least one example of groups with two or more).
    ``groups``: one per example (default: the labels, i.e. classes); the task's
    :meth:`~automl_pt.tasks.Task.stratify` gives them (``None`` there: one group, a random split)."""
    rng = np.random.default_rng(seed)
    held = []
    if groups is None:
        groups = split.labels if split.labels.ndim == 1 and split.labels.dtype.kind in "iu" \
            else np.zeros(len(split), dtype=np.int64)
    for c in np.unique(groups):
        idx = np.flatnonzero(groups == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        else:
            n = 0
        held.extend(idx[:n].tolist())
    held_mask = np.zeros(len(split), dtype=bool)
    held_mask[held] = True

    def take(mask: np.ndarray, name: str) -> Split:
        return split.subset(np.flatnonzero(mask), name)

    if not held_mask.any():
        raise DataError(f"{split.source}: too few examples to hold out a validation set; give "
                        "data.validation")
    return take(~held_mask, "train"), take(held_mask, "validation")


def _natural_key(s: str):
    from ..tasks import natural_key

    return natural_key(s)


def load_unlabeled(source: Any, config: StudyConfig, task: TaskInfo, registry: Registry,
                   what: str = "pretrain.data") -> Split:
    """Read unlabeled inputs (labels are ignored where present): a table with the task's input
    column, a class-per-folder tree, or, for path inputs (images, audio), a flat folder of files.
    Inputs are checked like training data (``data.on_bad_file``). Labels are ``-1``.
    Raises :class:`DataError`."""
    input_cols = config.input_columns(task)
    input_col = input_cols[0]
    options = {"base_dir": str(config.source.parent) if config.source else ".",
               "input_column": input_col, "label_column": config.target_column(task),
               "on_bad_file": config.data.on_bad_file}
    path = Path(source) if isinstance(source, (str, Path)) else None
    if path is not None and path.is_dir() and task.input_is_path and not any(
            r.accepts(path) for r in registry.readers.values()):
        frame = _flat_folder(path, input_col)
    else:
        frame = read_frame(source, registry, options, what)
    src = _describe(source)
    inputs, labels, rows = _frame_to_split(frame, "unlabeled", input_cols, config.target_column(task),
                                           src, require_labels=False, input_keys=list(task.input_keys))
    if task.input_is_path:
        base = path.parent if path is not None and path.is_file() else Path(options["base_dir"])
        inputs = [str(p) if Path(str(p)).is_absolute() else str(base / str(p)) for p in inputs]
    if task.check_input is not None:
        inputs, labels, rows, _ = _check_inputs(task, inputs, labels, rows, "unlabeled", src,
                                                config.data.on_bad_file)
    return Split("unlabeled", list(inputs), np.full(len(inputs), -1, dtype=np.int64),
                 np.asarray(rows), src)


def _flat_folder(path: Path, input_col: str):
    """Every visible file under ``path`` (hidden files and folders skipped), sorted."""
    import os

    import pandas as pd

    files = []
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(str(Path(root) / n) for n in sorted(names) if not n.startswith("."))
    if not files:
        raise DataError(f"{path}: no files")
    return pd.DataFrame({input_col: files})
