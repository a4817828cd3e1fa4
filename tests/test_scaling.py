"""Approximate entropy against its definition and the performance-law fit on a known law."""
import math

import numpy as np
import pytest

from llmrec.scaling import (PerformanceLaw, approximate_entropy, data_proxy, mape, pooled_approximate_entropy,
                            recommend_size)


def _apen_by_definition(x, m):
    n = len(x)

    def phi(k):
        total = n - k + 1
        out = 0.0
        for i in range(total):
            c = sum(1 for j in range(total) if list(x[j:j + k]) == list(x[i:i + k])) / total
            out += math.log(c)
        return out / total

    return phi(m) - phi(m + 1)


def test_apen_matches_the_definition_and_orders_regularity():
    rng = np.random.default_rng(0)
    for seq in (list(rng.integers(0, 5, 40)), [1, 2, 3] * 10, list(range(30))):
        assert approximate_entropy(seq, 2) == pytest.approx(_apen_by_definition(seq, 2), abs=1e-12)
    periodic = approximate_entropy([1, 2, 3] * 20)
    random = approximate_entropy(list(rng.integers(0, 5, 60)))
    assert periodic < 0.1 < random
    assert approximate_entropy([7] * 30) == pytest.approx(0.0, abs=1e-12)
    assert approximate_entropy([1, 2]) == 0.0
    with pytest.raises(ValueError, match="m"):
        approximate_entropy([1, 2, 3], 0)


def test_data_proxy_weights_tokens_by_entropy():
    p = data_proxy([[1, 2, 3] * 5, [4, 5, 6, 1, 4, 2, 5]])
    assert p.tokens == 22 and p.sequences == 2
    assert p.d_prime == pytest.approx(p.tokens * p.apen)
    with pytest.raises(ValueError, match="sequences"):
        data_proxy([])


def test_pooled_apen_is_the_plug_in_entropy_gap_of_windows_across_sequences():
    seqs = [[1, 2, 3, 4], [1, 2, 3, 5], [9, 2, 3, 4], [6, 7]]

    def entropy(k):  # plug-in entropy of the length-k windows of every sequence, counted by hand
        windows = [tuple(s[i:i + k]) for s in seqs for i in range(len(s) - k + 1)]
        return -sum(windows.count(w) / len(windows) * math.log(windows.count(w) / len(windows))
                    for w in set(windows))

    assert pooled_approximate_entropy(seqs, 2) == pytest.approx(entropy(3) - entropy(2), abs=1e-12)
    assert pooled_approximate_entropy(seqs, 1) == pytest.approx(entropy(2) - entropy(1), abs=1e-12)
    # no sequence repeats an item, so per-sequence ApEn is negative for all; pooled, the shared path is
    # what it measures: the same users with a fixed successor per item are more predictable than random ones
    rng = np.random.default_rng(0)
    succ = {i: (i * 7 + 3) % 50 for i in range(50)}
    follow = [[int(rng.integers(50))] for _ in range(200)]
    for s in follow:
        while len(s) < 6:
            s.append(succ[s[-1]])
    rand = [list(rng.choice(50, 6, replace=False)) for _ in range(200)]
    assert pooled_approximate_entropy(follow, 1) < 0.01 < pooled_approximate_entropy(rand, 1)
    p = data_proxy(rand, scope="pooled")
    assert p.d_prime == pytest.approx(p.tokens * pooled_approximate_entropy(rand, 2))
    with pytest.raises(ValueError, match="scope"):
        data_proxy(rand, scope="global")


def test_law_fit_recovers_a_known_law_and_predicts_held_out_points():
    truth = (0.30, 2.0, 0.4, 5.0, 0.5, 2e-4)
    law = PerformanceLaw(truth, "d_prime")
    n = np.array([2e3, 8e3, 3e4, 1e5, 4e5] * 3, float)
    d = np.repeat([2e3, 8e3, 3e4], 5).astype(float)
    y = law.predict(n, d) + np.random.default_rng(0).normal(0, 0.0005, len(n))
    fit_idx = np.arange(len(n)) % 3 != 0
    fitted = PerformanceLaw.fit(n[fit_idx], d[fit_idx], y[fit_idx])
    assert mape(fitted.predict(n[~fit_idx], d[~fit_idx]), y[~fit_idx]) < 5.0
    best, value = recommend_size(fitted, 3e4, {(1, 16): 2e3, (2, 64): 1e5, (4, 256): 4e5})
    truth_best = max([(1, 16), (2, 64), (4, 256)], key=lambda k: float(law.predict({(1, 16): 2e3, (2, 64): 1e5, (4, 256): 4e5}[k], 3e4)))
    assert best == truth_best and value == pytest.approx(float(fitted.predict({(1, 16): 2e3, (2, 64): 1e5, (4, 256): 4e5}[best], 3e4)))
    with pytest.raises(ValueError, match="6 coefficients"):
        PerformanceLaw.fit([1, 2], [1, 2], [0.1, 0.2])
    assert mape([1.1, 0.9], [1.0, 1.0]) == pytest.approx(10.0)


def test_measurement_noise_of_held_out_points():
    """The error an exact law still makes: binomial test sampling of a hit rate, and the spread of reruns."""
    from llmrec.experiments.scaling import measurement_noise

    points = [{"metric": 0.5, "test_users": 100, "repeats": [0.55]},
              {"metric": 0.2, "test_users": 400, "repeats": [0.1]},
              {"metric": 0.9, "test_users": 100, "repeats": [0.0]}]
    held = np.array([True, True, False])  # the third point is a fitting point: left out
    noise = measurement_noise(points, held, "hit@10")
    sampling = [np.sqrt(2 / np.pi) * np.sqrt(0.25 / 100) / 0.5, np.sqrt(2 / np.pi) * np.sqrt(0.16 / 400) / 0.2]
    assert noise["test_sampling"] == pytest.approx(np.mean(sampling) * 100)
    assert noise["between_seeds"] == pytest.approx((10 + 50) / 2)
    assert noise["seed_floor"] == pytest.approx(30 / np.sqrt(2))
    assert measurement_noise(points, held, "ndcg@10") == {"between_seeds": pytest.approx(30),
                                                          "seed_floor": pytest.approx(30 / np.sqrt(2))}
