"""A small Python client of ``llmrec memory serve``, with ``Memory``'s call shapes (and mem0's):

    from llmrec.memory.client import MemoryClient
    mem = MemoryClient("http://127.0.0.1:8765", api_key="...")
    mem.add([{"role": "user", "content": "I moved to Lisbon"}], user_id="alice", session_id="s1")
    hits = mem.search("Where does Alice live?", user_id="alice", limit=5)     # list of Hit

Errors come back as ``MemoryServiceError`` with the service's status, type, message and field."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

from llmrec.errors import LLMRecError
from llmrec.retrieval import Hit
from llmrec.store.pgcluster import free_port


class MemoryServiceError(LLMRecError):
    """An error answer of the memory service: HTTP status, error type, message and the field it names."""

    def __init__(self, status: int, kind: str, message: str, field: str | None) -> None:
        super().__init__(f"{status} {kind}: {message}")
        self.status, self.kind, self.message, self.field = status, kind, message, field


def _hit(r: Mapping[str, Any]) -> Hit:
    return Hit(r["id"], r["memory"], float(r.get("score") or 0.0), r.get("unit", "turn"), r.get("session_id"),
               r.get("timestamp"), dict(r.get("metadata") or {}))


class MemoryClient:
    """The memory service over HTTP (httpx; one connection pool, thread-safe)."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        import httpx

        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def _call(self, method: str, path: str, **kw) -> Any:
        r = self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                e = r.json()["error"]
                raise MemoryServiceError(r.status_code, e.get("type", "error"), e.get("message", r.text), e.get("field"))
            except (ValueError, KeyError, TypeError):
                raise MemoryServiceError(r.status_code, "error", r.text[:500], None) from None
        return r.json()

    def add(self, who: str | Sequence[Mapping[str, str]], content: str | Sequence[Mapping[str, str]] | None = None,
            session_id: str | None = None, timestamp: float | None = None,
            metadata: Mapping[str, Any] | None = None, *, user_id: str | None = None) -> list[str]:
        """Add a text or messages; ``add(user_id, content)`` or ``add(messages, user_id=...)``. Turn ids."""
        user_id, content = (who, content) if user_id is None else (user_id, who)
        body: dict[str, Any] = {"user_id": user_id, "session_id": session_id, "timestamp": timestamp,
                                "metadata": dict(metadata) if metadata else None}
        body["text" if isinstance(content, str) else "messages"] = content if isinstance(content, str) else list(content)
        return [r["id"] for r in self._call("POST", "/memories", json={k: v for k, v in body.items()
                                                                        if v is not None})["results"]]

    def search(self, who: str, query: str | None = None, k: int = 5, method: str = "hybrid",
               granularity: str | None = "turn", filters: Mapping[str, Any] | None = None,
               since: float | None = None, until: float | None = None, *, user_id: str | None = None,
               limit: int | None = None) -> list[Hit]:
        """The best memories; ``search(user_id, query)`` or ``search(query, user_id=..., limit=...)``."""
        user_id, query = (who, query) if user_id is None else (user_id, who)
        body = {"user_id": user_id, "query": query, "k": limit or k, "method": method, "granularity": granularity,
                "filters": dict(filters) if filters else None, "since": since, "until": until}
        res = self._call("POST", "/search", json={k_: v for k_, v in body.items() if v is not None or k_ == "granularity"})
        return [_hit(r) for r in res["results"]]

    def get(self, user_id: str, memory_id: str) -> Hit:
        """One memory."""
        return _hit(self._call("GET", f"/memories/{memory_id}", params={"user_id": user_id}))

    def get_all(self, user_id: str, page_size: int = 500) -> list[Hit]:
        """Every memory of the user (all pages)."""
        out, offset = [], 0
        while offset is not None:
            page = self._call("GET", "/memories", params={"user_id": user_id, "limit": page_size, "offset": offset})
            out += [_hit(r) for r in page["results"]]
            offset = page["next_offset"]
        return out

    def update(self, user_id: str, memory_id: str, text: str) -> None:
        """Change a memory's text."""
        self._call("PUT", f"/memories/{memory_id}", json={"user_id": user_id, "text": text})

    def delete(self, user_id: str, memory_id: str) -> int:
        """Delete one memory; how many units went with it."""
        return int(self._call("DELETE", f"/memories/{memory_id}", params={"user_id": user_id})["deleted"])

    def delete_all(self, user_id: str) -> int:
        """Delete every memory of the user."""
        return int(self._call("DELETE", "/memories", params={"user_id": user_id})["deleted"])

    def history(self, user_id: str, memory_id: str) -> list[dict[str, Any]]:
        """A memory's events, oldest first."""
        return self._call("GET", f"/memories/{memory_id}/history", params={"user_id": user_id})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def launch_service(store: str, keys: Mapping[str, str], options: Sequence[str] = (), port: int | None = None,
                   env: Mapping[str, str] | None = None, stderr: Any = subprocess.DEVNULL,
                   timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """Start ``llmrec memory serve --store STORE`` (keys ``key -> tenant``, more CLI ``options``) in a child
    process of this Python and wait until ``/health`` answers; (the process, its base URL). A node that exits
    or is not up within ``timeout`` is an error (its stderr, when piped, in the message)."""
    import httpx

    port = port or free_port()
    full = dict(os.environ, **(env or {}), LLMREC_MEMORY_KEYS=",".join(f"{k}={t}" for k, t in keys.items()))
    proc = subprocess.Popen([sys.executable, "-m", "llmrec.cli", "memory", "serve", "--store", store,
                             "--port", str(port), *options], env=full, stdout=subprocess.DEVNULL, stderr=stderr,
                            text=True)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            why = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise MemoryServiceError(503, "unavailable", f"memory service on {base} did not start {why}", None)
        time.sleep(0.3)
