"""The llama.cpp backend (extra [llamacpp]) over the bundled GGUF as shipped: same protocol, stop strings,
lengths, and answers that agree with the transformers backend (greedy, same weights up to quantization)."""
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

from llmrec.llm import GenerationParams, LLMConfig, make_llm  # noqa: E402


@pytest.fixture(scope="module")
def cpp():
    return make_llm(LLMConfig(backend="llamacpp"))


def test_generates_through_the_protocol(cpp):
    assert cpp.model_id.startswith("llamacpp:SmolLM2-135M-Instruct@")
    gens = cpp.generate(["What is the capital of France? Answer in one word.", "Name a yellow fruit."],
                        GenerationParams(max_new_tokens=12))
    assert len(gens) == 2 and all(g.text.strip() and 0 < g.completion_tokens <= 12 for g in gens)
    assert "paris" in gens[0].text.lower()
    short = cpp.generate(["Count from one to twenty in words."], GenerationParams(max_new_tokens=5))[0]
    assert short.completion_tokens == 5 and short.finish_reason == "length"


def test_stop_strings(cpp):
    prompt = "Describe a rainy day in two sentences."
    full = cpp.generate([prompt], GenerationParams(max_new_tokens=30))[0]
    word = full.text.split()[4]
    cut = cpp.generate([prompt], GenerationParams(max_new_tokens=30, stop=[word]))[0]
    assert word not in cut.text and full.text.startswith(cut.text.rstrip()) and len(cut.text) < len(full.text)


def test_agrees_with_transformers(cpp, llm):
    q = ["What is the capital of France? Answer in one word."]
    assert "paris" in llm.generate(q, GenerationParams(max_new_tokens=8))[0].text.lower()
    assert "paris" in cpp.generate(q, GenerationParams(max_new_tokens=8))[0].text.lower()
