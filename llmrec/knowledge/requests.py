"""What to ask the LLM about a data set: one ``KnowledgeRequest`` per user / item / scenario.

Every history shown to the LLM comes from the *training* rows only, so knowledge never sees a
validation or test interaction (``tests/test_knowledge_requests.py`` checks it)."""
from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np

from llmrec.data.schema import RecData
from llmrec.jobs import KnowledgeRequest

KnowledgeKind = Literal["item", "user", "scenario", "user_scenario"]
# kind -> prompt template name (prompts/<name>.txt) and the column whose value keys its vectors
PROMPTS: dict[str, str] = {"item": "item_knowledge", "user": "user_preference",
                           "scenario": "scenario_knowledge", "user_scenario": "user_cross_scenario"}


def key_column(data: RecData, kind: str) -> str:
    """The column whose values key a knowledge kind's rows (item, user, scenario, or QueryRec's search state
    and (search state, item))."""
    if kind == "item":
        return data.item_col
    if kind in ("user", "user_scenario"):
        return data.user_col
    if kind in ("query", "query_match"):  # QueryRec: per search state, per (search state, item)
        col = "query_key" if kind == "query" else "query_item_key"
        if col not in data.columns:
            raise ValueError(f"kinds: {data.name} has no search history column (data.search_history: N)")
        return col
    if kind == "scenario":
        if not data.scenario_col:
            raise ValueError(f"kinds: {data.name} has no scenario column, so no 'scenario' knowledge")
        return data.scenario_col
    raise ValueError(f"kinds: unknown knowledge kind {kind!r} (one of {sorted(PROMPTS)})")


def _clicks_by_time(data: RecData, rows: np.ndarray) -> dict[str, np.ndarray]:
    cols = data.take(rows[np.argsort(data.columns[data.time][rows], kind="stable")])
    keep = cols[data.label] > 0
    return {k: v[keep] for k, v in cols.items()}


def user_histories(data: RecData, rows: np.ndarray, limit: int) -> dict[str, list[str]]:
    """Most recent clicked items per user within ``rows`` (pass train rows: no leakage)."""
    clicks = _clicks_by_time(data, rows)
    hist: dict[str, list[str]] = {}
    for u, i in zip(clicks[data.user_col], clicks[data.item_col]):
        hist.setdefault(str(u), []).append(str(i))
    return {u: h[-limit:] for u, h in hist.items()}


def _bullets(titles: list[str]) -> str:
    return "\n".join(f"- {t}" for t in titles) if titles else "- (no clicks yet)"


def build_requests(data: RecData, train_rows: np.ndarray, kind: str, history_items: int = 8) -> list[KnowledgeRequest]:
    """One prompt request per item / user / scenario of the training rows, with the history it shows."""
    key_column(data, kind)
    if kind == "item":
        return [KnowledgeRequest(i, info) for i, info in
                sorted(data.item_info.items(), key=lambda kv: (len(kv[0]), kv[0]))]
    if kind == "user":
        hist = user_histories(data, train_rows, history_items)
        return [KnowledgeRequest(u, {"profile": info["profile"],
                                     "history": _bullets([data.item_info[i]["title"] for i in hist.get(u, [])])})
                for u, info in data.user_info.items()]
    clicks = _clicks_by_time(data, train_rows)
    sc = data.scenario_col
    scenarios = sorted(str(s) for s in set(data.columns[sc]))
    if kind == "scenario":
        labels, scen_all = data.columns[data.label][train_rows], data.columns[sc][train_rows]
        reqs = []
        for s in scenarios:
            in_s = clicks[sc] == s
            top = Counter(data.item_info[str(i)].get("category", "") for i in clicks[data.item_col][in_s])
            rate = float(labels[scen_all == s].mean()) if (scen_all == s).any() else 0.0
            reqs.append(KnowledgeRequest(s, {
                "domain": data.domain, "scenarios": ", ".join(scenarios), "scenario": s,
                "top_items": ", ".join(c for c, _ in top.most_common(4) if c) or "(no clicks yet)",
                "click_rate": f"{100 * rate:.0f}%"}))
        return reqs
    # user_scenario: recent clicks per scenario
    per: dict[str, dict[str, list[str]]] = {}
    for u, i, s in zip(clicks[data.user_col], clicks[data.item_col], clicks[sc]):
        per.setdefault(str(u), {}).setdefault(str(s), []).append(str(i))
    limit = max(1, history_items // max(1, len(scenarios)))
    reqs = []
    for u, info in data.user_info.items():
        lines = []
        for s in scenarios:
            titles = [data.item_info[i]["title"] for i in per.get(u, {}).get(s, [])[-limit:]]
            lines.append(f"{s}: " + ("; ".join(titles) if titles else "(no clicks)"))
        reqs.append(KnowledgeRequest(u, {"profile": info["profile"], "history": "\n".join(lines)}))
    return reqs
