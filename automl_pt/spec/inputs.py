"""How :meth:`automl_pt.export.predictor.Predictor.predict` reads its inputs and checks them before
predicting anything, as training checks its data (:mod:`automl_pt.spec.data`): empty values in tables,
values that are not texts, file names given to a text model, bad image / audio files (the task's
``check_input``). Every problem is one :class:`DataError` line naming the rows or items."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import MAX_ROWS_LISTED, check_not_empty, input_problems, read_frame
from ..errors import DataError, DataWarning
from ..registry import Registry, TaskInfo


@dataclass
class InputReader:
    """Reads the inputs of a model of ``task`` whose tables hold them in ``input_column``."""

    task_info: TaskInfo
    input_column: str
    registry: Registry
    #: every input column of a task with several (``TaskInfo.extra_input_keys``: a sentence
    #: pair), ``input_column`` first; each input is then a tuple of one value per column
    input_columns: list[str] | None = None

    @property
    def modality(self) -> str:
        return self.task_info.modality

    @property
    def columns(self) -> list[str]:
        return list(self.input_columns or [self.input_column])

    def _read_tuples(self, inputs: Any) -> tuple[list[Any], list[str] | None]:
        """Inputs of a model that reads several columns: a table (file or DataFrame) with all
        of them, or a list of tuples with one non-empty text per column."""
        import pandas as pd

        cols = self.columns
        what = f"a table file or DataFrame with columns {', '.join(map(repr, cols))}, or a list of " \
               f"({', '.join(cols)}) tuples"
        if isinstance(inputs, (str, Path)):
            path = Path(inputs)
            if _path_kind(path) == "file" and path.suffix.lower() in _TABLE_SUFFIXES:
                frame, source = read_frame(path, self.registry, {"base_dir": str(path.parent)}, "input"), str(path)
                if len(frame) == 0:
                    _warn(f"{path}: no data rows; nothing to predict")
            else:
                raise DataError(f"{_value(inputs) if not isinstance(inputs, str) else repr(str(inputs)[:60])}: "
                                f"this model takes {len(cols)} texts per input; give {what}")
        elif isinstance(inputs, pd.DataFrame):
            frame, source = inputs, "<DataFrame>"
        else:
            try:
                items = list(inputs)
            except TypeError:
                raise DataError(f"{_value(inputs)} is not an input of this model; give {what}") from None
            problems = []
            for i, x in enumerate(items):
                if not isinstance(x, (tuple, list)) or len(x) != len(cols):
                    problems.append(f"inputs[{i}]: {_value(x)} is not a tuple of {len(cols)} texts "
                                    f"({', '.join(cols)})")
                    continue
                for col, v in zip(cols, x):
                    if not isinstance(v, str) or not v.strip():
                        problems.append(f"inputs[{i}]: {col} is " + (
                            "an empty text" if isinstance(v, str) else f"{_value(v)}, not a text"))
            if problems:
                raise _problems_error(problems, "", "bad input(s)")
            return [tuple(x) for x in items], None
        for col in cols:
            if col not in frame.columns:
                raise DataError(f"{source}: no column {col!r} (columns: "
                                f"{', '.join(map(str, frame.columns))}); this model reads "
                                f"{', '.join(map(repr, cols))}")
        rows = np.arange(1, len(frame) + 1)
        values = [frame[col].tolist() for col in cols]
        for col, v in zip(cols, values):
            check_not_empty(v, rows, col, "input", source)
        return list(zip(*values)), None

    def read(self, inputs: Any) -> tuple[list[Any], list[str] | None]:
        """``(items, names)`` of ``inputs``, checked; see :meth:`automl_pt.export.predictor.Predictor._inputs`
        for what ``inputs`` may be and what is checked. Raises :class:`DataError`."""
        import pandas as pd

        modality = self.modality
        if self.task_info.input_key == "tokens_column":
            return self._word_lists(inputs), None
        if len(self.columns) > 1:
            return self._read_tuples(inputs)
        if isinstance(inputs, (str, Path)):
            return self._path_input(inputs)
        if isinstance(inputs, pd.DataFrame):
            if self.input_column not in inputs.columns:
                raise DataError(f"input has no column {self.input_column!r} "
                                f"(columns: {', '.join(map(str, inputs.columns))})")
            items = self._column(inputs[self.input_column].tolist(), "<DataFrame>", None)
            return items, self._names(items)
        if isinstance(inputs, (bytes, bytearray)) and modality != "text":
            return [inputs], None
        if isinstance(inputs, np.ndarray) and modality in ("image", "audio"):
            single = inputs.ndim in (2, 3) if modality == "image" else inputs.ndim == 1
            return ([inputs] if single else list(inputs)), None
        if modality == "audio" and _is_waveform_pair(inputs):
            return [inputs], None
        if modality == "image" and type(inputs).__module__.startswith("PIL."):
            return [inputs], None
        if inputs is None or isinstance(inputs, (bytes, bytearray, int, float, complex, np.number)):
            raise DataError(f"{_value(inputs)} is not {_a(modality)} input; give {self._accepted()}")
        try:
            items = list(inputs)
        except TypeError:
            raise DataError(f"{_value(inputs)} is not {_a(modality)} input; give "
                            f"{self._accepted()}") from None
        self._check_items(items)
        return items, self._names(items)

    def _word_lists(self, inputs: Any) -> list[list[str]]:
        """Sentences as word lists, from a list (:meth:`_sentences`), a DataFrame or a table file
        whose input column holds a list of words per row (JSONL / Parquet), or any file a
        registered reader takes (a CoNLL file: a word per line, tags ignored)."""
        import pandas as pd

        if isinstance(inputs, (str, Path)):
            path = Path(inputs)
            if _path_kind(path) != "file":
                raise DataError(f"{path}: file not found; give a list of words, a list of such lists, "
                                f"or a table file with a {self.input_column!r} column")
            if path.suffix.lower() not in _TABLE_SUFFIXES and not any(
                    r.accepts(path) for r in self.registry.readers.values()):
                raise DataError(f"{path}: not a table ({', '.join(sorted(_TABLE_SUFFIXES))}) or a "
                                "file a registered reader takes")
            frame = read_frame(path, self.registry, {"base_dir": str(path.parent),
                                                     "input_column": self.input_column}, "input")
            source = str(path)
        elif isinstance(inputs, pd.DataFrame):
            frame, source = inputs, "<DataFrame>"
        else:
            return self._sentences(inputs)
        if self.input_column not in frame.columns:
            raise DataError(f"{source}: no column {self.input_column!r} (columns: "
                            f"{', '.join(map(str, frame.columns))})")
        values = frame[self.input_column].tolist()
        if not values:
            _warn(f"{source}: no data rows; nothing to predict")
            return []
        return self._sentences(values, source)

    def _sentences(self, inputs: Any, source: str | None = None) -> list[list[str]]:
        """Word lists (token classification): one sentence (a list of words) or a list of them;
        :class:`DataError` naming every item that is not a non-empty list of non-empty words."""
        if isinstance(inputs, np.ndarray):
            inputs = inputs.tolist()
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise DataError(f"{_value(inputs)} is not a sentence; give a list of words or a list of "
                            f"such lists, or a table file with a {self.input_column!r} column")
        if source is None and all(isinstance(w, str) for w in inputs):
            inputs = [inputs]
        items, problems = [], []
        for i, x in enumerate(inputs):
            x = x.tolist() if isinstance(x, np.ndarray) else x
            if not isinstance(x, (list, tuple)) or not x or any(not isinstance(w, str) or not w.strip() for w in x):
                where = f"row {i + 1}" if source is not None else f"inputs[{i}]"
                problems.append(f"{where}: {_value(x)} is not a list of non-empty words")
            else:
                items.append([w.strip() for w in x])
        if problems:
            raise _problems_error(problems, f"{source}: " if source else "", "bad input(s)")
        return items

    def _accepted(self) -> str:
        if self.task_info.input_is_path:
            return (f"{_a(self.modality)} file, a folder, a table file with a {self.input_column!r} "
                    "column, or a list of them")
        return f"a string, a list of strings, a table file with a {self.input_column!r} column or a .txt file"

    def _path_input(self, inputs: str | Path) -> tuple[list[Any], list[str] | None]:
        """One string or path: a folder, a table file, a ``.txt`` file of texts, one image /
        audio file, or (text models) one text; checked as :meth:`read` says."""
        modality, text = self.modality, not self.task_info.input_is_path
        if isinstance(inputs, str) and not inputs.strip():
            raise DataError("empty text" if text else f"empty path; give {self._accepted()}")
        path = Path(inputs)
        kind, suffix = _path_kind(path), path.suffix.lower()
        if kind == "dir":
            if text:
                raise DataError(f"{path}: a folder is not a {modality} input; give a table file, "
                                "a .txt file or a list")
            files = _media_files(path, modality)
            if not files:
                raise DataError(f"{path}: no {modality} files in this folder (looked for "
                                f"{modality}/* types by file extension, hidden files skipped)")
            self._check_files(files, [""] * len(files), f"{path}: ", f"bad {modality} file(s)")
            return files, files
        if kind == "file" and suffix in _TABLE_SUFFIXES:
            return self._table(path)
        if not text:
            if kind != "file":
                what = "table" if suffix in _TABLE_SUFFIXES else modality
                raise DataError(f"{path}: {what} file not found")
            problems = input_problems(self.task_info, [str(path)])
            if problems:
                raise DataError(f"{path}: {_one_line(problems[0][1])}")
            return [str(path)], [str(path)]
        if kind == "file" and suffix == ".txt":
            try:
                lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: not a UTF-8 text file ({exc})") from exc
            if not lines:
                _warn(f"{path}: no texts; nothing to predict")
            return lines, None
        if kind == "file":
            media = _media_kind(path.name)
            if media:
                raise DataError(f"{path}: is {_a(media)} file; this model takes text (give the "
                                f"texts, a table file with a {self.input_column!r} column or a .txt "
                                "file, one text per line)")
            raise DataError(f"{path}: is not a table ({', '.join(sorted(_TABLE_SUFFIXES))}) or a "
                            ".txt file of texts; this model takes text")
        if isinstance(inputs, Path):
            raise DataError(f"{path}: file not found")
        if _looks_like_file_name(inputs):
            raise DataError(f"{path}: file not found (a lone string like this is taken for a file "
                            f"name; to predict it as a text, pass it in a list: [{inputs!r}])")
        return [str(inputs)], None

    def _names(self, items: list[Any]) -> list[str] | None:
        """File names for the output table, where the inputs are all file paths."""
        if self.task_info.input_is_path and items and all(isinstance(x, (str, Path)) for x in items):
            return [str(x) for x in items]
        return None

    def _table(self, table: Path) -> tuple[list[Any], list[str] | None]:
        frame = read_frame(table, self.registry, {"base_dir": str(table.parent)}, "input")
        if self.input_column not in frame.columns:
            raise DataError(f"{table}: no column {self.input_column!r} (columns: "
                            f"{', '.join(map(str, frame.columns))})")
        items = frame[self.input_column].tolist()
        if not items:
            _warn(f"{table}: no data rows; nothing to predict")
        # relative paths in a table are relative to the table's folder, as in training
        items = self._column(items, str(table), table.parent)
        return items, (items if self.task_info.input_is_path else None)

    def _column(self, items: list[Any], source: str, base: Path | None) -> list[Any]:
        """A table's input column checked as training checks it: no empty values (their 1-based
        data rows are named); for file inputs, paths made relative to ``base`` (when given) and
        every file checked with the task's ``check_input``. Returns the (resolved) items."""
        rows = np.arange(1, len(items) + 1)
        check_not_empty(items, rows, self.input_column, "input", source)
        if not self.task_info.input_is_path:
            return items
        if base is not None:
            items = [str(p) if Path(str(p)).is_absolute() else str(base / str(p)) for p in items]
        self._check_files(items, [f"row {r}: " for r in rows], f"{source}: ",
                          f"bad {self.modality} file(s)")
        return items

    def _check_items(self, items: list[Any]) -> None:
        """Raise :class:`DataError` listing every item of a list that is not an input of this
        model (``inputs[i]: reason``), files checked with the task's ``check_input``."""
        problems = [(i, reason) for i, x in enumerate(items) if (reason := self._item_problem(x))]
        if self.task_info.input_is_path:
            flagged = {i for i, _ in problems}
            files = [i for i, x in enumerate(items) if isinstance(x, (str, Path)) and i not in flagged]
            problems += [(files[j], f"{items[files[j]]}: {reason}")
                         for j, reason in input_problems(self.task_info, [str(items[i]) for i in files])]
        if problems:
            raise _problems_error([f"inputs[{i}]: {r}" for i, r in sorted(problems)], "", "bad input(s)")

    def _item_problem(self, x: Any) -> str | None:
        """Why ``x`` (one item of a list) is not an input of this model; ``None`` when it may be
        (files are checked separately)."""
        modality = self.modality
        if x is None or (isinstance(x, float) and np.isnan(x)):
            return f"{_value(x)} is not {_a(modality)} input"
        if isinstance(x, str):
            if not x.strip():
                return "empty text" if modality == "text" else "empty path"
            if modality == "text":
                media = _media_kind(x)
                if media and _path_kind(Path(x)) == "file":
                    return f"{x} is {_a(media)} file; this model takes text"
            return None
        if modality == "text" or isinstance(x, (bool, int, float, complex, np.number)):
            return f"{_value(x)} is not {_a(modality)} input"
        return None

    def _check_files(self, files: list[Any], where: list[str], prefix: str, what: str) -> None:
        """Run the task's ``check_input`` on the path items of ``files``; raise one line listing
        ``{where}{file}: {reason}`` for each bad one."""
        paths = [i for i, f in enumerate(files) if isinstance(f, (str, Path))]
        bad = input_problems(self.task_info, [str(files[i]) for i in paths])
        if bad:
            raise _problems_error([f"{where[paths[j]]}{files[paths[j]]}: {r}" for j, r in bad],
                                  prefix, what)


