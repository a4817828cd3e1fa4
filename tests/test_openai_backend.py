import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmrec.llm import GenerationParams, LLMConfig, make_llm
from llmrec.llm.openai import BackendUnavailable, OpenAIChatLLM, OpenAIConfig
from llmrec.llm.server import LLMServer


@pytest.fixture(scope="module")
def server(llm):
    srv = LLMServer(llm, port=0).start()
    yield srv
    srv.stop()


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_openai_backend_against_real_local_server(llm, server):
    client = make_llm(LLMConfig(backend="openai", base_url=server.url, model="SmolLM2-135M-Instruct"))
    prompts = ["What is the capital of France?", "Name a fruit that is yellow."]
    p = GenerationParams(max_new_tokens=16)
    remote = client.generate(prompts, p)
    local = llm.generate(prompts, p)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [g.completion_tokens for g in remote] == [g.completion_tokens for g in local]
    assert remote[0].raw["model"].startswith("SmolLM2-135M-Instruct@")


def test_openai_backend_logprobs_roundtrip(llm, server):
    client = OpenAIChatLLM(OpenAIConfig(base_url=server.url, model="m"))
    g = client.generate(["Say hello."], GenerationParams(max_new_tokens=4, logprobs=True))[0]
    direct = llm.generate(["Say hello."], GenerationParams(max_new_tokens=4, logprobs=True))[0]
    assert g.token_logprobs == pytest.approx(direct.token_logprobs, abs=1e-5)


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_top_logprobs_roundtrip_and_option_scoring_through_the_endpoint(llm, server):
    import numpy as np

    from llmrec.llm.base import option_instruction, score_by_top_logprobs

    client = OpenAIChatLLM(OpenAIConfig(base_url=server.url, model="m"))
    p = GenerationParams(max_new_tokens=3, logprobs=True, top_logprobs=5)
    g = client.generate(["Count: one, two,"], p)[0]
    direct = llm.generate(["Count: one, two,"], p)[0]
    assert len(g.top_logprobs) == len(direct.top_logprobs) >= 1 and all(len(s) == 5 for s in g.top_logprobs)
    for remote_step, local_step in zip(g.top_logprobs, direct.top_logprobs):
        assert [t for t, _ in remote_step] == [t for t, _ in local_step]
        assert [v for _, v in remote_step] == pytest.approx([v for _, v in local_step], abs=1e-5)
        assert [v for _, v in remote_step] == sorted((v for _, v in remote_step), reverse=True)
    # the chosen (greedy) token is the likeliest one at every step
    assert g.token_logprobs[0] == pytest.approx(g.top_logprobs[0][0][1], abs=1e-5)
    # option scores through the endpoint equal the local model's first-token log-probabilities of the same
    # instruction-ended prompts (options that are single tokens of the reply)
    prompts = ["Is the sky blue on a clear day? Answer yes or no.", "Is fire cold? Answer yes or no."]
    opts = ["yes", "no", "Yes", "No"]
    remote = client.score_options(prompts, opts)
    local = llm.score_options([option_instruction(q, opts) for q in prompts], opts)
    assert remote.shape == (2, 4) and np.isfinite(remote).all()
    shown = {t.strip() for t, _ in client.generate([option_instruction(prompts[0], opts)], GenerationParams(
        max_new_tokens=1, logprobs=True, top_logprobs=20))[0].top_logprobs[0]}
    for j, o in enumerate(opts):
        if o in shown:
            assert remote[0, j] == pytest.approx(local[0, j], abs=1e-4)
    assert score_by_top_logprobs(llm, prompts, opts) == pytest.approx(remote, abs=1e-4)  # same path locally
    with pytest.raises(ValueError, match="options"):
        client.score_options(prompts, [])


def test_top_logprobs_need_logprobs(server):
    import httpx

    r = httpx.post(f"{server.url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                            "top_logprobs": 3})
    assert r.status_code == 400 and "top_logprobs" in r.text


class _Flaky(BaseHTTPRequestHandler):
    failures = 2
    calls = 0

    def log_message(self, *a):
        return

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def test_retries_then_succeeds():
    _Flaky.calls, _Flaky.failures = 0, 2
    httpd, url = _serve(_Flaky)
    try:
        c = OpenAIChatLLM(OpenAIConfig(base_url=url, model="m", max_retries=3, backoff_s=0.01))
        assert c.generate(["hi"])[0].text == "ok"
        assert _Flaky.calls == 3
    finally:
        httpd.shutdown()


def test_bounded_retries_give_up():
    _Flaky.calls, _Flaky.failures = 0, 100
    httpd, url = _serve(_Flaky)
    try:
        c = OpenAIChatLLM(OpenAIConfig(base_url=url, model="m", max_retries=2, backoff_s=0.01))
        with pytest.raises(BackendUnavailable, match="3 attempts"):
            c.generate(["hi"])
        assert _Flaky.calls == 3
    finally:
        httpd.shutdown()


def test_unreachable_endpoint_is_a_clear_error():
    c = OpenAIChatLLM(OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", max_retries=1, backoff_s=0.01,
                                   timeout_s=2))
    with pytest.raises(BackendUnavailable, match="127.0.0.1:9"):
        c.generate(["hi"])


