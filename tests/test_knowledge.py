import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llmrec.jobs import KnowledgeRequest, extract, load_knowledge, read_shard
from llmrec.llm import GenerationParams

ITEMS = [KnowledgeRequest(str(i), {"title": f"Item {i}", "category": c, "description": f"A {c} thing number {i}."})
         for i, c in enumerate(["books", "music", "games", "tech", "kitchen", "outdoor"])]
P = GenerationParams(max_new_tokens=8)


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_extract_then_cached_rerun_generates_nothing(llm, tmp_path):
    r1 = extract(llm, "item", "item_knowledge", ITEMS, tmp_path, P, chunk_size=4, progress=False)
    assert (r1.total, r1.cached, r1.generated) == (6, 0, 6)
    assert r1.completion_tokens > 0
    texts = load_knowledge(tmp_path, "item")
    assert set(texts) == {r.id for r in ITEMS} and all(texts.values())
    calls = []

    class Counting:
        model_id = llm.model_id

        def generate(self, prompts, params):
            calls.append(len(prompts))
            return llm.generate(prompts, params)

    r2 = extract(Counting(), "item", "item_knowledge", ITEMS, tmp_path, P, progress=False)
    assert (r2.cached, r2.generated) == (6, 0) and calls == []
    # one changed row regenerates only that row
    changed = ITEMS[:5] + [KnowledgeRequest("5", {"title": "Other", "category": "x", "description": "y"})]
    r3 = extract(Counting(), "item", "item_knowledge", changed, tmp_path, P, progress=False)
    assert (r3.cached, r3.generated) == (5, 1) and calls == [1]


def test_bad_input_and_foreign_shards(llm, tmp_path):
    with pytest.raises(KeyError, match=r"requests\[0\] \(id '0'\).*missing variables \['description'\]"):
        extract(llm, "item", "item_knowledge", [KnowledgeRequest("0", {"title": "t", "category": "c"})], tmp_path,
                P, progress=False)
    with pytest.raises(ValueError, match=r"requests\[0\].id: missing id"):
        extract(llm, "item", "item_knowledge", [KnowledgeRequest("", ITEMS[0].variables)], tmp_path, P,
                progress=False)
    (tmp_path / "item.jsonl").write_text(json.dumps({"id": "0", "kind": "item", "prompt_hash": "x",
                                                     "model_id": "other-model", "text": "t"}) + "\n")
    with pytest.raises(ValueError, match="written by model \\['other-model'\\]"):
        extract(llm, "item", "item_knowledge", ITEMS, tmp_path, P, progress=False)


def test_torn_last_line_is_ignored(tmp_path):
    (tmp_path / "k.jsonl").write_text('{"id": "a", "text": "x", "model_id": "m", "prompt_hash": "h"}\n{"id": "b", "te')
    assert list(read_shard(tmp_path / "k.jsonl")) == ["a"]


JOB = r"""
import sys
from llmrec.llm.transformers import TransformersLLM, TransformersConfig
from llmrec.llm import GenerationParams
from llmrec.jobs import KnowledgeRequest, extract
reqs = [KnowledgeRequest(str(i), {"title": f"Thing {i}", "category": "misc", "description": f"Number {i}."})
        for i in range(24)]
llm = TransformersLLM(TransformersConfig(batch_size=2))
extract(llm, "item", "item_knowledge", reqs, sys.argv[1], GenerationParams(max_new_tokens=6), chunk_size=2,
        progress=False)
"""


@pytest.mark.slow
def test_killed_extraction_resumes_without_duplicates(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path)], env=env)
    shard = tmp_path / "item.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline:
        if shard.exists() and shard.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = shard.read_text().count("\n")
    assert 4 <= done_before < 24, "the job should have been killed part-way"
    subprocess.run([sys.executable, "-c", JOB, str(tmp_path)], env=env, check=True)
    lines = [json.loads(x) for x in shard.read_text().splitlines() if x.strip()]
    ids = [x["id"] for x in lines]
    assert sorted(ids, key=int) == [str(i) for i in range(24)], "missing or duplicated rows after resume"
