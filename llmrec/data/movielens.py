"""MovieLens in its own formats and in RecBole's atomic files, one loader (``load_movielens``) for all three:

- MovieLens 100K as GroupLens ships it: ``u.data`` (user, item, rating, timestamp; tab-separated),
  ``u.item`` (``|``-separated, Latin-1: id, title with year, release date, video date, URL, 19 genre flags),
  ``u.user`` (``|``: id, age, gender, occupation, zip);
- MovieLens 1M: ``ratings.dat``, ``users.dat``, ``movies.dat`` (``::``-separated, Latin-1; occupations are codes
  0-20, ages are the published age groups);
- RecBole atomic files ``ml-100k.inter``, ``.user``, ``.item`` (typed headers).

CTR label: rating >= 4. Features: user, item, age, gender, occupation, zip prefix, release year,
genres (multi-hot). Split chronologically with ``RecData.chronological_split``."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from llmrec.data.schema import DataFormatError, RecData
from llmrec.errors import MissingFileError


def _read_atomic(path: Path, required: list[str]) -> tuple[list[str], list[list[str]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        for r in required:
            if r not in names:
                raise DataFormatError(str(path), 1, r, "column missing from the header")
        rows = []
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != len(names):
                raise DataFormatError(str(path), lineno, None, f"expected {len(names)} tab-separated fields, got {len(parts)}")
            rows.append(parts)
    return names, rows


# Scenarios for multi-scenario models (LLM4MSR): each movie falls in one genre group, by the group holding
# most of its genres (ties: the earlier group in this list). Not a feature unless a config adds it.
GENRE_GROUPS = {
    "drama": ("Drama", "Documentary", "unknown"),
    "light": ("Comedy", "Romance", "Musical", "Children's", "Animation", "Fantasy"),
    "thrill": ("Action", "Adventure", "Thriller", "Crime", "War", "Western", "Sci-Fi", "Horror", "Mystery",
               "Film-Noir"),
}


def genre_group(genres: tuple[str, ...]) -> str:
    """The scenario (``GENRE_GROUPS`` key) holding most of a movie's genres; ties go to the earlier group."""
    counts = [sum(g in members for g in genres) for members in GENRE_GROUPS.values()]
    return list(GENRE_GROUPS)[int(np.argmax(counts))]


ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


class _Ratings(NamedTuple):
    users: list[str]
    items: list[str]
    ratings: list[float]
    ts: list[float]
    path: Path


def _number(path: Path, lineno: int, name: str, text: str, non_negative: bool = True) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataFormatError(str(path), lineno, name, f"not a number: {text!r}") from None
    if not math.isfinite(v) or (non_negative and v < 0):
        raise DataFormatError(str(path), lineno, name, f"not a finite non-negative number: {text!r}")
    return v


def _read_delimited(path: Path, sep: str, n_fields: int, encoding: str = "latin-1") -> list[tuple[int, list[str]]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    rows = []
    with open(path, encoding=encoding) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) != n_fields:
                raise DataFormatError(str(path), lineno, None, f"expected {n_fields} {sep!r}-separated fields, "
                                                               f"got {len(parts)}")
            rows.append((lineno, parts))
    return rows


def _ratings(path: Path, sep: str) -> _Ratings:
    out = _Ratings([], [], [], [], path)
    for lineno, (u, i, r, t) in _read_delimited(path, sep, 4):
        out.users.append(u)
        out.items.append(i)
        out.ratings.append(_number(path, lineno, "rating", r))
        out.ts.append(_number(path, lineno, "timestamp", t))
    return out


def _split_title(title: str) -> tuple[str, str]:
    m = _TITLE_YEAR.match(title)
    return (m.group(1), m.group(2)) if m else (title.strip(), "unknown")


def _native_100k(root: Path) -> tuple[_Ratings, dict, dict]:
    ratings = _ratings(root / "u.data", "\t")
    uinfo = {}
    for lineno, (uid, age, gender, occ, zipc) in _read_delimited(root / "u.user", "|", 5):
        uinfo[uid] = {"age": _number(root / "u.user", lineno, "age", age), "gender": gender, "occupation": occ,
                      "zip": zipc[:1] or "?"}
    iinfo = {}
    for lineno, parts in _read_delimited(root / "u.item", "|", 5 + len(ML100K_GENRES)):
        flags = parts[5:]
        if any(f not in ("0", "1") for f in flags):
            raise DataFormatError(str(root / "u.item"), lineno, "genres", f"genre flags must be 0/1, got {flags}")
        title, _ = _split_title(parts[1])
        date = parts[2].strip()
        year = date[-4:] if len(date) >= 4 and date[-4:].isdigit() else "unknown"
        iinfo[parts[0]] = {"title": title, "year": year,
                           "genres": tuple(g for g, f in zip(ML100K_GENRES, flags) if f == "1") or ("unknown",)}
    return ratings, uinfo, iinfo


def _native_1m(root: Path) -> tuple[_Ratings, dict, dict]:
    ratings = _ratings(root / "ratings.dat", "::")
    uinfo = {}
    for lineno, (uid, gender, age, occ, zipc) in _read_delimited(root / "users.dat", "::", 5):
        code = int(_number(root / "users.dat", lineno, "occupation", occ))
        if code >= len(ML1M_OCCUPATIONS):
            raise DataFormatError(str(root / "users.dat"), lineno, "occupation", f"unknown code {occ!r}")
        uinfo[uid] = {"age": _number(root / "users.dat", lineno, "age", age), "gender": gender,
                      "occupation": ML1M_OCCUPATIONS[code], "zip": zipc[:1] or "?"}
    iinfo = {}
    for _, (iid, title, genres) in _read_delimited(root / "movies.dat", "::", 3):
        name, year = _split_title(title)
        iinfo[iid] = {"title": name, "year": year, "genres": tuple(g for g in genres.split("|") if g) or ("unknown",)}
    return ratings, uinfo, iinfo


