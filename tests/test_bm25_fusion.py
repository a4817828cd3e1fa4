"""The vectorized BM25 scoring and the pruned hybrid fusion give exactly what scoring one document at a time
and fusing every document give: the same values, hence the same top k (ties broken by id)."""
import math
import random
from collections import defaultdict

import numpy as np

from llmrec.memory.api import fused_candidates, minmax_scores
from llmrec.memory.bm25 import BM25Index, tokenize

WORDS = "sister dentist bicycle jazz album trail recipe museum chess garden novel budget osaka ramen blue".split()


def reference_scores(index: BM25Index, query: str, group) -> dict[str, float]:
    """BM25 one document at a time (the formula before vectorizing)."""
    n = len(index.lengths)
    avgdl = index.total_len / n or 1.0
    out = defaultdict(float)
    for term in set(tokenize(query)):
        docs = index.postings.get(term)
        if not docs:
            continue
        idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
        for doc_id, tf in docs.items():
            if group is not None and index.groups[doc_id] != group:
                continue
            norm = tf + index.k1 * (1 - index.b + index.b * index.lengths[doc_id] / avgdl)
            out[doc_id] += idf * tf * (index.k1 + 1) / norm
    return dict(out)


def test_vectorized_scores_and_pruned_fusion_equal_the_reference():
    rng = random.Random(0)
    for trial in range(20):
        index = BM25Index()
        ids = [f"d{i}" for i in range(rng.randint(30, 400))]
        for i in ids:
            index.add(i, " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))), rng.choice(["turn", "pair"]))
        for i in rng.sample(ids, len(ids) // 5):  # removals and re-adds leave dead slots behind
            index.remove(i)
            if rng.random() < 0.5:
                index.add(i, " ".join(rng.choice(WORDS) for _ in range(5)), "turn")
        query = " ".join(rng.choice(WORDS) for _ in range(3))
        for group in (None, "turn"):
            assert index.scores(query, group) == reference_scores(index, query, group)
            live = [i for i in ids if i in index.lengths and (group is None or index.groups[i] == group)]
            dense = {i: rng.random() for i in rng.sample(live, min(len(live), rng.randint(0, 40)))}
            for a in (0.3, 0.5, 0.9):
                for k in (1, 5, 20):
                    d, l = minmax_scores(dense), minmax_scores(reference_scores(index, query, group))
                    full = {i: a * d.get(i, 0.0) + (1 - a) * l.get(i, 0.0) for i in set(d) | set(l)}
                    pruned = fused_candidates(dense, index, query, group, a, k)
                    top = lambda s: sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
                    assert top(pruned) == top(full), (trial, group, a, k)
                    assert all(full[i] == v for i, v in pruned.items())
