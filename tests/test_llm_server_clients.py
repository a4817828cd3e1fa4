"""``llmrec serve`` (``LLMServer``) with the real clients people point at it: the ``openai`` SDK and LangChain's
``ChatOpenAI`` / ``OpenAIEmbeddings`` run chat, streaming, ``n`` choices, completions and embeddings (the SDK's
default base64 encoding); what the server does not do (``response_format`` JSON) is a 400 naming the field."""
import numpy as np
import pytest

from llmrec.llm.server import LLMServer

pytestmark = pytest.mark.slow  # seconds of generation: kept out of the 2-minute fast lane (CI runs it)


@pytest.fixture(scope="module")
def served(llm, embedder):
    srv = LLMServer(llm, port=0, embedder=embedder, api_key="sk-test-key").start()
    yield srv
    srv.stop()


def test_the_openai_sdk_runs_chat_streaming_n_completions_and_embeddings(served, llm, embedder):
    import openai

    client = openai.OpenAI(base_url=served.url, api_key="sk-test-key", max_retries=0)
    model = llm.model_id
    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hello."}],
                                          max_tokens=8)
    assert chat.choices[0].message.content and chat.usage.completion_tokens <= 8
    assert chat.choices[0].message.content == llm.generate(["Say hello."], _params(8))[0].text
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, stream=True)
        if c.choices]
    assert "".join(parts) == chat.choices[0].message.content
    two = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a fruit."}],
                                         max_tokens=6, n=2, temperature=1.0, seed=3)
    assert [c.index for c in two.choices] == [0, 1] and all(c.message.content for c in two.choices)
    done = client.completions.create(model=model, prompt=["Paris is the capital of", "Two plus two is"],
                                     max_tokens=6)
    assert [c.index for c in done.choices] == [0, 1] and done.object == "text_completion"
    assert done.choices[1].text == llm.generate(["Two plus two is"], _params(6))[0].text
    emb = client.embeddings.create(model=embedder.model_id, input=["I moved to Lisbon.", "My cat is Miso."])
    got = np.array([d.embedding for d in emb.data], dtype=np.float32)  # the SDK asked for base64 and decoded it
    np.testing.assert_allclose(got, embedder.encode(["I moved to Lisbon.", "My cat is Miso."]), atol=1e-6)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=4,
                                       response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError, match="n: expected"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=50)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served.url, api_key="wrong", max_retries=0).models.list()


def test_langchain_chat_openai_and_openai_embeddings(served, llm, embedder):
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    chat = ChatOpenAI(base_url=served.url, api_key="sk-test-key", model=llm.model_id, max_tokens=8, temperature=0,
                      max_retries=0)
    answer = chat.invoke("Say hello.")
    assert answer.content == llm.generate(["Say hello."], _params(8))[0].text
    assert "".join(c.content for c in chat.stream("Say hello.")) == answer.content
    emb = OpenAIEmbeddings(base_url=served.url, api_key="sk-test-key", model=embedder.model_id,
                           check_embedding_ctx_length=False, max_retries=0)
    np.testing.assert_allclose(np.array(emb.embed_query("My cat is Miso."), np.float32),
                               embedder.encode(["My cat is Miso."])[0], atol=1e-6)


def _params(n):
    from llmrec.llm import GenerationParams

    return GenerationParams(max_new_tokens=n)
