"""Reliability of `llmrec serve` (issue 13): one request cannot take the server, or other requests, down."""
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from llmrec.llm.base import Generation, to_messages
from llmrec.llm.server import LLMServer


def post(url: str, body, headers=None, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/chat/completions", data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def real(llm):
    srv = LLMServer(llm, port=0, max_tokens_limit=64).start()
    yield srv
    srv.stop()


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_a_poisoned_batch_fails_only_the_bad_requests(real):
    good = [{"messages": msg(f"Say a word about the number {i}."), "max_tokens": 4} for i in range(9)]
    bad = [{"messages": [{"role": "robot", "content": "hi"}], "max_tokens": 4},
           {"messages": msg("hi"), "stop": 5}, {"messages": "not a list"}]
    with ThreadPoolExecutor(12) as pool:  # arrive together, so they would share a batch
        out = list(pool.map(lambda b: post(real.url, b), good + bad))
    assert [c for c, _ in out[:9]] == [200] * 9 and all(r["choices"][0]["message"]["content"] for _, r in out[:9])
    assert [c for c, _ in out[9:]] == [400] * 3
    assert "messages[0].role" in out[9][1]["error"]["message"] and "stop:" in out[10][1]["error"]["message"]
    assert "messages:" in out[11][1]["error"]["message"]


def test_malformed_bodies_get_json_errors(real):
    assert post(real.url, [1, 2])[0] == 400  # valid JSON, not an object
    code, r = post(real.url, None, raw=b"{not json")
    assert code == 400 and "not JSON" in r["error"]["message"]
    code, r = post(real.url, {"messages": msg("hi"), "max_tokens": 10_000})
    assert code == 400 and "max_tokens" in r["error"]["message"]
    code, r = post(real.url, {"messages": msg("word " * 5000), "max_tokens": 4})
    assert code == 400 and "messages" in r["error"]["message"] and "max_input_tokens" in r["error"]["message"]
    code, r = post(real.url, {"messages": msg("hi"), "temperature": -1})
    assert code == 400 and r["error"]["message"].startswith("temperature")


class Gated:
    """A fake LLM (the server's behaviour does not depend on the text): blocks until released, records what it
    generated, and fails any batch holding the prompt "explode"."""
    model_id = "gated"

    def __init__(self):
        self.release, self.seen = threading.Event(), []

    def generate(self, prompts, params):
        self.release.wait(30)
        texts = [to_messages(p)[-1]["content"] for p in prompts]
        if "explode" in texts:
            raise RuntimeError("backend failure")
        self.seen.extend(texts)
        return [Generation(text=f"ok {t}", prompt_tokens=1, completion_tokens=1, finish_reason="stop") for t in texts]


def test_backend_failure_isolated_lying_content_length_auth_and_abandoned_requests():
    llm = Gated()
    srv = LLMServer(llm, port=0, api_key="s3cret", read_timeout_s=1.0, request_timeout_s=60).start()
    auth = {"Authorization": "Bearer s3cret"}
    try:
        assert post(srv.url, {"messages": msg("hi")})[0] == 401
        assert post(srv.url, {"messages": msg("hi")}, {"Authorization": "Bearer nope"})[0] == 401
        # a Content-Length larger than the body: a JSON 408 after the read timeout, no hung handler
        host, port = srv.httpd.server_address[:2]
        with socket.create_connection((host, port)) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                      b"Content-Length: 500\r\n\r\n{\"messages\": []")
            s.settimeout(10)
            reply = s.recv(4096).decode()
        assert " 408 " in reply.splitlines()[0] and "Content-Length" in reply
        # an abandoned request is not generated: queue it behind a blocked batch, disconnect, release
        first = threading.Thread(target=post, args=(srv.url, {"messages": msg("first")}, auth))
        first.start()
        time.sleep(0.3)
        body = json.dumps({"messages": msg("abandoned")}).encode()
        with socket.create_connection((host, port)) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.3)
        time.sleep(0.5)  # the handler notices the closed socket
        llm.release.set()
        first.join()
        # a batch that fails in the backend: only the request at fault fails
        with ThreadPoolExecutor(4) as pool:
            out = list(pool.map(lambda t: post(srv.url, {"messages": msg(t)}, auth), ["a", "explode", "b", "c"]))
        assert [c for c, _ in out] == [200, 500, 200, 200]
        assert "abandoned" not in llm.seen and "first" in llm.seen
    finally:
        llm.release.set()
        srv.stop()


LONG = {"messages": msg("Count from 1 to 300, separated by commas, and do not stop early."), "max_tokens": 60}
SHORT = {"messages": msg("Say hi."), "max_tokens": 3}


@pytest.mark.slow
def test_a_short_request_is_not_held_behind_a_long_one(real):
    done = {}

    def run(name, body):
        code, r = post(real.url, body)
        done[name] = (time.monotonic(), code, r["usage"]["completion_tokens"] if code == 200 else None)

    long_ = threading.Thread(target=run, args=("long", LONG))
    long_.start()
    while real.stats["running"] == 0:  # the long request is decoding
        time.sleep(0.01)
    run("short", SHORT)
    long_.join()
    assert done["short"][1] == done["long"][1] == 200 and done["long"][2] == 60  # it ran to its limit
    assert done["short"][0] < done["long"][0]  # joined the running batch and left first, not queued behind


@pytest.mark.slow
def test_client_disconnect_cancels_running_work(real):
    host, port = real.httpd.server_address[:2]
    before = dict(real.stats)
    body = json.dumps({**LONG, "max_tokens": 64}).encode()
    with socket.create_connection((host, port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
                  + body)
        while real.stats["running"] == 0:
            time.sleep(0.01)
    deadline = time.monotonic() + 30
    while real.stats["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert real.stats["cancelled"] == before["cancelled"] + 1 and real.stats["completed"] == before["completed"]
    assert post(real.url, SHORT)[0] == 200 and real.stats["running"] == 0
