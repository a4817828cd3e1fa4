"""LoCoMo conversations as user memories (what the LoCoMo benchmarks add before they retrieve)."""
from __future__ import annotations

import datetime as dt

from llmrec.data.locomo import Conversation
from llmrec.memory.api import Memory, namespace


def session_time(text: str) -> float | None:
    """LoCoMo dates look like "1:56 pm on 8 May, 2023"; None when unparseable."""
    try:
        return dt.datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None


def add_conversation(memory: Memory, conv: Conversation) -> int:
    """One LoCoMo conversation as one user: each session's turns (speaker: text) added with the session's
    date. Returns how many units the store gained (turns, pairs, session units)."""
    ns = namespace(conv.sample_id)
    before = memory.store.count(ns) if ns in memory.store.namespaces() else 0
    for sess in conv.sessions:
        msgs = [{"role": "user", "name": turn.speaker, "content": turn.text} for turn in sess.turns]
        memory.add(conv.sample_id, msgs, session_id=str(sess.index), timestamp=session_time(sess.date_time))
    return memory.store.count(ns) - before
