import pytest

from llmrec.prompts import load_prompt, parse_prompt


def test_load_by_name_and_render():
    p = load_prompt("item_knowledge")
    assert p.variables == {"title", "category", "description"}
    msgs = p.messages({"title": "Dune", "category": "books", "description": "A desert planet saga."})
    assert msgs[0]["role"] == "system" and "Dune" in msgs[1]["content"] and "{" not in msgs[1]["content"]


def test_missing_variables_are_named():
    p = load_prompt("user_preference")
    with pytest.raises(KeyError, match=r"missing variables \['history'\]"):
        p.render({"profile": "x"})


def test_unknown_prompt_lists_available():
    with pytest.raises(FileNotFoundError, match="item_knowledge"):
        load_prompt("no_such_prompt")


def test_literal_braces():
    p = parse_prompt("t", "json like {{\"a\": {x}}}")
    assert p.render({"x": 1}) == 'json like {"a": 1}'
