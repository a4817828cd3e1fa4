"""Knowledge text -> vectors by id (with any ``Embedder``), saved next to the shards as .npz."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from llmrec.embed import Embedder


def encode_knowledge(texts: Mapping[str, str], embedder: Embedder, fallback: str = "no information") -> dict[str, np.ndarray]:
    ids = sorted(texts)
    vecs = embedder.encode([texts[i] if texts[i].strip() else fallback for i in ids])
    return {i: v for i, v in zip(ids, vecs)}


def save_vectors(path: str | Path, vectors: Mapping[str, np.ndarray], model_id: str) -> None:
    path = Path(path)
    ids = sorted(vectors)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids), vectors=np.stack([vectors[i] for i in ids]).astype(np.float32),
             model_id=np.array(model_id))
    tmp.replace(path)


def load_vectors(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    with np.load(path, allow_pickle=False) as z:
        return {str(i): v for i, v in zip(z["ids"], z["vectors"])}, str(z["model_id"])