_TABLE_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq"})


def _media_files(folder: Path, modality: str) -> list[str]:
    """Files under ``folder`` whose extension's MIME type is ``<modality>/*`` (sorted; hidden
    files and folders skipped)."""
    import mimetypes

    found = []
    for f in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(folder).parts) or not f.is_file():
            continue
        kind = mimetypes.guess_type(f.name)[0] or ""
        if kind.startswith(f"{modality}/"):
            found.append(str(f))
    return found


def _problems_error(problems: list[str], prefix: str, what: str):
    """One :class:`DataError` line: ``{prefix}{n} {what}: p1; p2; ...`` (at most ten listed)."""
    shown = "; ".join(_one_line(p) for p in problems[:MAX_ROWS_LISTED])
    more = f"; and {len(problems) - MAX_ROWS_LISTED} more" if len(problems) > MAX_ROWS_LISTED else ""
    return DataError(f"{prefix}{len(problems)} {what}: {shown}{more}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _warn(message: str) -> None:
    """A :class:`DataWarning` attributed to the caller of ``Predictor.predict``."""
    import sys
    import warnings

    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_globals.get("__name__") in (__name__, "automl_pt.export.predictor"):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, DataWarning, stacklevel=level)


def _value(x: Any) -> str:
    """How a value that is not an input is named in an error: ``None``, ``NaN``, ``5 (int)``,
    else its type."""
    if x is None:
        return "None"
    if isinstance(x, float) and np.isnan(x):
        return "NaN"
    if isinstance(x, (bool, int, float, complex, np.number)):
        return f"{x} ({type(x).__name__})"
    return type(x).__name__


