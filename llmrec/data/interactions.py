"""The plain interaction format: one row per interaction with columns ``user``, ``item``, optionally
``timestamp`` (without it, file order is time: row n gets timestamp n, so temporal splits and sequences
follow the file) and optionally ``label`` (0/1; default 1) or ``rating`` (label = rating >=
``positive_rating``), in CSV (header row, comma or tab separated) or Parquet (needs pyarrow). Every other column is kept as a categorical field.
Errors name the file, the line and the column; an empty file is an error, never an empty data set."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from llmrec.data.schema import DataFormatError, RecData
from llmrec.errors import MissingFileError

REQUIRED = ("user", "item")
TIME_NAMES = {"ts", "time", "date", "datetime", "event_time", "time_stamp", "created_at", "timestamp_ms", "unix_time"}


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataFormatError(str(path), None, None, "reading Parquet needs pyarrow (pip install pyarrow)") from None
        table = pq.read_table(path)
        cols = table.column_names
        data = [[("" if v is None else str(v)) for v in table.column(c).to_pylist()] for c in cols]
        return cols, [list(r) for r in zip(*data)]
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataFormatError(str(path), None, None, "empty file (a header user,item[,timestamp] and rows expected)")
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    reader = list(csv.reader(text.splitlines(), dialect=dialect))
    return [c.strip() for c in reader[0]], [r for r in reader[1:] if any(x.strip() for x in r)]


def load_interactions(path: str | Path, positive_rating: float = 4.0, name: str | None = None) -> RecData:
    """A ``RecData`` of interactions from the plain format (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such interaction file")
    if path.is_dir():
        raise DataFormatError(str(path), None, None, "is a folder; give the interaction file itself (CSV or "
                                                    "Parquet), or use source: files for your own column names")
    cols, rows = _rows(path)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise DataFormatError(str(path), 1, missing[0], f"missing column (have {cols})")
    if not rows:
        raise DataFormatError(str(path), None, None, "no interaction rows after the header")
    at = {c: i for i, c in enumerate(cols)}
    for n, r in enumerate(rows, start=2):
        if len(r) != len(cols):
            raise DataFormatError(str(path), n, None, f"{len(r)} values for {len(cols)} columns")

    def column(c: str) -> list[str]:
        return [r[at[c]].strip() for r in rows]

    def numbers(c: str) -> np.ndarray:
        out = np.empty(len(rows), np.float64)
        for n, v in enumerate(column(c), start=2):
            try:
                out[n - 2] = float(v)
            except ValueError:
                raise DataFormatError(str(path), n, c, f"not a number: {v!r}") from None
        return out

    for c in ("user", "item"):
        empty = [n for n, v in enumerate(column(c), start=2) if not v]
        if empty:
            raise DataFormatError(str(path), empty[0], c, "empty id")
    if "label" in at:
        label = numbers("label")
        bad = np.flatnonzero((label != 0) & (label != 1))
        if len(bad):
            raise DataFormatError(str(path), int(bad[0]) + 2, "label", f"must be 0 or 1, got {label[bad[0]]}")
    elif "rating" in at:
        label = (numbers("rating") >= positive_rating).astype(np.float64)
    else:
        label = np.ones(len(rows))
    extra = [c for c in cols if c not in (*REQUIRED, "timestamp", "label", "rating")]
    if "timestamp" not in at:  # a time column under another name would silently become a categorical feature
        timeish = [c for c in extra if c.lower() in TIME_NAMES]
        if timeish:
            raise DataFormatError(str(path), 1, timeish[0], "looks like the time column, but this format reads time "
                                                          "only from 'timestamp' (file order would be time and this "
                                                          "column a feature): rename it, or use source: files with "
                                                          f"columns.time: {timeish[0]}")
    stamps = numbers("timestamp") if "timestamp" in at else np.arange(len(rows), dtype=np.float64)
    columns = {"user_id": np.array(column("user"), dtype=object), "item_id": np.array(column("item"), dtype=object),
               "timestamp": stamps, "label": label.astype(np.float32),
               **({"rating": numbers("rating").astype(np.float32)} if "rating" in at else {}),
               **{c: np.array(column(c), dtype=object) for c in extra}}
    return RecData(name=name or path.stem, columns=columns,
                   fields={"user_id": "categorical", "item_id": "categorical", **{c: "categorical" for c in extra}})
