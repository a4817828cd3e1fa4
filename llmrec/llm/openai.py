"""OpenAI-compatible chat endpoint backend (``vllm serve``, ``llmrec serve``, hosted APIs).

Requests run concurrently (a small thread pool), each with a timeout and bounded retries with
exponential backoff on connection errors, 429 and 5xx (a ``Retry-After`` header, in seconds, is honoured up
to ``max_retry_after_s``). Any other HTTP error is raised at once. ``stream`` yields text as it arrives
(server-sent events, ``"stream": true``).

Why not the ``openai`` SDK: this client is ~150 lines over httpx (already a dependency), works with any
OpenAI-compatible server without the SDK's model / parameter validation, and keeps the one ``LLM`` protocol;
the SDK can still be plugged in through ``llmrec.llm.langchain.LangChainLLM``."""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import httpx
import numpy as np

from llmrec.config import StrictConfig
from llmrec.llm.base import Generation, GenerationParams, Prompt, score_by_top_logprobs, to_messages
from llmrec.errors import BackendError, ConfigError
from llmrec.llm.options import backend_config


class OpenAIConfig(StrictConfig):
    """An OpenAI-compatible endpoint: base URL, model, API key variable, timeouts, retries, concurrency."""
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 8
    max_retry_after_s: float = 60.0


class BackendUnavailable(BackendError):
    """The endpoint could not be reached or kept failing after the allowed retries."""


class OpenAIChatLLM:
    """The ``LLM`` protocol over an OpenAI-compatible chat endpoint (sync, async and streaming)."""
    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        key = os.environ.get(config.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=config.base_url.rstrip("/"), timeout=config.timeout_s, headers=headers
        )

    @property
    def model_id(self) -> str:
        return f"openai:{self.config.model}"

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        bodies = [self._body(to_messages(p, i), params) for i, p in enumerate(prompts)]
        if len(bodies) <= 1:
            return [self._post(b) for b in bodies]
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(bodies))) as pool:
            return list(pool.map(self._post, bodies))

    def _body(self, messages: list[dict[str, str]], params: GenerationParams) -> dict:
        body: dict = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        return body

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.config.backoff_s * 2 ** (attempt - 1)
        if retry_after is not None:
            try:
                delay = min(max(float(retry_after), 0.0), self.config.max_retry_after_s)
            except ValueError:  # an HTTP date: fall back to the backoff
                pass
        return delay

    def _outcome(self, r: httpx.Response) -> Generation | tuple[Exception, str | None]:
        """A parsed generation, or (the error, Retry-After) when the request should be retried."""
        if r.status_code == 429 or r.status_code >= 500:
            return RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}"), r.headers.get("Retry-After")
        if r.status_code >= 400:
            raise BackendError(f"{self.config.base_url}: HTTP {r.status_code}: {r.text[:500]}")
        return self._parse(r.json())

    def _unavailable(self, last: Exception | None) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.config.base_url}: no answer after {self.config.max_retries + 1} attempts ({last})")

    def _post(self, body: dict) -> Generation:
        last: Exception | None = None
        retry_after: str | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            try:
                got = self._outcome(self._client.post("/chat/completions", json=body))
            except httpx.TransportError as e:
                last, retry_after = e, None
                continue
            if isinstance(got, Generation):
                return got
            last, retry_after = got
        raise self._unavailable(last)

    async def agenerate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        """``generate`` for asyncio code: never blocks the event loop (each request runs the client in a worker
        thread, with the same retries), at most ``concurrency`` requests at a time."""
        import asyncio

        params = params or GenerationParams()
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(body: dict) -> Generation:
            async with gate:
                return await asyncio.to_thread(self._post, body)

        return list(await asyncio.gather(*(one(self._body(to_messages(p, i), params)) for i, p in enumerate(prompts))))

    def stream(self, prompt: Prompt, params: GenerationParams | None = None) -> Iterator[str]:
        """Yield the completion's text in pieces as the server sends them (``"stream": true``)."""
        body = {**self._body(to_messages(prompt), params or GenerationParams()), "stream": True}
        with self._client.stream("POST", "/chat/completions", json=body) as r:
            if r.status_code >= 400:
                r.read()
                raise BackendError(f"{self.config.base_url}: HTTP {r.status_code}: {r.text[:500]}")
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:
                    raise BackendError(f"{self.config.base_url}: {event['error'].get('message')}")
                piece = ((event.get("choices") or [{}])[0].get("delta") or {}).get("content")
                if piece:
                    yield piece

    @staticmethod
    def _parse(data: dict) -> Generation:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise BackendError(f"malformed chat completion response: missing {e}") from e
        usage = data.get("usage") or {}
        g = Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            raw=data,
        )
        content = (choice.get("logprobs") or {}).get("content")
        if content:
            g.tokens = [c["token"] for c in content]
            g.token_logprobs = [float(c["logprob"]) for c in content]
            if any("top_logprobs" in c for c in content):
                g.top_logprobs = [[(t["token"], float(t["logprob"])) for t in c.get("top_logprobs") or []]
                                  for c in content]
        return g

    option_scoring = "first_token"  # score_options reads the first reply token's top_logprobs

    def score_options(self, prompts: Sequence[Prompt], options: Sequence[str], prefix: str = "",
                      batch_size: int | None = None) -> np.ndarray:
        """Option log-probabilities from the endpoint's ``top_logprobs`` (``score_by_top_logprobs``): works
        with any OpenAI-compatible server that returns them (OpenAI, vLLM, llama.cpp, ``llmrec serve``)."""
        return score_by_top_logprobs(self, prompts, options, prefix)


def from_config(config) -> OpenAIChatLLM:
    """The ``openai`` entry of ``llmrec.llm.registry.LLMS``: common fields + ``options`` (backoff_s, concurrency)."""
    if not config.base_url or not config.model:
        raise ConfigError("llm.base_url and llm.model: the openai backend needs both")
    return OpenAIChatLLM(backend_config(OpenAIConfig, config, base_url=config.base_url, model=config.model,
                                        api_key_env=config.api_key_env, timeout_s=config.timeout_s,
                                        max_retries=config.max_retries))
