"""MovieLens-100K from RecBole atomic files (``ml-100k.inter``, ``.user``, ``.item``; typed headers).

CTR label: rating >= 4. Features: user, item, age, gender, occupation, zip prefix, release year,
genres (multi-hot). Split chronologically with ``RecData.chronological_split``."""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from llmrec.data.schema import DataFormatError, RecData


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
    counts = [sum(g in members for g in genres) for members in GENRE_GROUPS.values()]
    return list(GENRE_GROUPS)[int(np.argmax(counts))]


def load_movielens100k(root: str | Path, threshold: float = 4.0) -> RecData:
    root = Path(root)
    inter_path, user_path, item_path = (root / f"ml-100k.{s}" for s in ("inter", "user", "item"))
    names, rows = _read_atomic(inter_path, ["user_id", "item_id", "rating", "timestamp"])
    col = {n: i for i, n in enumerate(names)}
    users, items, ratings, ts = [], [], [], []
    for lineno, r in enumerate(rows, start=2):
        for f in ("rating", "timestamp"):
            try:
                v = float(r[col[f]])
            except ValueError:
                raise DataFormatError(str(inter_path), lineno, f, f"not a number: {r[col[f]]!r}") from None
            if not math.isfinite(v) or (f == "rating" and v < 0):
                raise DataFormatError(str(inter_path), lineno, f, f"not a finite non-negative number: {r[col[f]]!r}")
        users.append(r[col["user_id"]])
        items.append(r[col["item_id"]])
        ratings.append(float(r[col["rating"]]))
        ts.append(float(r[col["timestamp"]]))

    unames, urows = _read_atomic(user_path, ["user_id", "age", "gender", "occupation", "zip_code"])
    ucol = {n: i for i, n in enumerate(unames)}
    uinfo = {}
    for lineno, r in enumerate(urows, start=2):
        try:
            age = float(r[ucol["age"]])
        except ValueError:
            raise DataFormatError(str(user_path), lineno, "age", f"not a number: {r[ucol['age']]!r}") from None
        if not math.isfinite(age):
            raise DataFormatError(str(user_path), lineno, "age", f"not a finite number: {r[ucol['age']]!r}")
        uinfo[r[ucol["user_id"]]] = {"age": age, "gender": r[ucol["gender"]], "occupation": r[ucol["occupation"]],
                                      "zip": r[ucol["zip_code"]][:1] or "?"}
    inames, irows = _read_atomic(item_path, ["item_id", "movie_title", "release_year", "class"])
    icol = {n: i for i, n in enumerate(inames)}
    iinfo = {}
    for r in irows:
        year = r[icol["release_year"]]
        iinfo[r[icol["item_id"]]] = {"title": r[icol["movie_title"]], "year": year if year.isdigit() else "unknown",
                                      "genres": tuple(r[icol["class"]].split()) or ("unknown",)}
    for i, (u, it) in enumerate(zip(users, items)):
        if u not in uinfo:
            raise DataFormatError(str(inter_path), i + 2, "user_id", f"user {u!r} not in {user_path.name}")
        if it not in iinfo:
            raise DataFormatError(str(inter_path), i + 2, "item_id", f"item {it!r} not in {item_path.name}")

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
        "label": (np.array(ratings) >= threshold).astype(np.float32),
        "timestamp": np.array(ts, dtype=np.float64),
    }
    fields = {"user_id": "categorical", "item_id": "categorical", "age": "numerical", "gender": "categorical",
              "occupation": "categorical", "zip_prefix": "categorical", "release_year": "categorical",
              "genres": "multi_hot"}
    item_info = {i: {"title": v["title"], "category": " ".join(v["genres"]),
                     "description": f"{v['title']} ({v['year']}), a {', '.join(v['genres'])} movie."}
                 for i, v in iinfo.items()}
    user_info = {u: {"profile": f"{int(v['age'])}-year-old {'woman' if v['gender'] == 'F' else 'man'}, "
                                f"occupation {v['occupation']}"} for u, v in uinfo.items()}
    return RecData(name="ml-100k", columns=columns, fields=fields, item_info=item_info, user_info=user_info,
                   scenario_col="scenario", domain="movies")
