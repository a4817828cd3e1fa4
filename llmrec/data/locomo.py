"""LoCoMo long-term conversational memory benchmark loader (``locomo10.json``).

Sessions are numbered from the ``session_N`` keys; each QA keeps its raw evidence ids and the parsed
(session, turn) pairs. Malformed evidence ids are kept in ``bad_evidence`` (never dropped silently)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmrec.data.schema import DataFormatError

DEV_CONVERSATIONS = ("conv-26", "conv-30", "conv-41", "conv-42", "conv-43")
HELDOUT_CONVERSATIONS = ("conv-44", "conv-47", "conv-48", "conv-49", "conv-50")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
_DIA = re.compile(r"^D(\d+):(\d+)$")


@dataclass
class Turn:
    """One utterance of a LoCoMo conversation: its dialog id, speaker, text (image captions appended) and
    session."""
    dia_id: str
    speaker: str
    text: str
    session: int


@dataclass
class Session:
    """One LoCoMo session: its index, date-time text and turns."""
    index: int
    date_time: str
    turns: list[Turn]


@dataclass
class QA:
    """One LoCoMo question with its answer, category and evidence dialog ids."""
    question: str
    answer: str | None
    category: int
    evidence: list[str]
    evidence_turns: list[tuple[int, int]]
    bad_evidence: list[str] = field(default_factory=list)
    adversarial_answer: str | None = None

    @property
    def gold_sessions(self) -> set[int]:
        """The sessions named by the question's well-formed evidence ids."""
        return {s for s, _ in self.evidence_turns}


@dataclass
class Conversation:
    """One LoCoMo conversation (a sample): its two speakers, sessions and questions."""
    sample_id: str
    speaker_a: str
    speaker_b: str
    sessions: list[Session]
    qa: list[QA]


def parse_evidence(ev: str) -> tuple[int, int] | None:
    """``"D3:12"`` -> (session 3, turn 12); None for a malformed evidence id."""
    m = _DIA.match(ev.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def load_locomo(path: str | Path, sample_ids: tuple[str, ...] | None = None) -> list[Conversation]:
    """LoCoMo conversations from ``locomo10.json`` (a file or its folder), optionally only ``sample_ids``;
    malformed input is a ``DataFormatError`` naming the field."""
    path = Path(path)
    if path.is_dir():
        path = path / "locomo10.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(str(path), e.lineno, None, f"invalid JSON: {e.msg}") from None
    if not isinstance(raw, list):
        raise DataFormatError(str(path), None, None, "expected a list of conversations")
    convs = []
    for n, s in enumerate(raw):
        for key in ("sample_id", "conversation", "qa"):
            if key not in s:
                raise DataFormatError(str(path), None, f"[{n}].{key}", "missing")
        if sample_ids is not None and s["sample_id"] not in sample_ids:
            continue
        c = s["conversation"]
        sessions = []
        for key in c:
            m = re.fullmatch(r"session_(\d+)", key)
            if not m:
                continue
            idx = int(m.group(1))
            turns = []
            for t, turn in enumerate(c[key]):
                for f in ("speaker", "dia_id", "text"):
                    if f not in turn:
                        raise DataFormatError(str(path), None, f"{s['sample_id']}.{key}[{t}].{f}", "missing")
                turns.append(Turn(turn["dia_id"], turn["speaker"], turn["text"], idx))
            sessions.append(Session(idx, c.get(f"{key}_date_time", ""), turns))
        sessions.sort(key=lambda x: x.index)
        qas = []
        for q in s["qa"]:
            ev = [str(e) for e in q.get("evidence", [])]
            parsed, bad = [], []
            for e in ev:
                p = parse_evidence(e)
                (parsed.append(p) if p else bad.append(e))
            ans = q.get("answer")
            qas.append(QA(q["question"], None if ans is None else str(ans), int(q["category"]), ev, parsed, bad,
                          q.get("adversarial_answer")))
        convs.append(Conversation(s["sample_id"], c.get("speaker_a", ""), c.get("speaker_b", ""), sessions, qas))
    return convs