def _atomic(root: Path) -> tuple[_Ratings, dict, dict]:
    inter_path, user_path, item_path = (root / f"ml-100k.{s}" for s in ("inter", "user", "item"))
    names, rows = _read_atomic(inter_path, ["user_id", "item_id", "rating", "timestamp"])
    col = {n: i for i, n in enumerate(names)}
    ratings = _Ratings([], [], [], [], inter_path)
    for lineno, r in enumerate(rows, start=2):
        ratings.users.append(r[col["user_id"]])
        ratings.items.append(r[col["item_id"]])
        ratings.ratings.append(_number(inter_path, lineno, "rating", r[col["rating"]]))
        ratings.ts.append(_number(inter_path, lineno, "timestamp", r[col["timestamp"]]))
    unames, urows = _read_atomic(user_path, ["user_id", "age", "gender", "occupation", "zip_code"])
    ucol = {n: i for i, n in enumerate(unames)}
    uinfo = {r[ucol["user_id"]]: {"age": _number(user_path, lineno, "age", r[ucol["age"]], non_negative=False),
                                  "gender": r[ucol["gender"]], "occupation": r[ucol["occupation"]],
                                  "zip": r[ucol["zip_code"]][:1] or "?"}
             for lineno, r in enumerate(urows, start=2)}
    inames, irows = _read_atomic(item_path, ["item_id", "movie_title", "release_year", "class"])
    icol = {n: i for i, n in enumerate(inames)}
    iinfo = {}
    for r in irows:
        year = r[icol["release_year"]]
        iinfo[r[icol["item_id"]]] = {"title": r[icol["movie_title"]], "year": year if year.isdigit() else "unknown",
                                      "genres": tuple(r[icol["class"]].split()) or ("unknown",)}
    return ratings, uinfo, iinfo


def movielens_format(root: str | Path) -> str:
    """``native-100k``, ``native-1m`` or ``recbole`` by the files in ``root``; a named error if none."""
    root = Path(root)
    for fmt, marker in (("native-100k", "u.data"), ("native-1m", "ratings.dat"), ("recbole", "ml-100k.inter")):
        if (root / marker).is_file():
            return fmt
    raise MissingFileError(f"{root}: no MovieLens files (expected u.data, ratings.dat or ml-100k.inter); "
                           f"`llmrec data fetch movielens100k` downloads them")


def load_movielens(root: str | Path, threshold: float = 4.0) -> RecData:
    """MovieLens 100K / 1M from a folder in any of the three formats (see the module doc)."""
    root = Path(root)
    fmt = movielens_format(root)
    ratings, uinfo, iinfo = {"native-100k": _native_100k, "native-1m": _native_1m, "recbole": _atomic}[fmt](root)
    return _build(ratings, uinfo, iinfo, "ml-1m" if fmt == "native-1m" else "ml-100k", threshold)


def load_movielens100k(root: str | Path, threshold: float = 4.0) -> RecData:
    """MovieLens-100K (RecBole atomic files or the native ``u.*`` files)."""
    return load_movielens(root, threshold)


def _build(r: _Ratings, uinfo: dict, iinfo: dict, name: str, threshold: float) -> RecData:
    users, items = r.users, r.items
    for i, (u, it) in enumerate(zip(users, items)):
        if u not in uinfo:
            raise DataFormatError(str(r.path), i + 1, "user_id", f"user {u!r} has no user record")
        if it not in iinfo:
            raise DataFormatError(str(r.path), i + 1, "item_id", f"item {it!r} has no movie record")

    def ucolumn(key):
        return np.array([uinfo[u][key] for u in users], dtype=object)

    def icolumn(key):
        return np.array([iinfo[i][key] for i in items], dtype=object)

    genres = np.empty(len(items), dtype=object)
    genres[:] = [iinfo[i]["genres"] for i in items]
    columns = {
        "user_id": np.array(users, dtype=object),
        "item_id": np.array(items, dtype=object),
        "age": ucolumn("age").astype(np.float32),
        "gender": ucolumn("gender"),
        "occupation": ucolumn("occupation"),
        "zip_prefix": ucolumn("zip"),
        "release_year": icolumn("year"),
        "genres": genres,
        "scenario": np.array([genre_group(iinfo[i]["genres"]) for i in items], dtype=object),
        "label": (np.array(r.ratings) >= threshold).astype(np.float32),
        "rating": np.array(r.ratings, dtype=np.float32),  # not a feature: behaviour graphs read it
        "timestamp": np.array(r.ts, dtype=np.float64),
    }
    fields = {"user_id": "categorical", "item_id": "categorical", "age": "numerical", "gender": "categorical",
              "occupation": "categorical", "zip_prefix": "categorical", "release_year": "categorical",
              "genres": "multi_hot"}
    item_info = {i: {"title": v["title"], "category": " ".join(v["genres"]),
                     "description": f"{v['title']} ({v['year']}), a {', '.join(v['genres'])} movie."}
                 for i, v in iinfo.items()}
    user_info = {u: {"profile": f"{int(v['age'])}-year-old {'woman' if v['gender'] == 'F' else 'man'}, "
                                f"occupation {v['occupation']}"} for u, v in uinfo.items()}
    return RecData(name=name, columns=columns, fields=fields, item_info=item_info, user_info=user_info,
                   scenario_col="scenario", domain="movies")
