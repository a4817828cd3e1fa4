"""An OpenAI-compatible server (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``) around any llmrec ``LLM``.

``n`` choices are honoured (sampled choices differ by seed; greedy ones are the same text). ``/v1/completions``
sends each prompt as the user turn of the instruct model's chat template (the LLM protocol has no raw-text
continuation); ``suffix``, ``echo`` and ``best_of`` are refused. ``response_format`` other than text is a 400
(there is no constrained JSON decoding). Embeddings come as floats or, as the openai SDK asks by default,
base64 little-endian float32.

``llmrec serve`` uses it to expose the bundled model; requests that arrive together are batched into one
``generate`` call (up to ``max_batch``), so concurrent clients share the batched decoder.

Robustness: every request is validated in full before it is queued (a JSON object, messages with known roles
and string contents, ``max_tokens`` within ``max_tokens_limit``, ``stop`` a string or a list of strings, the
prompt within the model's input limit), so a malformed request is answered with a JSON 400 naming the field
and never reaches a batch; if a batched call fails anyway, each request of the batch is retried alone so only
the one at fault fails. Bodies are capped (``max_body_bytes``) and read with a socket timeout (a lying
``Content-Length`` gets a 400 / 408, not a hung thread). A request queued longer than ``request_timeout_s``
gets a 504, and a request whose client has gone is dropped before it is generated. ``api_key`` requires
``Authorization: Bearer <key>``.

Scheduling: with a backend that offers a decode session (the transformers backend), requests are
continuously batched at the token level: a request joins the running batch at the next decode step and leaves
it when it ends, so a short request is not held behind a long one, and a request whose client disconnects or
times out is dropped from the batch mid-generation. Other backends (OpenAI-compatible, vLLM) get batches of
the requests that arrived together. ``"stream": true`` answers with server-sent events as tokens come.

With an ``embedder`` (``llmrec serve`` passes the bundled MiniLM), ``/v1/embeddings`` serves it too, so an
OpenAI-compatible client (mem0, LangChain, the openai SDK) can use llmrec for both its LLM and embeddings."""
from __future__ import annotations

import base64
import hmac
import json
import queue
import select
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from pydantic import ValidationError

from llmrec.llm.base import LLM, GenerationParams, to_messages


class BadRequest(ValueError):
    """A request rejected before queueing: the HTTP status and a message naming the field."""
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Job:
    def __init__(self, messages, params: GenerationParams, stream: bool = False) -> None:
        self.messages, self.params, self.stream = messages, params, stream
        self.state = None  # the row state while it decodes (continuous scheduler): streamed from
        self.done = threading.Event()
        self.cancelled = False
        self.result = None
        self.error: Exception | None = None


