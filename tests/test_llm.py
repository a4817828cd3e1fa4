import math

import pytest

from llmrec.llm import GenerationParams
from llmrec.llm.base import to_messages, truncate_at_stop

PROMPTS = [
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "Write one sentence about a cat who likes jazz music and sleeps all day.",
    [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "Opposite of hot?"}],
    "Suggest a movie for a rainy Sunday afternoon with the family.",
]


def test_default_llm_generates_deterministic_text(llm):
    p = GenerationParams(max_new_tokens=16)
    a = llm.generate([PROMPTS[0]], p)[0]
    b = llm.generate([PROMPTS[0]], p)[0]
    assert a.text.strip(), "greedy generation returned empty text"
    assert "Paris" in a.text
    assert a.text == b.text
    assert 0 < a.completion_tokens <= 16 and a.prompt_tokens > 5
    assert llm.model_id.startswith("SmolLM2-135M-Instruct@")


@pytest.mark.slow
def test_batched_equals_one_by_one(llm):
    p = GenerationParams(max_new_tokens=20)
    singles = [llm.generate([x], p)[0] for x in PROMPTS]
    batched = llm.generate(PROMPTS, p)
    assert [g.text for g in batched] == [g.text for g in singles]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in singles]


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_continuous_batching_with_small_batch_keeps_order(llm):
    from llmrec.llm.transformers import TransformersConfig, TransformersLLM

    small = TransformersLLM(TransformersConfig(batch_size=2))
    p = GenerationParams(max_new_tokens=12)
    assert [g.text for g in small.generate(PROMPTS, p)] == [g.text for g in llm.generate(PROMPTS, p)]


def test_length_limit_and_logprobs(llm):
    g = llm.generate([PROMPTS[2]], GenerationParams(max_new_tokens=5, logprobs=True))[0]
    assert g.completion_tokens == 5 and g.finish_reason == "length"
    assert len(g.token_logprobs) == 5 and len(g.tokens) == 5
    assert all(lp <= 0 and math.isfinite(lp) for lp in g.token_logprobs)
    # greedy picks the argmax, so its probability is at least 1/vocab
    assert all(lp > math.log(1 / 50000) for lp in g.token_logprobs)


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_stop_strings_cut_the_text(llm):
    full = llm.generate([PROMPTS[1]], GenerationParams(max_new_tokens=30))[0].text
    words = full.split()
    assert len(words) > 3
    stop = words[2]
    cut = llm.generate([PROMPTS[1]], GenerationParams(max_new_tokens=30, stop=[stop]))[0]
    assert stop not in cut.text
    assert full.startswith(cut.text.rstrip()) and cut.finish_reason == "stop"


def test_sampling_is_seeded(llm):
    p = GenerationParams(max_new_tokens=12, temperature=1.0, seed=7)
    assert llm.generate([PROMPTS[4]], p)[0].text == llm.generate([PROMPTS[4]], p)[0].text


def test_bad_prompts_name_the_field(llm):
    with pytest.raises(ValueError, match=r"prompts\[1\]: empty prompt"):
        llm.generate(["ok", "   "], GenerationParams(max_new_tokens=2))
    with pytest.raises(ValueError, match=r"prompts\[0\]\[0\].role"):
        to_messages([{"role": "wizard", "content": "x"}])
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="stop"):
        GenerationParams(stop=[""])


def test_truncate_at_stop_takes_earliest():
    assert truncate_at_stop("abc END def STOP", ["STOP", "END"]) == ("abc ", True)
    assert truncate_at_stop("abc", ["x"]) == ("abc", False)


def test_vllm_missing_extra_is_a_clear_error():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    from llmrec.llm import LLMConfig, make_llm

    with pytest.raises(ImportError, match=r"llmrec\[vllm\]"):
        make_llm(LLMConfig(backend="vllm", model="some/model"))