def _a(noun: str) -> str:
    """``noun`` with its article: ``a text``, ``an image``, ``an audio``..."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _path_kind(path: Path) -> str | None:
    """``"dir"``, ``"file"`` or ``None`` (nothing there, or no valid file name: a long text)."""
    try:
        return "dir" if path.is_dir() else "file" if path.is_file() else None
    except (OSError, ValueError):
        return None


def _media_kind(name: str) -> str | None:
    """``image`` / ``audio`` / ``video`` where ``name``'s extension is of that MIME type."""
    import mimetypes
    import os

    ext = os.path.splitext(name)[1]
    if not ext or len(ext) > 8:
        return None
    kind = (mimetypes.guess_type("f" + ext.lower())[0] or "").split("/")[0]
    return kind if kind in ("image", "audio", "video") else None


def _looks_like_file_name(text: str) -> bool:
    """A lone string a text model takes for a file name: no spaces, and a table, ``.txt``,
    image, audio or video extension."""
    if any(c.isspace() for c in text):
        return False
    suffix = Path(text).suffix.lower()
    return suffix in _TABLE_SUFFIXES or suffix == ".txt" or _media_kind(text) is not None


def _is_waveform_pair(x: Any) -> bool:
    return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray)
            and isinstance(x[1], (int, np.integer)))
