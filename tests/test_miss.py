"""MISS: the interest extractors' pooling, the interest-level InfoNCE against a loop over its definition, the
loss reaching the behaviour embeddings through DIN only in training, and the loss falling as it trains."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.ctr.miss import MISS, MISSConfig
from llmrec.data.schema import RecData
from llmrec.data.views import add_history
from llmrec.models import build_model


def test_interests_pool_equal_spans_of_the_unmasked_positions():
    torch.manual_seed(0)
    m = MISS(4, MISSConfig(interests=2))
    hist = torch.randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    z = m.interests(hist, mask)
    assert z.shape == (3, 6, 4)  # 3 extractors x 2 interests
    x = hist * mask.unsqueeze(-1)
    point = m.point(x.transpose(1, 2)).transpose(1, 2) + m.vertical(x.reshape(18, 1, 4)).reshape(3, 6, 4)
    # row 1, interest 0 = positions 0..2, of which only position 0 is a behaviour
    torch.testing.assert_close(z[1, 0], point[1, 0])
    torch.testing.assert_close(z[0, 1], point[0, 3:].mean(0))
    assert torch.equal(z[2], torch.zeros(6, 4))  # no behaviours: nothing pooled


def test_loss_is_symmetric_interest_level_infonce():
    torch.manual_seed(1)
    c = MISSConfig(interests=2, temperature=0.5, mask_rate=0.3)
    m = MISS(4, c)
    hist, mask = torch.randn(5, 6, 4), torch.rand(5, 6) < 0.8
    mask[0] = False  # fewer than 2 behaviours: left out
    torch.manual_seed(7)
    got = m.loss(hist, mask)
    torch.manual_seed(7)  # the same two views, by hand
    keep = mask.sum(1) >= 2
    h, k = hist[keep], mask[keep]
    views = [F.normalize(m.interests(h, k & ~(torch.rand(k.shape) < 0.3)), dim=-1) for _ in range(2)]
    total, n = 0.0, 0
    views = [v.detach() for v in views]
    for a, b in ((0, 1), (1, 0)):
        for i in range(len(h)):
            for j in range(views[0].shape[1]):
                sims = torch.stack([views[a][i, j] @ views[b][r, j] for r in range(len(h))]) / 0.5
                total += float(-torch.log_softmax(sims, 0)[i])
                n += 1
    assert float(got) == pytest.approx(total / n, rel=1e-5)


def test_training_lowers_the_contrastive_loss():
    torch.manual_seed(2)
    m = MISS(8, MISSConfig(interests=2))
    hist = torch.nn.Parameter(torch.randn(64, 10, 8) * 0.1)
    mask = torch.rand(64, 10) < 0.8
    opt = torch.optim.Adam([*m.parameters(), hist], lr=0.01)
    first = None
    for _ in range(60):
        loss = m.loss(hist, mask)
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first


def _din_data():
    rng = np.random.default_rng(0)
    n = 400
    cols = {"user_id": rng.integers(0, 20, n).astype(str).astype(object),
            "item_id": rng.integers(0, 30, n).astype(str).astype(object),
            "label": (rng.random(n) < 0.5).astype(np.float32), "timestamp": np.arange(n, dtype=np.float64)}
    d = add_history(RecData("t", cols, {"user_id": "categorical", "item_id": "categorical"}), max_len=8)
    enc = FeatureEncoder([FeatureSpec(name="user_id", type="categorical"),
                          FeatureSpec(name="item_id", type="categorical"),
                          FeatureSpec(name="history", type="behavior", target="item_id", max_len=8)]).fit(d.columns)
    return enc, enc.transform(d.columns)


def test_din_queues_the_miss_loss_in_training_only_and_it_reaches_the_table():
    enc, batch = _din_data()
    torch.manual_seed(0)
    model = build_model(enc, {"name": "din", "embedding_dim": 8, "miss": {"weight": 0.5}})
    model.train()
    model(batch)
    aux = model.miss.auxiliary_loss()
    assert float(aux) > 0 and model.miss.pending == []  # read once, then cleared
    aux.backward()
    grad = model.embedding.table.weight.grad
    rows = (batch.seq["history"][batch.seq["history"] > 0] - 1).unique()
    assert grad[rows].abs().sum() > 0  # the behaviours' embedding rows get the contrastive gradient
    model.eval()
    model(batch)
    assert model.miss.pending == [] and float(model.miss.auxiliary_loss()) == 0.0
    plain = build_model(enc, {"name": "din", "embedding_dim": 8})
    assert plain.miss is None
