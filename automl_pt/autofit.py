"""``automl_pt.fit``: one call from a table or a DataFrame to a fitted predictor.

The task is inferred from the data: the input column is the one whose values are image or audio
file names (by their MIME type), else the text column with the longest values; class labels make
a classification task of that modality, lists of labels a multilabel one and numbers with many
distinct values a regression one (each only where a plugin registers it, else a clear
:class:`~automl_pt.errors.DataError`). A table whose only text columns are exactly two columns of
sentences (most values hold a space) is a sentence-pair task, where a plugin registers one for the
label's kind (a task with one :attr:`~automl_pt.registry.TaskInfo.extra_input_keys` entry);
``inputs=`` names the input columns instead of inferring them. A study file is written into the run directory (with the
data passed as Python objects, as Parquet files next to it), so ``automl-pt run``, ``results`` and
``report`` work on the run as on any other.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError

if TYPE_CHECKING:
    from .export.predictor import Predictor

#: numeric labels with more distinct values than this (or with fractions) are a regression target
MAX_CLASSES_FOR_NUMBERS = 20
_SAMPLE = 200


def fit(train: Any, label: str = "label", *, preset: str = "balanced",
        time_limit: str | float | None = None, validation: Any = None, test: Any = None,
        name: str | None = None, run_dir: str | Path | None = None,
        backbones: list[str] | None = None, settings: dict[str, dict[str, Any]] | None = None,
        progress: bool = True, host: Any = None,
        inputs: str | list[str] | None = None) -> "Predictor":
    """Run a study on ``train`` and return the loaded predictor of its best model.

    ``train`` / ``validation`` / ``test``: a table file (CSV / JSONL / Parquet) or a folder a
    plugin reads (class-per-folder images or audio), or a pandas DataFrame (list of dicts,
    ``datasets.Dataset``). ``label``: the label column. ``preset``: ``fast`` | ``balanced`` |
    ``best`` (see the README's presets table). ``time_limit``: the study's ``timeout`` (``600``,
    ``"10m"``, ``"2h"``); trials that cannot finish in it are not started. ``name``: the study's
    name (default ``fit-<date>-<time>``); ``run_dir``: where it runs (default ``runs/<name>``;
    must be new, empty or this study's). ``backbones``: candidate backbones (default: the
    task's). ``settings``: more study-file keys by section, e.g. ``{"resources": {"devices":
    "cpu"}}``. ``host``: the plugin host (default: installed plugins). ``inputs``: the input
    column, or the two text columns of a sentence pair (default: inferred).

    Raises :class:`DataError` when no input column or task fits the data, :class:`ConfigError`
    for bad settings (the written study file's line where they come from it)."""
    from .spec.config import parse_duration
    from .spec.data import read_frame
    from .export.predictor import load
    from .plugins import create_plugin_host
    from .storage.rundir import check_run_dir
    from .engine.study import Study

    host = host or create_plugin_host()
    registry = host.registry
    frame = read_frame(train, registry, {}, "train")
    task, columns = infer_task(frame, label, registry, inputs)
    input_column = columns[0]
    timeout = None
    if time_limit is not None:
        try:
            timeout = parse_duration(time_limit)
        except ValueError as exc:
            raise ConfigError(f"time_limit: {exc}") from None
    name = name or time.strftime("fit-%Y%m%d-%H%M%S")
    if not re.fullmatch(r"[\w.\-]+", name) or not name.strip("."):
        raise ConfigError(f"name {name!r}: use letters, digits, '.', '-' or '_' only")
    run_dir = Path(run_dir if run_dir is not None else Path("runs") / name).expanduser().resolve()
    check_run_dir(run_dir, name)   # new, empty or this study's: never a user's folder

    data: dict[str, Any] = {}
    for split, value in (("train", train), ("validation", validation), ("test", test)):
        if value is not None:
            data[split] = _data_location(value, split, run_dir, registry, task, input_column)
    data.update(zip(task.input_keys, columns))
    data["label_column"] = label
    sections: dict[str, dict[str, Any]] = {
        "study": {"name": name, "preset": preset,
                  **({"timeout": time_limit} if timeout else {})},   # as given: "10m" reads well
        "task": {"type": task.name},
        "data": data,
    }
    if backbones:
        sections["search"] = {"backbones": list(backbones)}
    for section, values in (settings or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(f"settings[{section!r}]: expected a dict of study-file keys")
        sections[section] = {**sections.get(section, {}), **values}
    sections.setdefault("storage", {})["dir"] = "."
    study_file = run_dir / "study.toml"
    study_file.write_text(to_toml(sections), encoding="utf-8")
    if progress:
        print(f"automl_pt.fit: {task.name} on column{'s' if len(columns) > 1 else ''} "
              f"{', '.join(map(repr, columns))}; study file {study_file}")
    results = Study.from_config(study_file, host=host).run(progress=progress)
    return load(results.best_model_dir, host=host)


def infer_task(frame: Any, label: str, registry: Any,
               inputs: str | list[str] | None = None) -> tuple[Any, list[str]]:
    """``(TaskInfo, input columns)`` for a table with label column ``label`` (``inputs``: the
    input columns as given, else inferred); see the module docstring for the rules. Raises
    :class:`DataError` naming the columns."""
    columns = [str(c) for c in frame.columns]
    if label not in columns:
        raise DataError(f"label column {label!r} not found; the data has columns "
                        f"{', '.join(columns)} (pass label=...)")
    kind = _label_kind(frame[label])
    if inputs is not None:
        chosen = [inputs] if isinstance(inputs, str) else [str(c) for c in inputs]
        missing = [c for c in chosen if c not in columns]
        if missing or not chosen or label in chosen:
            raise DataError(f"inputs={chosen!r}: {'no column ' + repr(missing[0]) if missing else 'give input columns other than the label'}; "
                            f"the data has columns {', '.join(columns)}")
        modality = _modality(frame, chosen[0])
        tasks = _tasks(registry, modality, kind, len(chosen))
        if not tasks:
            raise DataError(f"no installed task does {modality} {kind} on {len(chosen)} input "
                            f"column{'s' if len(chosen) > 1 else ''} ({', '.join(chosen)} -> "
                            f"{label!r}); installed tasks: {', '.join(sorted(registry.tasks)) or 'none'}")
        return tasks[0], chosen
    modality, input_column, pair = _input_columns(frame, label)
    if pair:
        tasks = _tasks(registry, modality, kind, 2)
        if tasks:
            return tasks[0], list(pair)
    tasks = _tasks(registry, modality, kind, 1)
    if tasks:
        return tasks[0], [input_column]
    if kind == "regression":
        raise DataError(f"label column {label!r} holds numbers with many distinct values (a "
                        f"regression target); regression is not supported yet for {modality} "
                        "(no installed plugin registers a regression task). For classes, give "
                        "the labels as text")
    installed = ", ".join(sorted(registry.tasks)) or "none"
    raise DataError(f"no installed task does {modality} {kind} (column {input_column!r} -> "
                    f"{label!r}); installed tasks: {installed}")


def _tasks(registry: Any, modality: str, kind: str, n_inputs: int) -> list[Any]:
    """The registered tasks of ``modality`` whose names end in ``-<kind>`` and that read
    ``n_inputs`` columns."""
    return [t for t in registry.tasks.values() if t.modality == modality
            and t.name.endswith(f"-{kind}") and len(t.input_keys) == n_inputs]


def _strings(frame: Any, column: Any) -> list[str]:
    return [v for v in frame[column].head(_SAMPLE).tolist() if isinstance(v, str) and v]


def _media(values: list[str]) -> str | None:
    """``image`` / ``audio`` where most ``values`` are such file names (by MIME type)."""
    from .spec.inputs import _media_kind

    kinds = [_media_kind(v) for v in values]
    for modality in ("image", "audio"):
        if values and kinds.count(modality) > len(values) / 2:
            return modality
    return None


def _modality(frame: Any, column: str) -> str:
    return _media(_strings(frame, column)) or "text"


def _input_columns(frame: Any, label: str) -> tuple[str, str, tuple[str, str] | None]:
    """``(modality, input column, the two sentence columns of a pair or None)``."""
    texts: list[tuple[float, str]] = []
    sentences: list[str] = []
    for column in frame.columns:
        if str(column) == label:
            continue
        values = _strings(frame, column)
        if not values:
            continue
        if modality := _media(values):
            return modality, str(column), None
        texts.append((sum(map(len, values)) / len(values), str(column)))
        if sum(" " in v.strip() for v in values) > 0.8 * len(values):
            sentences.append(str(column))
    if not texts:
        raise DataError(f"no input column: the columns other than the label ({label!r}) hold no "
                        "texts or image / audio file names")
    pair = (sentences[0], sentences[1]) if len(texts) == 2 and len(sentences) == 2 else None
    return "text", max(texts)[1], pair


def _label_kind(labels: Any) -> str:
    import pandas as pd

    values = labels.dropna()
    import numpy as np

    if len(values) and all(isinstance(v, (list, tuple, np.ndarray)) for v in values.head(_SAMPLE)):
        return "multilabel"
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    fractional = bool(((values % 1) != 0).any()) if len(values) else False
    if fractional or values.nunique() > MAX_CLASSES_FOR_NUMBERS:
        return "regression"
    return "classification"


def _data_location(value: Any, split: str, run_dir: Path, registry: Any, task: Any,
                   input_column: str) -> str:
    """A path for the study file: a file or folder as given (absolute), or Python data written
    to ``<run dir>/data/<split>.parquet`` (relative file names made absolute from the current
    directory, where they were given)."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.exists():
            raise DataError(f"{split}: file or folder not found: {path}")
        return str(path.resolve())
    from .spec.data import read_frame

    frame = read_frame(value, registry, {}, split).copy()
    if task.input_is_path and input_column in frame.columns:
        frame[input_column] = [str(Path(v).resolve()) if isinstance(v, str) else v
                               for v in frame[input_column]]
    folder = run_dir / "data"
    folder.mkdir(exist_ok=True)
    path = folder / f"{split}.parquet"
    frame.to_parquet(path, index=False)
    return str(path)


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    """A study file from ``{section: {key: value}}`` (strings, numbers, booleans, lists and
    dicts as inline tables)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{_key(k)} = {_value(v)}" for k, v in values.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value!r} cannot be written to a study file")
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))   # JSON string escapes are valid TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"{value!r} ({type(value).__name__}) cannot be written to a study file")