def test_openai_config_requires_url_and_model():
    with pytest.raises(ValueError, match="llm.base_url and llm.model"):
        make_llm(LLMConfig(backend="openai"))
    with pytest.raises(ValueError, match="extra"):
        LLMConfig(backend="openai", bogus=1)


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_knowledge_extraction_through_an_openai_endpoint(server, tmp_path):
    """A stronger model plugs into extraction with one flag set (here the endpoint serves the bundled model)."""
    from llmrec.data.registry import DataConfig
    from llmrec.data.synthetic import SyntheticConfig
    from llmrec.knowledge import KnowledgeJobConfig, knowledge_tables, run_extraction
    from llmrec.jobs import read_shard

    cfg = KnowledgeJobConfig(data=DataConfig(synthetic=SyntheticConfig(n_users=4, n_items=5, impressions_per_user=6)),
                             kinds=["item"], llm=LLMConfig(backend="openai", base_url=server.url, model="smol"),
                             max_new_tokens=8, out_dir=str(tmp_path), progress=False)
    rep = run_extraction(cfg)
    assert rep["model_id"] == "openai:smol" and rep["extraction"][0]["generated"] == 5
    assert {r["model_id"] for r in read_shard(tmp_path / "item.jsonl").values()} == {"openai:smol"}
    assert len(knowledge_tables(tmp_path, ["item"])["item"]) == 5


@pytest.mark.slow
def test_streaming_through_server_and_client(llm, server):
    """`stream: true` sends server-sent events token by token; the pieces join to the non-streamed text."""
    client = OpenAIChatLLM(OpenAIConfig(base_url=server.url, model="m"))
    p = GenerationParams(max_new_tokens=24)
    prompt = "Describe a rainy day in two sentences."
    pieces = list(client.stream(prompt, p))
    assert len(pieces) > 3  # incremental, not one block
    assert "".join(pieces) == llm.generate([prompt], p)[0].text
    full = llm.generate([prompt], p)[0].text
    stop = full.split()[3]  # a stop string from inside the text: the stream ends before it, as generate does
    ps = GenerationParams(max_new_tokens=24, stop=[stop])
    assert "".join(client.stream(prompt, ps)) == llm.generate([prompt], ps)[0].text
    assert stop not in "".join(client.stream(prompt, ps))


def test_retry_after_is_honoured(monkeypatch):
    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(1)
            if len(calls) == 1:
                self.send_response(429)
                self.send_header("Retry-After", "7")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    slept = []
    monkeypatch.setattr("llmrec.llm.openai.time.sleep", slept.append)
    try:
        c = OpenAIChatLLM(OpenAIConfig(base_url=f"http://127.0.0.1:{httpd.server_address[1]}", model="m", backoff_s=0.5))
        assert c.generate(["hi"])[0].text == "ok"
        assert slept == [7.0]  # the server's Retry-After, not the 0.5 s backoff
    finally:
        httpd.shutdown()


def test_embeddings_endpoint_matches_the_embedder(llm, embedder):
    import httpx
    import numpy as np

    srv = LLMServer(llm, port=0, embedder=embedder).start()
    try:
        texts = ["I moved to Lisbon.", "My cat is called Miso."]
        r = httpx.post(f"{srv.url}/embeddings", json={"input": texts, "model": "all-MiniLM-L6-v2"}, timeout=60)
        got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-6)
        bad = httpx.post(f"{srv.url}/embeddings", json={"input": "x", "dimensions": 1536}, timeout=60)
        assert bad.status_code == 400 and "dimensions" in bad.json()["error"]["message"]
        assert httpx.post(f"{srv.url}/embeddings", json={"input": [1]}, timeout=60).status_code == 400
    finally:
        srv.stop()


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_async_generate_equals_generate(llm, server):
    import asyncio

    client = OpenAIChatLLM(OpenAIConfig(base_url=server.url, model="m", concurrency=2))
    prompts = ["Name a color.", "Name a fruit.", "Name a city."]
    p = GenerationParams(max_new_tokens=8)
    assert [g.text for g in asyncio.run(client.agenerate(prompts, p))] == [g.text for g in client.generate(prompts, p)]
