"""``llmrec memory serve``: the Memory API as an HTTP service (FastAPI + uvicorn, OpenAPI at ``/openapi.json``,
docs at ``/docs``) over any store — the embedded one for one process, PostgreSQL for many processes or nodes.

    llmrec memory serve --store postgresql:///postgres?host=/run/postgresql --keys keys.yaml --port 8765

Routes (shaped like mem0's self-hosted server where the semantics match; every one but ``/health`` needs an
API key, ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``, and acts inside the key's tenant):

| route | what |
|---|---|
| ``POST /memories`` | add messages (or one text) for ``user_id``: turn units (+ pair and session units) |
| ``GET /memories?user_id=&limit=&offset=`` | a user's memories, a page at a time |
| ``GET /memories/{id}?user_id=`` | one memory |
| ``PUT /memories/{id}`` | change its text |
| ``DELETE /memories/{id}?user_id=`` / ``DELETE /memories?user_id=`` | delete one / all of a user's |
| ``GET /memories/{id}/history?user_id=`` | its add / update / delete events |
| ``POST /search`` | ``method``: dense, bm25, hybrid, memgas, rfmem; ``granularity``, ``filters``, time range |
| ``POST /consolidate`` | summary and keywords units (needs a digester) |

Requests are validated before any work (sizes, counts, enums; one JSON error naming the field); bodies over
``max_body_bytes`` are refused (413) and each key has a token bucket (429 with ``Retry-After``). Errors are
``{"error": {"type", "message", "field"}}``. Tenants are isolated by namespace: a user ``u`` of tenant ``t``
is the store namespace ``user:t:u``, and tenant names hold no ``:``, so no crafted user id reaches another
tenant. Consistency is the store's: with PostgreSQL, a search that starts after a write was acknowledged by
any node sees it."""
from __future__ import annotations

import hmac
import re
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmrec.config import StrictConfig
from llmrec.errors import NotFoundError, StoreError
from llmrec.memory.api import Memory, MemoryConfig
from llmrec.retrieval import Hit, make_retriever  # retrievers registered by llmrec.memory's __init__
from llmrec.store import open_store

TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Scalar = str | int | float | bool | None


class ServiceConfig(StrictConfig):
    """The service's store, keys (API key -> tenant) and limits."""
    store: str  # a folder (embedded store) or a postgresql:// URL (shared store)
    snapshot_dir: str | None = None  # this process's FAISS snapshots (PostgreSQL store)
    keys: dict[str, str]  # API key -> tenant
    max_body_bytes: int = Field(1_000_000, ge=1024)
    rate_per_second: float = Field(200.0, gt=0)  # per key: the bucket refills at this rate ...
    burst: int = Field(400, ge=1)  # ... up to this many requests
    max_k: int = Field(100, ge=1)
    max_page: int = Field(1000, ge=1)
    memory: MemoryConfig = MemoryConfig()

    @model_validator(mode="after")
    def _keys(self) -> "ServiceConfig":
        if not self.keys:
            raise ValueError("keys: at least one API key (key: tenant) is needed")
        for key, tenant in self.keys.items():
            if len(key) < 16:
                raise ValueError(f"keys: a key of tenant {tenant!r} is shorter than 16 characters")
            if not TENANT.match(tenant):
                raise ValueError(f"keys.{key[:4]}...: tenant {tenant!r} must be 1-64 letters, digits, _ or -")
        return self


# ---------------------------------------------------------------- request and response models
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


UserId = Field(min_length=1, max_length=256, description="the end user whose memories these are")


class Message(_Body):
    """One chat message: role, content, optional speaker name."""
    role: str = Field("user", min_length=1, max_length=64)
    content: str = Field(min_length=1, max_length=20_000)
    name: str | None = Field(None, max_length=64)


