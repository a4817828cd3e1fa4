"""Build the public corpus the research agent reads: documents -> overlapping word chunks -> embeddings -> the
``public`` namespace of a ``VectorStore`` (``llmrec corpus build``).

Inputs: a folder of ``.txt`` / ``.md`` files (one document each, id = relative path) or a JSONL file of
``{"id": ..., "text": ..., "title": ...}`` lines (``id`` and ``title`` optional). Chunk ids are
``<document id>#<n>``; rebuilding upserts, so a rerun after a kill or with more documents is safe and
re-embeds nothing the embedder's cache already holds."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from llmrec.embed import Embedder
from llmrec.errors import ConfigError, DataError, MissingFileError
from llmrec.store import VectorStore


@dataclass(frozen=True)
class Document:
    """A document of the public corpus: id, text and title."""
    id: str
    text: str
    title: str = ""


def read_documents(source: str | Path, limit: int | None = None) -> list[Document]:
    """Documents from a folder of .txt/.md files or a JSONL file (see the module doc)."""
    src = Path(source).expanduser()
    if not src.exists():
        raise MissingFileError(f"--from {src}: no such file or folder")
    docs: list[Document] = []
    if src.is_dir():
        for f in sorted(p for p in src.rglob("*") if p.suffix in (".txt", ".md") and p.is_file()):
            text = f.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                docs.append(Document(str(f.relative_to(src)), text, f.stem))
            if limit and len(docs) >= limit:
                break
    else:
        with open(src, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{src}:{lineno}: invalid JSON ({e.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise DataError(f"{src}:{lineno} field 'text': a JSON object with a string 'text' is required")
                docs.append(Document(str(row.get("id", f"line{lineno}")), row["text"].strip(), str(row.get("title", ""))))
                if limit and len(docs) >= limit:
                    break
    if not docs:
        raise DataError(f"--from {src}: no documents (.txt / .md files, or JSONL lines with 'text')")
    return docs


def chunk_words(text: str, size: int, overlap: int) -> Iterator[str]:
    """Windows of ``size`` words advancing by ``size - overlap``; the last window ends at the text's end."""
    if size < 1 or not 0 <= overlap < size:
        raise ConfigError(f"chunk_words: need size >= 1 and 0 <= overlap < size, got {size}, {overlap}")
    words = text.split()
    start = 0
    while True:
        yield " ".join(words[start:start + size])
        if start + size >= len(words):
            return
        start += size - overlap


def build_corpus(store_dir: str | Path, source: str | Path, embedder: Embedder, namespace: str = "public",
                 chunk_size: int = 160, overlap: int = 32, batch_size: int = 64, limit: int | None = None,
                 progress: bool = True) -> dict:
    """Chunk, embed and upsert every document of ``source`` into ``store_dir``; returns counts."""
    from tqdm import tqdm

    docs = read_documents(source, limit)
    chunks: list[tuple[str, str, dict]] = []
    for d in docs:
        for n, piece in enumerate(chunk_words(d.text, chunk_size, overlap)):
            text = f"{d.title}: {piece}" if d.title and n == 0 else piece
            chunks.append((f"{d.id}#{n}", text, {"doc": d.id, "title": d.title, "chunk": n}))
    store = VectorStore(store_dir)
    try:
        bar = tqdm(total=len(chunks), desc="corpus: embed + store", unit="chunk", disable=not progress)
        for i in range(0, len(chunks), batch_size):
            part = chunks[i:i + batch_size]
            texts = [t for _, t, _ in part]
            store.upsert(namespace, [c for c, _, _ in part], texts, embedder.encode(texts),
                         metadatas=[m for _, _, m in part])
            bar.update(len(part))
        bar.close()
        store.flush()
        total = store.count(namespace)
    finally:
        store.close()
    return {"store": str(store_dir), "namespace": namespace, "documents": len(docs), "chunks": len(chunks),
            "in_store": total}