class LLMServer:
    """An OpenAI-compatible HTTP server (chat completions, streaming, embeddings) around any llmrec ``LLM``."""
    def __init__(self, llm: LLM, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 16,
                 api_key: str | None = None, max_tokens_limit: int = 1024, max_body_bytes: int = 1 << 20,
                 request_timeout_s: float = 600.0, read_timeout_s: float = 10.0,
                 scheduler: str = "continuous", embedder: Any = None, max_embed_inputs: int = 256) -> None:
        self.llm, self.max_batch, self.api_key = llm, max_batch, api_key
        self.embedder, self.max_embed_inputs = embedder, max_embed_inputs
        self._embed_lock = threading.Lock()
        self.max_tokens_limit, self.max_body_bytes = max_tokens_limit, max_body_bytes
        self.request_timeout_s, self.read_timeout_s = request_timeout_s, read_timeout_s
        self._jobs: "queue.Queue[_Job]" = queue.Queue()
        self.stats = {"completed": 0, "failed": 0, "cancelled": 0, "running": 0}  # counters of the worker
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        if scheduler not in ("continuous", "batch"):
            raise ValueError(f"scheduler: {scheduler!r} is not 'continuous' or 'batch'")
        streaming = scheduler == "continuous" and all(
            hasattr(llm, a) for a in ("decode_session", "row_state", "to_generation"))
        self.scheduler = "continuous" if streaming else "batch"
        self._worker = threading.Thread(target=self._work_streaming if streaming else self._work, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL (``http://host:port/v1``)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "LLMServer":
        """Start the worker and the HTTP server in background threads; returns self."""
        self._worker.start()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        """Start the worker and serve HTTP in this thread until interrupted."""
        self._worker.start()
        self.httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---------------------------------------------------------------- validation (before anything is queued)
    MAX_N = 8  # choices per request

    def parse(self, req: Any, kind: str = "chat") -> list[_Job]:
        """A request body -> its jobs (one per choice, ``n``; a list ``prompt`` on /v1/completions gives one
        per prompt and choice), or ``BadRequest`` naming the field. ``kind``: chat or completion."""
        if not isinstance(req, dict):
            raise BadRequest(400, f"body: expected a JSON object, got {type(req).__name__}")
        if kind == "chat":
            if "messages" not in req:
                raise BadRequest(400, "messages: missing")
            if not isinstance(req["messages"], list):
                raise BadRequest(400, "messages: expected a list of {role, content} objects")
            try:
                prompts = [to_messages(req["messages"])]
            except ValueError as e:
                raise BadRequest(400, str(e).replace("prompts[0]", "messages", 1)) from None
        else:  # /v1/completions: each prompt text is the user turn of the instruct model's chat template
            raw = req.get("prompt")
            texts = [raw] if isinstance(raw, str) else raw
            if not (isinstance(texts, list) and texts and all(isinstance(t, str) and t.strip() for t in texts)):
                raise BadRequest(400, "prompt: expected a non-empty string or a non-empty list of them")
            if len(texts) > self.max_batch:
                raise BadRequest(400, f"prompt: {len(texts)} prompts exceed {self.max_batch}")
            prompts = [to_messages(t) for t in texts]
            for field in ("suffix", "echo", "best_of"):
                if req.get(field) not in (None, False, 1):
                    raise BadRequest(400, f"{field}: not supported")
        fmt = req.get("response_format")
        if fmt is not None and fmt != {"type": "text"}:
            raise BadRequest(400, "response_format: only {'type': 'text'} is supported (this server has no "
                                  "constrained JSON decoding; ask for JSON in the prompt and parse it)")
        n = req.get("n", 1)
        if n is None:
            n = 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= self.MAX_N:
            raise BadRequest(400, f"n: expected an integer in [1, {self.MAX_N}]")
        stop = req.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise BadRequest(400, "stop: expected a string or a list of strings")
        max_tokens = req.get("max_tokens", req.get("max_completion_tokens")) or min(128, self.max_tokens_limit)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= self.max_tokens_limit:
            raise BadRequest(400, f"max_tokens: expected an integer in [1, {self.max_tokens_limit}]")
        logprobs = req.get("logprobs", False)
        top = req.get("top_logprobs") or 0
        if kind == "completion" and isinstance(logprobs, int) and not isinstance(logprobs, bool):
            logprobs, top = logprobs >= 0, logprobs  # completions: logprobs is the top-k count
        try:
            params = GenerationParams(max_new_tokens=max_tokens, temperature=req.get("temperature", 0.0) or 0.0,
                                      top_p=req.get("top_p", 1.0) or 1.0, stop=stop, seed=req.get("seed"),
                                      logprobs=bool(logprobs), top_logprobs=top)
        except ValidationError as e:
            err = e.errors()[0]
            field = {"max_new_tokens": "max_tokens"}.get(str(err["loc"][0]), str(err["loc"][0]))
            raise BadRequest(400, f"{field}: {err['msg']}") from None
        encode = getattr(self.llm, "encode_prompts", None)  # prompt length against the model's input limit
        if encode is not None:
            try:
                encode(prompts)
            except ValueError as e:
                name = "messages" if kind == "chat" else "prompt"
                raise BadRequest(400, str(e).replace("prompts[0]", name, 1).replace("prompts[", f"{name}[")) from None
        stream = req.get("stream", False)
        if not isinstance(stream, bool):
            raise BadRequest(400, "stream: expected true or false")
        if stream and (kind != "chat" or n > 1):
            raise BadRequest(400, "stream: streams one chat choice (ask /v1/chat/completions with n = 1)")
        if params.top_logprobs and not params.logprobs:
            raise BadRequest(400, "top_logprobs: needs logprobs: true")
        if stream and params.logprobs:
            raise BadRequest(400, "logprobs: not supported with stream (ask without stream)")
        jobs = []
        for prompt in prompts:
            for i in range(n):  # sampled choices differ by seed; greedy ones are the same text, as asked
                seed = params.seed + i if params.seed is not None else None
                jobs.append(_Job(prompt, params.model_copy(update={"seed": seed}) if i else params, stream))
        return jobs

    def embed(self, req: Any) -> dict:
        """An ``/v1/embeddings`` request -> the OpenAI response (``BadRequest`` naming the field)."""
        if self.embedder is None:
            raise BadRequest(404, "no embedder: start the server with one (llmrec serve does by default)")
        if not isinstance(req, dict) or "input" not in req:
            raise BadRequest(400, "input: missing (a string or a list of strings)")
        texts = [req["input"]] if isinstance(req["input"], str) else req["input"]
        if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
            raise BadRequest(400, "input: expected a string or a non-empty list of strings")
        if len(texts) > self.max_embed_inputs:
            raise BadRequest(400, f"input: {len(texts)} texts exceed {self.max_embed_inputs}")
        dims = req.get("dimensions")
        if dims is not None and dims != self.embedder.dim:
            raise BadRequest(400, f"dimensions: this model has {self.embedder.dim}, got {dims!r}")
        fmt = req.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise BadRequest(400, f"encoding_format: {fmt!r} is not 'float' or 'base64'")
        with self._embed_lock:
            vecs = self.embedder.encode(texts)

        def encoded(v) -> Any:  # base64: the little-endian float32 bytes (what the openai SDK asks for)
            return ([float(x) for x in v] if fmt == "float"
                    else base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode())

        return {"object": "list", "model": self.embedder.model_id,
                "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vecs)],
                "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                          "total_tokens": sum(len(t.split()) for t in texts)}}

    # ---------------------------------------------------------------- the batching worker
    def _take(self, room: int, wait: bool) -> list[_Job]:
        """Up to ``room`` queued jobs; with ``wait``, block for the first one and let concurrent requests join."""
        jobs: list[_Job] = []
        if wait:
            jobs.append(self._jobs.get())
            time.sleep(0.005)
        while len(jobs) < room:
            try:
                jobs.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        return jobs

    def _work(self) -> None:
        while True:
            jobs = self._take(self.max_batch, wait=True)
            for j in [j for j in jobs if j.cancelled]:  # the client is gone or timed out: do not generate
                j.done.set()
            groups: dict[str, list[_Job]] = {}  # one generate call per distinct parameter set
            for j in jobs:
                if not j.cancelled:
                    groups.setdefault(j.params.model_dump_json(), []).append(j)
            for group in groups.values():
                self._generate(group)

    def _work_streaming(self) -> None:
        """Token-level continuous batching across requests (see the module docstring)."""
        session, active = self.llm.decode_session(), {}  # id(row state) -> (job, row state)
        while True:
            new = self._take(self.max_batch - len(active), wait=not active)  # idle: wait for work
            admitted = []
            for job in new:
                if job.cancelled:
                    self.stats["cancelled"] += 1
                    job.done.set()
                    continue
                try:
                    admitted.append((job, self.llm.row_state(job.messages, job.params)))
                    job.state = admitted[-1][1]
                except Exception as e:  # noqa: BLE001  (reported to that request alone)
                    job.error = e
                    job.done.set()
            try:
                session.admit([st for _, st in admitted])
                active.update({id(st): (job, st) for job, st in admitted})
                for job, st in list(active.values()):
                    if job.cancelled:  # client gone or timed out: leaves the batch at the next step
                        st.cancelled = True
                        del active[id(st)]
                        self.stats["cancelled"] += 1
                        job.done.set()
                ended = [st for _, st in admitted if st.finished] + session.step()
            except Exception as e:  # noqa: BLE001  (a model failure: fail the running requests, start afresh)
                for job, _ in [*active.values(), *admitted]:
                    job.error = e
                    self.stats["failed"] += 1
                    job.done.set()
                session, active = self.llm.decode_session(), {}
                continue
            for st in ended:
                job, _ = active.pop(id(st), (None, None))
                if job is not None:
                    job.result = self.llm.to_generation(st, job.params)
                    self.stats["completed"] += 1
                    job.done.set()
            self.stats["running"] = len(active)

    def _generate(self, group: list[_Job]) -> None:
        try:
            gens = self.llm.generate([j.messages for j in group], group[0].params)
            for j, g in zip(group, gens):
                j.result = g
        except Exception as e:  # noqa: BLE001
            if len(group) > 1:  # isolate the request at fault: the others must not fail with it
                for j in group:
                    self._generate([j])
                return
            group[0].error = e
        for j in group:
            j.done.set()

    def partial_text(self, job: _Job) -> str:
        """The text decoded so far for a streaming job (stable prefix: a trailing partial UTF-8 character and
        anything that could still become a stop string are held back)."""
        st = job.state
        if st is None or not hasattr(self.llm, "tokenizer"):
            return ""
        text = self.llm.tokenizer.decode(list(st.result.tokens), skip_special_tokens=True).rstrip("\ufffd")
        for stop in job.params.stop:
            at = text.find(stop)
            if at >= 0:
                return text[:at]
            for k in range(min(len(stop) - 1, len(text)), 0, -1):  # a stop string may be starting
                if text.endswith(stop[:k]):
                    return text[:-k]
        return text

    # ---------------------------------------------------------------- HTTP
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return

            def _send(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client went away
                    pass

            def _error(self, code: int, message: str) -> None:
                kind = {401: "authentication_error", 404: "not_found", 408: "timeout", 413: "too_large",
                        500: "server_error", 504: "timeout"}.get(code, "invalid_request_error")
                self._send(code, {"error": {"message": message, "type": kind}})

            def _authorized(self) -> bool:
                if server.api_key is None:
                    return True
                got = self.headers.get("Authorization", "")
                ok = hmac.compare_digest(got.encode(), f"Bearer {server.api_key}".encode())
                if not ok:
                    self._error(401, "Authorization: expected 'Bearer <api key>'")
                return ok

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.llm.model_id, "object": "model"}]})
                else:
                    self._error(404, f"no route {self.path}")

            def _body(self) -> Any:
                raw_len = self.headers.get("Content-Length")
                try:
                    n = int(raw_len)
                except (TypeError, ValueError):
                    raise BadRequest(400 if raw_len is not None else 411,
                                     f"Content-Length: expected an integer, got {raw_len!r}") from None
                if n < 0:
                    raise BadRequest(400, f"Content-Length: negative ({n})")
                if n > server.max_body_bytes:
                    raise BadRequest(413, f"Content-Length: {n} bytes exceed {server.max_body_bytes}")
                self.connection.settimeout(server.read_timeout_s)
                try:
                    data = self.rfile.read(n)
                except (socket.timeout, TimeoutError):
                    raise BadRequest(408, f"body: fewer bytes than Content-Length {n} within "
                                          f"{server.read_timeout_s:.0f} s") from None
                if len(data) < n:
                    raise BadRequest(400, f"body: {len(data)} bytes, Content-Length said {n}")
                try:
                    return json.loads(data.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise BadRequest(400, f"body: not JSON ({e})") from None

            def _client_gone(self) -> bool:
                try:
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except (OSError, ValueError):
                    return True

            def do_POST(self) -> None:
                try:
                    if not self._authorized():
                        return
                    route = self.path.split("?")[0].rstrip("/")
                    if route == "/v1/embeddings":
                        self._send(200, server.embed(self._body()))
                        return
                    kinds = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
                    if route not in kinds:
                        self._error(404, f"no route {self.path}")
                        return
                    jobs = server.parse(self._body(), kinds[route])
                except BadRequest as e:
                    self._error(e.code, str(e))
                    return
                for job in jobs:
                    server._jobs.put(job)
                if jobs[0].stream:
                    self._stream(jobs[0])
                    return
                deadline = time.monotonic() + server.request_timeout_s
                while not all(j.done.wait(0.1) for j in jobs):
                    if self._client_gone() or time.monotonic() > deadline:
                        for j in jobs:
                            j.cancelled = True  # dropped before generation if still queued
                        if not self._client_gone():
                            self._error(504, f"no result within {server.request_timeout_s:.0f} s")
                        return
                failed = next((j.error for j in jobs if j.error is not None), None)
                if failed is not None:
                    self._error(400 if isinstance(failed, ValueError) else 500, str(failed))
                    return
                if any(j.result is None for j in jobs):  # cancelled
                    return
                results = [j.result for j in jobs]
                self._send(200, self._completion(results) if kinds[route] == "chat" else self._text(results))

            def _stream(self, job: _Job) -> None:
                """Server-sent events as the tokens come (continuous scheduler; the batch scheduler sends the
                whole text as one chunk when it is done): chat.completion.chunk objects, then ``[DONE]``."""
                cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

                def chunk(delta: dict, finish: str | None = None) -> bytes:
                    return ("data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                                   "model": server.llm.model_id, "choices": [
                                                       {"index": 0, "delta": delta, "finish_reason": finish}]})
                            + "\n\n").encode()

                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                sent = ""
                deadline = time.monotonic() + server.request_timeout_s
                try:
                    self.wfile.write(chunk({"role": "assistant", "content": ""}))
                    self.wfile.flush()
                    while not job.done.wait(0.05):
                        if self._client_gone() or time.monotonic() > deadline:
                            job.cancelled = True
                            return
                        text = server.partial_text(job)
                        if text.startswith(sent) and len(text) > len(sent):
                            self.wfile.write(chunk({"content": text[len(sent):]}))
                            self.wfile.flush()
                            sent = text
                    if job.error is not None:
                        self.wfile.write(("data: " + json.dumps({"error": {"message": str(job.error),
                                                                           "type": "server_error"}}) + "\n\n").encode())
                    elif job.result is not None:
                        text = job.result.text
                        rest = text[len(sent):] if text.startswith(sent) else ""
                        if rest:
                            self.wfile.write(chunk({"content": rest}))
                        self.wfile.write(chunk({}, job.result.finish_reason))
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:  # the client went away
                    job.cancelled = True

            def _completion(self, gens: list) -> dict:
                choices = []
                for i, g in enumerate(gens):
                    choice: dict = {"index": i, "message": {"role": "assistant", "content": g.text},
                                    "finish_reason": g.finish_reason}
                    if g.token_logprobs is not None:
                        content = [{"token": t, "logprob": lp} for t, lp in zip(g.tokens or [], g.token_logprobs)]
                        for entry, top in zip(content, g.top_logprobs or []):
                            entry["top_logprobs"] = [{"token": t, "logprob": lp} for t, lp in top]
                        choice["logprobs"] = {"content": content}
                    choices.append(choice)
                return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                        "created": int(time.time()), "model": server.llm.model_id, "choices": choices,
                        "usage": _usage(gens)}

            def _text(self, gens: list) -> dict:
                """A /v1/completions answer: a choice per prompt and ``n`` (in that order)."""
                choices = []
                for i, g in enumerate(gens):
                    lp = None
                    if g.token_logprobs is not None:
                        lp = {"tokens": list(g.tokens or []), "token_logprobs": list(g.token_logprobs),
                              "top_logprobs": [dict(top) for top in (g.top_logprobs or [])] or None,
                              "text_offset": None}
                    choices.append({"index": i, "text": g.text, "logprobs": lp, "finish_reason": g.finish_reason})
                return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion",
                        "created": int(time.time()), "model": server.llm.model_id, "choices": choices,
                        "usage": _usage(gens)}

        return Handler


def _usage(gens: list) -> dict:
    """Token counts over every choice of a request."""
    prompt = sum(g.prompt_tokens for g in gens)
    completion = sum(g.completion_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
