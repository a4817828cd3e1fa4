import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from llmrec.llm import GenerationParams
from llmrec.llm.langchain import LangChainLLM, as_langchain


def test_llmrec_llm_as_langchain_chat_model(llm):
    chat = as_langchain(llm, GenerationParams(max_new_tokens=12))
    out = chat.invoke([SystemMessage(content="Be brief."), HumanMessage(content="What is the capital of France?")])
    direct = llm.generate([[{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "What is the capital of France?"}]],
                          GenerationParams(max_new_tokens=12))[0]
    assert out.content == direct.text
    assert out.usage_metadata["output_tokens"] == direct.completion_tokens


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_any_langchain_chat_model_as_llmrec_backend(llm):
    chat = as_langchain(llm, GenerationParams(max_new_tokens=10))
    backend = LangChainLLM(chat, model_id="wrapped")
    prompts = ["Name a planet.", "Name a river."]
    gens = backend.generate(prompts)
    assert [g.text for g in gens] == [g.text for g in llm.generate(prompts, GenerationParams(max_new_tokens=10))]
    assert backend.model_id == "wrapped"
    assert all(g.completion_tokens > 0 for g in gens)


def test_batch_generate_is_one_batched_call(llm):
    chat = as_langchain(llm, GenerationParams(max_new_tokens=8))
    outs = chat.batch_generate([[HumanMessage(content="Say yes.")], [HumanMessage(content="Say no.")]])
    assert len(outs) == 2 and all(o.content for o in outs)
