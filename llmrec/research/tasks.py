"""A small personalized research task set, generated from ../shared/data (never copied into the repo):

- PrefEval explicit preferences: the user once stated a preference (stored in memory next to an unrelated
  filler conversation); the question does not repeat it; a good answer must respect it (PrefEval's
  ``explanation``).
- LoCoMo development conversations (conv-26, -30, -41, -42, -43 only; the held-out ones are never used): the
  user's memory is the whole conversation; questions are single- and multi-hop QA about the user; a good answer
  must agree with the gold answer.
Each task: ``{task_id, source, user_id, sessions: [{session_id, messages}], question, reference, must_respect}``."""
from __future__ import annotations

import json
import random
from pathlib import Path

from llmrec.data.locomo import DEV_CONVERSATIONS, load_locomo
from llmrec.io import write_text_atomic


def prefeval_tasks(root: str | Path, per_topic: int = 1, seed: int = 0) -> list[dict]:
    """Research tasks from PrefEval's explicit preferences (a stated preference becomes the user's memory)."""
    root = Path(root)
    rng = random.Random(seed)
    fillers = json.loads((root / "filtered_inter_turns.json").read_text(encoding="utf-8"))
    tasks = []
    for f in sorted((root / "explicit_preference").glob("*.json")):
        rows = json.loads(f.read_text(encoding="utf-8"))
        for n, r in enumerate(rng.sample(rows, min(per_topic, len(rows)))):
            for key in ("preference", "question", "explanation"):
                if not r.get(key):
                    raise ValueError(f"{f.name}: a row has no {key!r}")
            filler = fillers[(len(tasks) * 7) % len(fillers)]["conversation"]
            filler_msgs = [{"role": m.get("role", "user"), "content": str(m.get("content", ""))[:600]}
                           for m in filler[:4] if str(m.get("content", "")).strip()]
            tasks.append({
                "task_id": f"prefeval:{f.stem}:{n}", "source": "prefeval", "user_id": f"pe-{f.stem}-{n}",
                "sessions": [{"session_id": "s1", "messages": [{"role": "user", "content": r["preference"]},
                                                                {"role": "assistant", "content": "Noted, thank you."}]},
                             {"session_id": "s2", "messages": filler_msgs}],
                "question": r["question"], "reference": r["explanation"],
                "must_respect": f"The user's preference: {r['preference']} {r['explanation']}"})
    return tasks


def locomo_tasks(path: str | Path, per_conversation: int = 2, seed: int = 0) -> list[dict]:
    """Research tasks from LoCoMo dev conversations (the conversation is the user's memory)."""
    rng = random.Random(seed)
    tasks = []
    for conv in load_locomo(path, DEV_CONVERSATIONS):
        user = conv.speaker_a
        qas = [q for q in conv.qa if q.category in (1, 4) and q.answer and user.lower() in q.question.lower()]
        for n, q in enumerate(rng.sample(qas, min(per_conversation, len(qas)))):
            sessions = [{"session_id": f"session_{s.index}",
                         "messages": [{"role": "user" if t.speaker == user else "assistant", "name": t.speaker,
                                       "content": t.text} for t in s.turns]}
                        for s in conv.sessions]
            tasks.append({"task_id": f"locomo:{conv.sample_id}:{n}", "source": "locomo",
                          "user_id": f"{conv.sample_id}-{user}", "sessions": sessions, "question": q.question,
                          "reference": q.answer,
                          "must_respect": f"The answer must agree with {user}'s own history: {q.answer}"})
    return tasks


def write_tasks(path: str | Path, tasks: list[dict]) -> Path:
    """Write a task set as JSON."""
    return write_text_atomic(path, "".join(json.dumps(t) + "\n" for t in tasks))
