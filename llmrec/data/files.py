"""Your own data: an interactions file plus optional items and users files, any column names.

    data:
      source: files
      files:
        interactions: {path: events.csv}                 # CSV, TSV, Parquet or JSONL (by suffix, or `format`)
        columns: {user: customer, item: sku, time: ts, rating: stars}
        features: {device: categorical, price: numeric}  # interaction columns used as features
        items: {path: items.csv, id: sku, title: name,
                features: {brand: categorical, tags: multi_value, description: text}}
        users: {path: users.csv, id: customer, features: {segment: categorical, bio: text}}

Ids are kept as given (strings). A column is a feature only when declared: `categorical`, `numeric`,
`multi_value` (tokens split on `separator`) or `text` (not a feature: the item / user text that knowledge
prompts read). Every other column is listed by ``check_files`` as ignored. The label is the `label` column
(0/1), else `rating >= positive_rating`, else 1 for every row. Time comes from the `time` column (numbers,
ISO dates or a `time_format` for ``datetime.strptime``); without one, temporal splits and sequences would run
in file order, so that must be said (`file_order_is_time: true`). Every mistake is one line naming the file,
the row (1 = the header) and the column."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import model_validator

from llmrec.config import StrictConfig
from llmrec.data.schema import DataFormatError, FieldType, RecData
from llmrec.errors import MissingFileError

ColumnKind = Literal["categorical", "numeric", "multi_value", "text"]
FIELD_TYPE: dict[str, FieldType] = {"categorical": "categorical", "numeric": "numerical", "multi_value": "multi_hot"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class TableFile(StrictConfig):
    """One file: its path (relative paths resolve against the config file's folder when loaded from YAML)
    and format (by suffix unless given)."""
    path: str
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = "auto"
    delimiter: str | None = None  # csv: "," unless given; tsv: tab


class Columns(StrictConfig):
    """Which interaction columns hold the user, the item, the time, the rating and the 0/1 label."""
    user: str = "user"
    item: str = "item"
    time: str | None = None
    rating: str | None = None
    label: str | None = None


class SideTable(TableFile):
    """An items or users file: its id column (the interactions' ids), an optional title column (items) and
    the declared columns."""
    id: str
    title: str | None = None
    features: dict[str, ColumnKind] = {}


class FilesConfig(StrictConfig):
    """The user's files and what each column means (see the module doc)."""
    interactions: TableFile
    columns: Columns = Columns()
    features: dict[str, ColumnKind] = {}
    items: SideTable | None = None
    users: SideTable | None = None
    file_order_is_time: bool = False
    time_format: str | None = None  # datetime.strptime format; None: numbers (unix seconds) or ISO 8601
    positive_rating: float = 4.0  # label = rating >= this, when there is a rating and no label column
    separator: str = "|"  # multi_value cells: tokens joined by this
    name: str | None = None  # the data set's name (knowledge caches use it); None: the interactions file's stem
    domain: str = "items"  # what the items are, in words (prompts use it: "movies", "products")

    @model_validator(mode="after")
    def _time(self) -> "FilesConfig":
        if self.columns.time is None and not self.file_order_is_time:
            raise ValueError("columns.time: name the time column, or set file_order_is_time: true to train and "
                             "split in file order (temporal splits and sequences follow time)")
        if self.columns.time is not None and self.file_order_is_time:
            raise ValueError("file_order_is_time: true and columns.time both given; keep one")
        taken = {c for c in (self.columns.user, self.columns.item, self.columns.time, self.columns.rating,
                             self.columns.label) if c}
        clash = sorted(taken & set(self.features))
        if clash:
            raise ValueError(f"features: {clash} already mapped in columns")
        if "text" in self.features.values():
            raise ValueError("features: text columns belong to the items or users file (interaction text is not "
                             "read)")
        return self


@dataclass
class Table:
    """A file's header and rows as strings (None = a missing value), with where it came from."""
    path: Path
    header: list[str]
    rows: list[list[str | None]]

    def column(self, name: str, role: str) -> list[str | None]:
        """The column's cells; a missing column is an error naming the file, the role it was wanted for and a
        near miss."""
        if name not in self.header:
            near = [h for h in self.header if h.lower() == name.lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataFormatError(str(self.path), 1, name, f"no such column{hint} for {role}; the file has "
                                                          f"{self.header}")
        k = self.header.index(name)
        return [r[k] for r in self.rows]


def read_table(spec: TableFile, base: Path | None = None) -> Table:
    """The file's rows: a named error for a missing path, a directory, an empty file, ragged rows, or a
    header that looks split on the wrong delimiter."""
    path = Path(spec.path)
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFormatError(str(path), None, None, "is a folder; give the file itself (e.g. "
                                                    f"{path / 'interactions.csv'})")
    fmt = spec.format if spec.format != "auto" else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataFormatError(str(path), None, None, f"unknown format {path.suffix!r}: use .csv, .tsv, .parquet "
                                                    "or .jsonl, or set format")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        cols = [t.column(c).to_pylist() for c in t.column_names]
        rows = [[None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in r]
                for r in zip(*cols)]
        return _nonempty(Table(path, list(t.column_names), rows))
    text = path.read_text(encoding="utf-8-sig")
    if fmt == "jsonl":
        header: list[str] = []
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(str(path), n, None, f"not JSON: {e.msg}") from None
            if not isinstance(rec, dict):
                raise DataFormatError(str(path), n, None, "each line must be one JSON object")
            header += [k for k in rec if k not in header]
            records.append(rec)
        rows = [[None if r.get(h) is None else _cell(r[h]) for h in header] for r in records]
        return _nonempty(Table(path, header, rows))
    delimiter = spec.delimiter or ("\t" if fmt == "tsv" else ",")
    lines = text.splitlines()
    reader = list(csv.reader(lines, delimiter=delimiter))
    if not reader:
        raise DataFormatError(str(path), None, None, "empty file (a header row and data rows expected)")
    header = [h.strip() for h in reader[0]]
    if len(header) == 1:
        for other in (";", "\t", ",", "|"):
            if other != delimiter and other in reader[0][0]:
                raise DataFormatError(str(path), 1, None, f"one column {header[0]!r} with delimiter {delimiter!r}: "
                                                         f"is the delimiter {other!r}? (set delimiter)")
    rows = []
    for n, r in enumerate(reader[1:], start=2):
        if not any(x.strip() for x in r):
            continue
        if len(r) != len(header):
            raise DataFormatError(str(path), n, None, f"{len(r)} values for {len(header)} columns")
        rows.append([x.strip() if x.strip() else None for x in r])
    return _nonempty(Table(path, header, rows))


def _cell(v) -> str:
    if isinstance(v, list):
        return "|".join(str(x) for x in v)
    return str(v)


def _nonempty(t: Table) -> Table:
    if not t.rows:
        raise DataFormatError(str(t.path), None, None, "no data rows after the header")
    dup = sorted({h for h in t.header if t.header.count(h) > 1})
    if dup:
        raise DataFormatError(str(t.path), 1, dup[0], "the column name appears twice")
    return t


def _numbers(t: Table, name: str, role: str) -> np.ndarray:
    out = np.empty(len(t.rows), np.float64)
    for n, v in enumerate(t.column(name, role), start=2):
        if v is None:
            raise DataFormatError(str(t.path), n, name, f"missing value ({role})")
        try:
            out[n - 2] = float(v)
        except ValueError:
            raise DataFormatError(str(t.path), n, name, f"not a number: {v!r} ({role})") from None
        if not math.isfinite(out[n - 2]):
            raise DataFormatError(str(t.path), n, name, f"{v!r} is not a finite number ({role})")
    return out


def _times(t: Table, name: str, fmt: str | None) -> np.ndarray:
    """Seconds since the epoch: numbers as they are, ISO 8601 (or ``fmt``) dates parsed (UTC unless given)."""
    out = np.empty(len(t.rows), np.float64)
    for n, v in enumerate(t.column(name, "time"), start=2):
        if v is None:
            raise DataFormatError(str(t.path), n, name, "missing time")
        try:
            out[n - 2] = float(v) if fmt is None else _parse(v, fmt)
            continue
        except ValueError:
            pass
        try:
            out[n - 2] = _parse(v, None)
        except ValueError:
            want = f"format {fmt!r}" if fmt else "a number or an ISO 8601 date (or set time_format)"
            raise DataFormatError(str(t.path), n, name, f"unparsable time {v!r}: expected {want}") from None
    return out


def _parse(v: str, fmt: str | None) -> float:
    d = datetime.strptime(v, fmt) if fmt else datetime.fromisoformat(v.replace("Z", "+00:00"))
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()


def _ids(t: Table, name: str, role: str) -> np.ndarray:
    vals = t.column(name, role)
    for n, v in enumerate(vals, start=2):
        if v is None:
            raise DataFormatError(str(t.path), n, name, f"missing {role} id")
    return np.array(vals, dtype=object)


def _feature(t: Table, name: str, kind: ColumnKind, separator: str) -> np.ndarray:
    if kind == "numeric":
        return _numbers(t, name, "numeric feature").astype(np.float32)
    vals = t.column(name, f"{kind} feature")
    if kind == "multi_value":
        out = np.empty(len(vals), dtype=object)
        out[:] = [tuple(x.strip() for x in v.split(separator) if x.strip()) if v else () for v in vals]
        return out
    return np.array(["" if v is None else v for v in vals], dtype=object)  # categorical: "" = missing


@dataclass
class SideInfo:
    """An items / users file read: per id, its declared feature values and its text."""
    table: Table
    by_id: dict[str, int]
    features: dict[str, np.ndarray] = field(default_factory=dict)
    text: dict[str, dict[str, str]] = field(default_factory=dict)


def _side(spec: SideTable, role: str, separator: str, base: Path | None) -> SideInfo:
    t = read_table(spec, base)
    ids = _ids(t, spec.id, role)
    seen: dict[str, int] = {}
    for n, i in enumerate(ids):
        if i in seen:
            raise DataFormatError(str(t.path), n + 2, spec.id, f"{role} id {i!r} appears twice (first at row "
                                                              f"{seen[i] + 2})")
        seen[i] = n
    info = SideInfo(t, seen)
    for col, kind in spec.features.items():
        if kind == "text":
            vals = t.column(col, "text")
            for i, v in zip(ids, vals):
                if v:
                    info.text.setdefault(i, {})[col] = v
        else:
            info.features[col] = _feature(t, col, kind, separator)
    if spec.title:
        for i, v in zip(ids, t.column(spec.title, "title")):
            if v:
                info.text.setdefault(i, {})["title"] = v
    return info


def load_files(config: FilesConfig, base: Path | None = None) -> RecData:
    """A ``RecData`` from the user's files (see the module doc); ``base``: where relative paths start."""
    c = config
    t = read_table(c.interactions, base)
    cols = c.columns
    users, items = _ids(t, cols.user, "user"), _ids(t, cols.item, "item")
    stamps = (_times(t, cols.time, c.time_format) if cols.time
              else np.arange(len(t.rows), dtype=np.float64))
    columns: dict[str, np.ndarray] = {"user_id": users, "item_id": items, "timestamp": stamps}
    if cols.rating:
        columns["rating"] = _numbers(t, cols.rating, "rating").astype(np.float32)
    if cols.label:
        label = _numbers(t, cols.label, "label")
        bad = np.flatnonzero((label != 0) & (label != 1))
        if len(bad):
            raise DataFormatError(str(t.path), int(bad[0]) + 2, cols.label, f"labels must be 0 or 1, got "
                                                                            f"{label[bad[0]]:g}")
    elif cols.rating:
        label = (columns["rating"] >= c.positive_rating).astype(np.float64)
    else:
        label = np.ones(len(t.rows))
    columns["label"] = label.astype(np.float32)
    fields: dict[str, FieldType] = {"user_id": "categorical", "item_id": "categorical"}
    for col, kind in c.features.items():
        columns[col] = _feature(t, col, kind, c.separator)
        fields[col] = FIELD_TYPE[kind]
    sides: dict[str, SideInfo] = {}
    for spec, role, keys in ((c.items, "item", items), (c.users, "user", users)):
        if spec is None:
            continue
        side = sides[role] = _side(spec, role, c.separator, base)
        absent = [n for n, k in enumerate(keys) if k not in side.by_id]
        if absent:
            n = absent[0]
            raise DataFormatError(str(t.path), n + 2, cols.item if role == "item" else cols.user,
                                  f"{role} {keys[n]!r} is not in {side.table.path} ({len(absent)} rows like it)")
        at = np.array([side.by_id[k] for k in keys])
        for col, values in side.features.items():
            name = col if col not in columns else f"{role}_{col}"
            columns[name] = values[at]
            fields[name] = FIELD_TYPE[spec.features[col]]
    item_info = {i: _describe(sides.get("item"), c.items, i, "item") for i in dict.fromkeys(items.tolist())}
    user_info = {u: _describe(sides.get("user"), c.users, u, "user") for u in dict.fromkeys(users.tolist())}
    name = c.name or Path(c.interactions.path).stem
    return RecData(name=name, columns=columns, fields=fields, item_info=item_info, user_info=user_info,
                   domain=c.domain)


def _describe(side: SideInfo | None, spec: SideTable | None, key: str, role: str) -> dict[str, str]:
    """What prompts read about one item or user, every key present for every id (templates fill the same
    variables everywhere): items: title (the title column, else the id), category (the declared categorical
    values), description (the text columns) and each text column; users: profile and each text column."""
    text = dict(side.text.get(key, {})) if side else {}
    text_cols = [k for k, v in (spec.features.items() if spec else []) if v == "text"]
    cats = []
    if side is not None and spec is not None:
        n = side.by_id[key]
        cats = [f"{v[n]}" if role == "item" else f"{col} {v[n]}" for col, v in side.features.items()
                if spec.features[col] == "categorical" and v[n]]
    body = " ".join(text[k] for k in text_cols if text.get(k))
    own = {k: text.get(k, "") for k in text_cols}
    if role == "item":
        return {"title": text.get("title", key), "category": " ".join(cats), "description": body, **own}
    return {"profile": body or ", ".join(cats) or "(no profile)", **own}


@dataclass
class FileReport:
    """What ``check_files`` found: figures, the columns used and ignored, and problems (errors stop a run)."""
    rows: int = 0
    users: int = 0
    items: int = 0
    positives: int = 0
    time_range: tuple[float, float] | None = None
    time_unsorted_rows: int = 0  # rows earlier than the row before them in the file (the loader sorts)
    duplicates: int = 0  # rows repeating an earlier (user, item, time)
    missing: dict[str, int] = field(default_factory=dict)  # column -> empty cells, per file
    used: dict[str, list[str]] = field(default_factory=dict)  # file -> columns read
    ignored: dict[str, list[str]] = field(default_factory=dict)  # file -> columns not declared
    items_without_text: int = 0
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as the lines ``llmrec data check`` prints."""
        out = [f"rows {self.rows}, users {self.users}, items {self.items}, positive labels {self.positives}"]
        if self.time_range:
            a, b = (datetime.fromtimestamp(x, timezone.utc).isoformat(timespec="seconds") for x in self.time_range)
            out.append(f"time {a} .. {b}; {self.time_unsorted_rows} rows out of time order in the file (sorted "
                       "on load)")
        out.append(f"duplicate (user, item, time) rows: {self.duplicates}")
        if self.items_without_text:
            out.append(f"items without any text (knowledge prompts get only their id): {self.items_without_text}")
        for f in self.used:
            out.append(f"{f}: used {self.used[f]}; ignored (not declared) {self.ignored.get(f, [])}")
        for k, v in self.missing.items():
            if v:
                out.append(f"missing values: {k} {v}")
        out += [f"error: {e}" for e in self.errors]
        return out


def check_files(config: FilesConfig, base: Path | None = None) -> FileReport:
    """Read everything ``load_files`` reads and report it; problems become ``errors`` (one line each)."""
    rep = FileReport()
    try:
        data = load_files(config, base)
    except (DataFormatError, MissingFileError) as e:
        rep.errors.append(str(e))
        return rep
    c = data.columns
    rep.rows, rep.users, rep.items = len(data), len(set(c["user_id"])), len(set(c["item_id"]))
    rep.positives = int(c["label"].sum())
    if config.columns.time:
        rep.time_range = (float(c["timestamp"].min()), float(c["timestamp"].max()))
        rep.time_unsorted_rows = int((np.diff(c["timestamp"]) < 0).sum())
    keys = list(zip(c["user_id"], c["item_id"], c["timestamp"]))
    rep.duplicates = len(keys) - len(set(keys))
    for spec, role, declared in ((config.interactions, "interactions", _declared(config)),
                                 (config.items, "items", _side_declared(config.items)),
                                 (config.users, "users", _side_declared(config.users))):
        if spec is None:
            continue
        t = read_table(spec, base)
        rep.used[str(t.path)] = [h for h in t.header if h in declared]
        rep.ignored[str(t.path)] = [h for h in t.header if h not in declared]
        for k, h in enumerate(t.header):
            rep.missing[f"{t.path.name}:{h}"] = sum(r[k] is None for r in t.rows)
    if config.items is not None:
        rep.items_without_text = sum(1 for i, v in data.item_info.items()
                                     if v["title"] == i and not v["description"] and not v["category"])
    return rep


def _declared(c: FilesConfig) -> set[str]:
    m = c.columns
    return {x for x in (m.user, m.item, m.time, m.rating, m.label) if x} | set(c.features)


def _side_declared(spec: SideTable | None) -> set[str]:
    if spec is None:
        return set()
    return {spec.id, *([spec.title] if spec.title else []), *spec.features}


__all__ = ["Columns", "FileReport", "FilesConfig", "SideTable", "TableFile", "check_files", "load_files",
           "read_table"]