class AddRequest(_Body):
    """What POST /memories takes: the user, messages or one text, session, time and metadata."""
    user_id: str = UserId
    messages: list[Message] | None = Field(None, min_length=1, max_length=200)
    text: str | None = Field(None, min_length=1, max_length=20_000)
    session_id: str | None = Field(None, min_length=1, max_length=256, description="mem0: run_id")
    run_id: str | None = Field(None, min_length=1, max_length=256)
    timestamp: float | None = Field(None, ge=0, le=1e11)
    metadata: dict[str, Scalar] | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _one_content(self) -> "AddRequest":
        if (self.messages is None) == (self.text is None):
            raise ValueError("give exactly one of messages and text")
        if self.session_id is not None and self.run_id is not None and self.session_id != self.run_id:
            raise ValueError("session_id and run_id name the session twice, differently")
        return self


class SearchRequest(_Body):
    """What POST /search takes: the user, the query, k (or mem0's limit), method, granularity, filters, time range."""
    user_id: str = UserId
    query: str = Field(min_length=1, max_length=20_000)
    k: int | None = Field(None, ge=1, le=100_000)
    limit: int | None = Field(None, ge=1, le=100_000, description="mem0's name for k")
    method: Literal["dense", "bm25", "hybrid", "memgas", "rfmem"] = "hybrid"
    granularity: Literal["turn", "pair", "session", "summary", "keywords"] | None = "turn"
    filters: dict[str, Scalar | list[Scalar]] | None = Field(None, max_length=16)
    since: float | None = None
    until: float | None = None


class UpdateRequest(_Body):
    """What PUT /memories/{id} takes: the user and the new text."""
    user_id: str = UserId
    text: str = Field(min_length=1, max_length=20_000)


class UserRequest(_Body):
    """A request naming only the user."""
    user_id: str = UserId


class MemoryOut(BaseModel):
    """One memory as the service returns it (score only from search)."""
    id: str
    memory: str
    user_id: str
    unit: str
    session_id: str | None = None
    timestamp: float | None = None
    metadata: dict[str, Any] = {}
    score: float | None = None


class Added(BaseModel):
    """One memory an add created."""
    id: str
    memory: str
    event: Literal["ADD"] = "ADD"


class Results(BaseModel):
    """Search results, best first."""
    results: list[MemoryOut]


class AddResults(BaseModel):
    """The memories an add created."""
    results: list[Added]


class Page(BaseModel):
    """A page of a user's memories, the total and where the next page starts (null: last page)."""
    results: list[MemoryOut]
    total: int
    next_offset: int | None


class Count(BaseModel):
    """How many stored units a delete removed."""
    deleted: int


class Verified(BaseModel):
    """A node's replicas against the store: namespaces, rows, indexed ids, and what disagrees (0 when healthy)."""
    namespaces: int
    rows: int
    indexed: int
    duplicates: int
    missing: int
    extra: int


class Sessions(BaseModel):
    """How many sessions a consolidate digested."""
    sessions: int


class Event(BaseModel):
    """One history event of a memory."""
    id: str
    event: str
    old: str | None = None
    new: str | None = None
    at: float


class ErrorBody(BaseModel):
    """An error: its type, a one-line message and the field it names."""
    type: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """Every error answer of the service."""
    error: ErrorBody


ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 404, 413, 429, 503)}


