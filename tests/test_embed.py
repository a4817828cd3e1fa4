import numpy as np
import pytest

from llmrec.embed import EmbedderConfig, SentenceTransformerEmbedder


def test_paraphrase_is_closer_than_unrelated(embedder):
    v = embedder.encode(["A man is playing a guitar on stage.", "Someone performs music with a guitar.",
                         "The quarterly tax report is due on Friday."])
    assert v.dtype == np.float32 and v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert embedder.model_id == "all-MiniLM-L6-v2"


def test_batched_equals_single(embedder):
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(10)]
    batched = embedder.encode(texts)
    single = np.stack([embedder.encode([t])[0] for t in texts])
    assert np.allclose(batched, single, atol=1e-5)


def test_cache_hits_return_the_same_vectors(tmp_path):
    e = SentenceTransformerEmbedder(EmbedderConfig(cache_path=str(tmp_path / "c.sqlite")))
    a = e.encode(["hello world", "goodbye", "hello world"])
    assert np.array_equal(a[0], a[2])
    calls = []
    orig = e._embed
    e._embed = lambda texts: calls.append(list(texts)) or orig(texts)
    b = e.encode(["goodbye", "hello world", "new text"])
    assert calls == [["new text"]]  # only the unseen text was embedded
    assert np.array_equal(b[0], a[1]) and np.array_equal(b[1], a[0])


def test_bad_input(embedder):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.encode(["ok", 3])
    assert embedder.encode([]).shape == (0, 384)
