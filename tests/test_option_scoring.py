"""Likelihood scoring of fixed options (the primitive of G-Eval judges and option-scored knowledge):
equal to a teacher-forced computation, batched the same as one by one, and it ranks plainly right answers first."""
import numpy as np
import pytest
import torch


def teacher_forced(llm, prompt: str, prefix: str, option: str) -> float:
    ctx = llm.tokenizer(llm.render(prompt) + prefix, add_special_tokens=False)["input_ids"]
    opt = llm.tokenizer(option, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + opt])
    with torch.inference_mode():
        logp = torch.log_softmax(llm.model(input_ids=ids).logits[0].float(), -1)
    return float(sum(logp[len(ctx) - 1 + k, t] for k, t in enumerate(opt)))


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_option_logprobs_match_teacher_forcing_and_batching(llm):
    prompts = ["What is the capital of France?", "Which animal says moo? Answer in one word."]
    options = [" Paris", " London", " cow", " a bright red bicycle"]
    got = llm.score_options(prompts, options, prefix="Answer:")
    assert got.shape == (2, 4)
    for i, p in enumerate(prompts):
        for j, o in enumerate(options):
            assert got[i, j] == pytest.approx(teacher_forced(llm, p, "Answer:", o), abs=2e-3)
    one = np.vstack([llm.score_options([p], options, prefix="Answer:", batch_size=1) for p in prompts])
    np.testing.assert_allclose(got, one, atol=2e-3)
    assert got[0, 0] > got[0, 1] and got[1, 2] > got[1, 0]


def test_single_token_options_take_the_fast_path(llm):
    digits = ["1", "2", "3", "4", "5"]
    assert all(len(llm.tokenizer(d, add_special_tokens=False)["input_ids"]) == 1 for d in digits)
    fast = llm.score_options(["Rate this from 1 to 5: a perfect answer."], digits, prefix="Score: ")
    slow = np.array([[teacher_forced(llm, "Rate this from 1 to 5: a perfect answer.", "Score: ", d) for d in digits]])
    np.testing.assert_allclose(fast, slow, atol=2e-3)