class Bucket:
    """A token bucket per API key: ``rate`` tokens a second up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if a request may go now, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._state.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self._state[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._state[key] = (tokens - 1, now)
            return 0.0


def _out(h: Hit, user_id: str, score: bool) -> MemoryOut:
    return MemoryOut(id=h.id, memory=h.text, user_id=user_id, unit=h.unit, session_id=h.session_id,
                     timestamp=h.timestamp, metadata=h.metadata, score=h.score if score else None)


def create_app(config: ServiceConfig, memory: Memory | None = None):
    """The FastAPI app over ``config.store`` (or a given ``Memory``, for tests and embedding in an app)."""
    from fastapi import Depends, FastAPI, Header, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    if memory is None:
        memory = Memory(open_store(config.store, snapshot_dir=config.snapshot_dir), config=config.memory)
    bucket = Bucket(config.rate_per_second, config.burst)
    keys = dict(config.keys)
    app = FastAPI(title="llmrec memory", version="1", description=__doc__.split("\n\n")[0])

    def error(status: int, kind: str, message: str, field: str | None = None, headers=None) -> JSONResponse:
        return JSONResponse({"error": {"type": kind, "message": message, "field": field}}, status, headers=headers)

    @app.middleware("http")
    async def limits(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > config.max_body_bytes):
            return error(413, "too_large", f"body: more than {config.max_body_bytes} bytes", "body")
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = await request.body()
            if len(body) > config.max_body_bytes:
                return error(413, "too_large", f"body: more than {config.max_body_bytes} bytes", "body")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = list(first.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]  # where the value was sent, not its name
        where = ".".join(str(x) for x in loc)
        return error(422, "invalid", f"{where or 'request'}: {first.get('msg')}", where or None)

    @app.exception_handler(NotFoundError)
    async def missing(request: Request, exc: NotFoundError):
        text = str(exc).strip("'\"")
        return error(404, "not_found", text, text.split(":")[0] if ":" in text else None)

    @app.exception_handler(ValueError)
    async def bad(request: Request, exc: ValueError):
        text = str(exc)
        if isinstance(exc, StoreError) and text.startswith("postgres:"):
            return error(503, "unavailable", text)
        return error(400, "bad_request", text, text.split(":")[0] if ":" in text else None)

    def tenant(authorization: str | None = Header(None), x_api_key: str | None = Header(None)) -> str:
        given = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
        found = next((t for k, t in keys.items() if given is not None and hmac.compare_digest(k, given)), None)
        if found is None:
            raise _Unauthorized()
        wait = bucket.take(given)
        if wait:
            raise _Throttled(wait)
        return found

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized):
        return error(401, "unauthorized", "api key: missing or wrong (Authorization: Bearer KEY or X-API-Key)",
                     "authorization", {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(_Throttled)
    async def throttled(request: Request, exc: _Throttled):
        return error(429, "rate_limited", f"too many requests: retry in {exc.wait:.2f} s", None,
                     {"Retry-After": str(max(1, round(exc.wait)))})

    def scoped(t: str, user_id: str) -> str:
        return f"{t}:{user_id}"

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the service answers (no key needed)."""
        return {"status": "ok"}

    @app.get("/verify", response_model=Verified, responses=ERRORS)
    def verify(t: str = Depends(tenant)) -> Verified:
        """This node's FAISS replicas against the store's rows (totals over every namespace; 0 duplicates,
        missing and extra on a healthy node). Any tenant's key; no namespace or user is named."""
        report = memory.store.verify()
        total = {k: sum(r[k] for r in report.values()) for k in ("rows", "indexed", "duplicates", "missing", "extra")}
        return Verified(namespaces=len(report), **total)

    @app.post("/memories", response_model=AddResults, responses=ERRORS)
    def add(req: AddRequest, t: str = Depends(tenant)) -> AddResults:
        """Store messages (or one text) of ``user_id`` as memories."""
        content = req.text if req.text is not None else [m.model_dump(exclude_none=True) for m in req.messages]
        ids = memory.add(scoped(t, req.user_id), content, session_id=req.session_id or req.run_id,
                         timestamp=req.timestamp, metadata=req.metadata)
        got = {h.id: h.text for h in (memory.get(scoped(t, req.user_id), i) for i in ids)}
        return AddResults(results=[Added(id=i, memory=got[i]) for i in ids])

    @app.get("/memories", response_model=Page, responses=ERRORS)
    def get_all(user_id: str = Query(min_length=1, max_length=256), limit: int = Query(100, ge=1),
                offset: int = Query(0, ge=0), t: str = Depends(tenant)) -> Page:
        """A page of the user's memories (insertion order)."""
        if limit > config.max_page:
            raise ValueError(f"limit: at most {config.max_page}")
        try:
            hits = memory.get_all(scoped(t, user_id))
        except NotFoundError:
            hits = []
        page = hits[offset: offset + limit]
        nxt = offset + limit if offset + limit < len(hits) else None
        return Page(results=[_out(h, user_id, False) for h in page], total=len(hits), next_offset=nxt)

    @app.get("/memories/{memory_id}", response_model=MemoryOut, responses=ERRORS)
    def get(memory_id: str, user_id: str = Query(min_length=1, max_length=256), t: str = Depends(tenant)) -> MemoryOut:
        """One memory of the user."""
        return _out(memory.get(scoped(t, user_id), memory_id), user_id, False)

    @app.put("/memories/{memory_id}", response_model=MemoryOut, responses=ERRORS)
    def update(memory_id: str, req: UpdateRequest, t: str = Depends(tenant)) -> MemoryOut:
        """Change a memory's text (its pair and session units follow)."""
        memory.update(scoped(t, req.user_id), memory_id, req.text)
        return _out(memory.get(scoped(t, req.user_id), memory_id), req.user_id, False)

    @app.delete("/memories/{memory_id}", response_model=Count, responses=ERRORS)
    def delete(memory_id: str, user_id: str = Query(min_length=1, max_length=256), t: str = Depends(tenant)) -> Count:
        """Delete one memory."""
        return Count(deleted=memory.delete(scoped(t, user_id), memory_id))

    @app.delete("/memories", response_model=Count, responses=ERRORS)
    def delete_all(user_id: str = Query(min_length=1, max_length=256), t: str = Depends(tenant)) -> Count:
        """Delete every memory of the user."""
        try:
            return Count(deleted=memory.delete_all(scoped(t, user_id)))
        except NotFoundError:
            return Count(deleted=0)

    @app.get("/memories/{memory_id}/history", response_model=list[Event], responses=ERRORS)
    def history(memory_id: str, user_id: str = Query(min_length=1, max_length=256),
                t: str = Depends(tenant)) -> list[Event]:
        """The memory's add / update / delete events, oldest first."""
        return [Event(**e) for e in memory.history(scoped(t, user_id), memory_id)]

    @app.post("/search", response_model=Results, responses=ERRORS)
    def search(req: SearchRequest, t: str = Depends(tenant)) -> Results:
        """The best memories of the user for the query."""
        k = req.limit or req.k or 5
        if k > config.max_k:
            raise ValueError(f"k: at most {config.max_k}")
        user = scoped(t, req.user_id)
        if req.method in ("dense", "bm25", "hybrid"):
            hits = memory.search(user, req.query, k=k, method=req.method, granularity=req.granularity,
                                 filters=req.filters, since=req.since, until=req.until)
        else:
            if req.filters or req.since is not None or req.until is not None:
                raise ValueError(f"filters: {req.method} ranks all of a user's memories (no filters or time range)")
            hits = make_retriever(req.method, memory, {}).retrieve(user, req.query, k)
        return Results(results=[_out(h, req.user_id, True) for h in hits])

    @app.post("/consolidate", response_model=Sessions, responses=ERRORS)
    def consolidate(req: UserRequest, t: str = Depends(tenant)) -> Sessions:
        """Summary and keywords units of the user's changed sessions (the service needs a digester)."""
        return Sessions(sessions=memory.consolidate(scoped(t, req.user_id), progress=False))

    app.state.memory = memory
    return app


class _Unauthorized(Exception):
    pass


class _Throttled(Exception):
    def __init__(self, wait: float) -> None:
        self.wait = wait


def load_keys(path: str | Path) -> dict[str, str]:
    """API keys from a YAML or JSON file: a mapping ``key: tenant``."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ValueError(f"{path}: expected a mapping of API key to tenant name")
    return raw
