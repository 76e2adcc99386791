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
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_parquet(path)


@hookimpl
def automl_pt_register_data_readers(register):
    register.reader(DataReader(
        name="table",
        accepts=lambda p: p.is_file() and p.suffix.lower() in TABLE_SUFFIXES,
        read=_read_table,
        description="CSV / TSV / JSONL / Parquet table, one example per row"))
