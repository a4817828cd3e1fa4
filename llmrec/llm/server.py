"""A minimal OpenAI-compatible ``/v1/chat/completions`` server around any llmrec ``LLM``.

``llmrec serve`` uses it to expose the bundled model; requests that arrive together are
batched into one ``generate`` call (up to ``max_batch``), so concurrent clients share the
batched decoder."""
from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError

from llmrec.llm.base import LLM, GenerationParams


class _Job:
    def __init__(self, messages, params: GenerationParams) -> None:
        self.messages, self.params = messages, params
        self.done = threading.Event()
        self.result = None
        self.error: Exception | None = None


class LLMServer:
    def __init__(self, llm: LLM, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 16) -> None:
        self.llm, self.max_batch = llm, max_batch
        self._jobs: "queue.Queue[_Job]" = queue.Queue()
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._worker = threading.Thread(target=self._work, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "LLMServer":
        self._worker.start()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def serve_forever(self) -> None:
        self._worker.start()
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _work(self) -> None:
        while True:
            first = self._jobs.get()
            jobs = [first]
            time.sleep(0.005)  # let concurrent requests join the batch
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            # one generate call per distinct parameter set
            groups: dict[str, list[_Job]] = {}
            for j in jobs:
                groups.setdefault(j.params.model_dump_json(), []).append(j)
            for group in groups.values():
                try:
                    gens = self.llm.generate([j.messages for j in group], group[0].params)
                    for j, g in zip(group, gens):
                        j.result = g
                except Exception as e:  # reported to each waiting client as HTTP 500
                    for j in group:
                        j.error = e
                for j in group:
                    j.done.set()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return

            def _send(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.llm.model_id, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                try:
                    req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    params = GenerationParams(
                        max_new_tokens=req.get("max_tokens") or 128,
                        temperature=req.get("temperature", 0.0),
                        top_p=req.get("top_p", 1.0),
                        stop=[req["stop"]] if isinstance(req.get("stop"), str) else list(req.get("stop") or []),
                        seed=req.get("seed"),
                        logprobs=bool(req.get("logprobs", False)),
                    )
                    messages = req["messages"]
                except (ValueError, KeyError, ValidationError) as e:
                    self._send(400, {"error": {"message": f"bad request: {e}"}})
                    return
                job = _Job(messages, params)
                server._jobs.put(job)
                job.done.wait()
                if job.error is not None:
                    code = 400 if isinstance(job.error, ValueError) else 500
                    self._send(code, {"error": {"message": str(job.error)}})
                    return
                g = job.result
                choice: dict = {
                    "index": 0,
                    "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason,
                }
                if g.token_logprobs is not None:
                    choice["logprobs"] = {
                        "content": [{"token": t, "logprob": lp} for t, lp in zip(g.tokens or [], g.token_logprobs)]
                    }
                self._send(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": server.llm.model_id,
                    "choices": [choice],
                    "usage": {
                        "prompt_tokens": g.prompt_tokens,
                        "completion_tokens": g.completion_tokens,
                        "total_tokens": g.prompt_tokens + g.completion_tokens,
                    },
                })

        return Handler
