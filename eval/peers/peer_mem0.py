"""mem0 (the `mem0ai` package) on the LoCoMo memory task, run in the peers' environment (`make peers`).

    .venv-peers/bin/python eval/peers/peer_mem0.py INPUT.json OUTPUT.json BASE_URL [--infer]

INPUT (written by llmrec's memory experiment): conversations, each with its sessions' turns exactly as llmrec
stores them ("speaker: text") and its questions. mem0 gets its LLM and its embeddings from `llmrec serve`
at BASE_URL (OpenAI-compatible: the bundled SmolLM2-135M and MiniLM, the same embedder llmrec uses) and
keeps vectors in its FAISS store. Without --infer every turn is added as a memory as it is (`infer=False`);
with --infer each session goes through mem0's own LLM fact extraction and update. For every question the
output lists the session of each hit in mem0's order (llmrec scores them like its own methods).

Shims for mem0's version quirks live here, never in mem0: this targets mem0ai 2.2.x (`search(query,
top_k=, filters={"user_id": ...}, threshold=)`)."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def make_memory(base_url: str, home: Path, name: str):
    from mem0 import Memory

    return Memory.from_config({
        "llm": {"provider": "openai", "config": {"model": "smollm2-135m", "openai_base_url": base_url,
                                                 "api_key": "unused", "temperature": 0.0, "max_tokens": 256}},
        "embedder": {"provider": "openai", "config": {"model": "all-MiniLM-L6-v2", "openai_base_url": base_url,
                                                      "api_key": "unused", "embedding_dims": 384}},
        "vector_store": {"provider": "faiss", "config": {"collection_name": name, "path": str(home / name),
                                                         "embedding_model_dims": 384,
                                                         "distance_strategy": "inner_product"}},
        "history_db_path": str(home / f"{name}-history.db"),
    })


def main() -> None:
    inp, outp, base_url = sys.argv[1], sys.argv[2], sys.argv[3]
    infer = "--infer" in sys.argv[4:]
    data = json.loads(Path(inp).read_text())
    out = {"library": "mem0ai", "infer": infer, "conversations": {}, "add_seconds": 0.0, "search_seconds": 0.0,
           "memories": 0, "searches": 0, "errors": []}
    try:
        from importlib.metadata import version

        out["version"] = version("mem0ai")
    except Exception:  # noqa: BLE001
        out["version"] = "unknown"
    with tempfile.TemporaryDirectory() as tmp:
        for conv in data["conversations"]:
            user = conv["user"]
            m = make_memory(base_url, Path(tmp), user.replace("-", "_"))
            t = time.perf_counter()
            for sess in conv["sessions"]:
                meta = {"session_id": sess["session_id"]}
                try:
                    if infer:
                        m.add([{"role": "user", "content": x} for x in sess["turns"]], user_id=user, metadata=meta,
                              infer=True)
                    else:
                        for x in sess["turns"]:
                            m.add([{"role": "user", "content": x}], user_id=user, metadata=meta, infer=False)
                except Exception as e:  # noqa: BLE001  (recorded: mem0's LLM step can fail on a small model)
                    out["errors"].append(f"{user}/{sess['session_id']}: {type(e).__name__}: {str(e)[:200]}")
            out["add_seconds"] += time.perf_counter() - t
            got = m.get_all(filters={"user_id": user}, top_k=100000)
            out["memories"] += len(got.get("results", got) if isinstance(got, dict) else got)
            ranked = {}
            t = time.perf_counter()
            for q in conv["questions"]:
                res = m.search(q["question"], top_k=conv["top_k"], filters={"user_id": user}, threshold=0.0)
                hits = res.get("results", res) if isinstance(res, dict) else res
                ranked[q["id"]] = [(h.get("metadata") or {}).get("session_id") for h in hits]
                out["searches"] += 1
            out["search_seconds"] += time.perf_counter() - t
            out["conversations"][user] = ranked
    Path(outp).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
