"""Knowledge text -> vectors by id, saved next to the shards as ``<kind>.<encoder>.npz``.

Two encoders: any ``Embedder`` (default MiniLM), or ``LLMHiddenEncoder`` — the masked mean of the
LLM's own last hidden layer over the text, as KAR (``avg`` pooling) and LLM4MSR do. Vector files keep
a hash of each text, so re-encoding after a partial change only encodes the changed texts."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from llmrec.embed import Embedder
from llmrec.io import atomic_open
from llmrec.jobs import load_knowledge

FALLBACK = "no information"


def text_hash(text: str) -> str:
    """The short hash vector files keep of each text (re-encoding skips unchanged texts)."""
    return _text_hash(text)


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def encoder_slug(model_id: str) -> str:
    """A file-name-safe form of an encoder's model id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)


def encode_knowledge(texts: Mapping[str, str], embedder: Embedder, fallback: str = FALLBACK,
                     previous: tuple[dict[str, np.ndarray], dict[str, str]] | None = None) -> dict[str, np.ndarray]:
    """One vector per id; empty texts (failed generations) get the vector of ``fallback``.
    ``previous`` = (vectors, text hashes) from an earlier run: unchanged texts are not re-encoded."""
    ids = sorted(texts)
    final = {i: texts[i] if texts[i].strip() else fallback for i in ids}
    out: dict[str, np.ndarray] = {}
    if previous is not None:
        vecs, hashes = previous
        out = {i: vecs[i] for i in ids if i in vecs and hashes.get(i) == _text_hash(final[i])}
    todo = [i for i in ids if i not in out]
    if todo:
        for i, v in zip(todo, embedder.encode([final[i] for i in todo])):
            out[i] = np.asarray(v, np.float32)
    return {i: out[i] for i in ids}


def save_vectors(path: str | Path, vectors: Mapping[str, np.ndarray], model_id: str,
                 texts: Mapping[str, str] | None = None) -> None:
    """Write knowledge vectors with their ids and text hashes (atomically)."""
    path = Path(path)
    ids = sorted(vectors)
    hashes = [_text_hash((texts or {}).get(i, "").strip() or FALLBACK) if texts is not None else "" for i in ids]
    with atomic_open(path, "wb") as f:
        np.savez(f, ids=np.array(ids), vectors=np.stack([vectors[i] for i in ids]).astype(np.float32),
                 model_id=np.array(model_id), text_hashes=np.array(hashes))


def load_vectors(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """Knowledge vectors by id from a vectors file."""
    vecs, model_id, _ = load_vectors_with_hashes(path)
    return vecs, model_id


def load_vectors_with_hashes(path: str | Path) -> tuple[dict[str, np.ndarray], str, dict[str, str]]:
    """Knowledge vectors by id with the hash of the text each was made from."""
    with np.load(path, allow_pickle=False) as z:
        ids = [str(i) for i in z["ids"]]
        hashes = [str(h) for h in z["text_hashes"]] if "text_hashes" in z else [""] * len(ids)
        return dict(zip(ids, z["vectors"])), str(z["model_id"]), dict(zip(ids, hashes))


def vectors_path(out_dir: str | Path, kind: str, model_id: str) -> Path:
    """Where the vectors of one knowledge kind and encoder are stored."""
    return Path(out_dir) / f"{kind}.{encoder_slug(model_id)}.npz"


def encode_kind(out_dir: str | Path, kind: str, embedder: Embedder,
                inputs: Mapping[str, str] | None = None) -> tuple[dict[str, np.ndarray], Path]:
    """Encode the shard ``out_dir/<kind>.jsonl`` and save its vectors next to it (incrementally).
    ``inputs`` (id -> text) is prepended to each answer: KAR encodes a user as the history shown to the
    LLM followed by the LLM's reasoning about it."""

    texts = load_knowledge(out_dir, kind)
    if inputs is not None:
        texts = {i: f"{inputs.get(i, '')}\n{t}".strip() if t else "" for i, t in texts.items()}
    if not texts:
        raise FileNotFoundError(f"{Path(out_dir) / (kind + '.jsonl')}: no knowledge rows; run extraction first")
    path = vectors_path(out_dir, kind, embedder.model_id)
    previous = None
    if path.exists():
        vecs, mid, hashes = load_vectors_with_hashes(path)
        if mid == embedder.model_id:
            previous = (vecs, hashes)
    vectors = encode_knowledge(texts, embedder, previous=previous)
    save_vectors(path, vectors, embedder.model_id, texts)
    return vectors, path
