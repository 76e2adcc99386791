"""Built-in data readers: CSV, JSONL and Parquet tables (via pandas + pyarrow)."""

from __future__ import annotations

from pathlib import Path

from ..plugins import hookimpl
from ..registry import DataReader

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                  ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def _read_table(path: Path, options: dict):
    import pandas as pd

    kind = TABLE_SUFFIXES[path.suffix.lower()]
    if kind in ("csv", "tsv"):
        # Strings stay strings; empty cells become "" (reported as empty, not silently NaN).
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",", dtype=str,
                           keep_default_na=False, encoding="utf-8")
    if kind == "jsonl":
        return _read_jsonl(path)
    return pd.read_parquet(path)


def _read_jsonl(path: Path):
    """One JSON object per line (blank lines skipped), or a ``.json`` file holding a list of
    objects. Values keep their JSON types in object columns, so a label written ``1`` on one
    line and ``1.0`` or ``"1"`` on another is seen as written (pandas would make them one float).
    Raises :class:`DataError` naming the line."""
    import json

    import pandas as pd

    from ..errors import DataError

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from None
        numbered = list(enumerate(records if isinstance(records, list) else [records], 1))
        unit = "item"
    else:
        unit = "line"
        numbered = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {n}: not valid JSON: {exc}") from None
    for n, record in numbered:
        if not isinstance(record, dict):
            raise DataError(f"{path}: {unit} {n}: expected a JSON object (one example), got "
                            f"{type(record).__name__}")
    columns = list(dict.fromkeys(k for _, r in numbered for k in r))
    return pd.DataFrame({c: pd.Series([r.get(c) for _, r in numbered], dtype=object) for c in columns})


def _is_document(path: Path) -> bool:
    """A ``.json`` file holding one JSON object whose values include a list of objects (a
    dataset document with its own structure, e.g. records of several kinds that refer to each
    other): not a table, so a plugin's reader may take it. A table ``.json`` is a list of
    objects, or JSONL."""
    import json

    if path.suffix.lower() != ".json":
        return False
    try:
        with path.open("r", encoding="utf-8") as f:
            head = f.read(64).lstrip()
            if not head.startswith("{"):
                return False
            doc = json.loads(head + f.read())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and any(
        isinstance(v, list) and v and isinstance(v[0], dict) for v in doc.values())


def _accepts(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in TABLE_SUFFIXES and not _is_document(path)


@hookimpl
def automl_pt_register_data_readers(register):
    register.reader(DataReader(
        name="table",
        accepts=_accepts,
        read=_read_table,
        description="CSV / TSV / JSONL / Parquet table, one example per row"))
