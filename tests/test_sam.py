"""SAM / Helen steps and the Hessian eigenvalue diagnostic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.models import build_model
from llmrec.train import Trainer, TrainerConfig
from llmrec.train.sam import SAMConfig, SharpnessStep, top_eigenvalue


def _data(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.zipf(1.5, n) % 200  # skewed: some ids are far more frequent than others
    i = rng.integers(0, 50, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(np.sin(u) + np.cos(i))))).astype(np.float32)
    cols = {"u": u.astype(str).astype(object), "i": i.astype(str).astype(object), "label": y}
    enc = FeatureEncoder([FeatureSpec(name="u", type="categorical"), FeatureSpec(name="i", type="categorical")])
    return enc.fit(cols), cols


def _with_grads(name: str):
    """(encoder, model, batch) with the model's gradients on the batch in ``.grad``."""
    enc, cols = _data()
    torch.manual_seed(0)
    model = build_model(enc, {"name": name, "hidden_units": [8], "embedding_dim": 4})
    batch = enc.transform(cols).slice(torch.arange(256))
    torch.nn.functional.binary_cross_entropy_with_logits(model(batch), batch.label).backward()
    return enc, model, batch


def test_sam_moves_the_whole_gradient_by_rho_and_restores_exactly():
    _, model, b = _with_grads("deepfm")
    before = [p.detach().clone() for p in model.parameters()]
    step = SharpnessStep(model, SAMConfig(kind="sam", rho=0.05))
    moved = step.ascend(b)
    total = torch.sqrt(sum((p.detach() - q).pow(2).sum() for p, q in zip(model.parameters(), before)))
    assert float(total) == pytest.approx(0.05, rel=1e-4)
    step.restore(moved)
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.parameters(), before))


def test_helen_scales_each_row_by_its_batch_frequency_within_its_field():
    enc, model, b = _with_grads("dnn")
    w = model.embedding.table.weight
    g = w.grad.clone()
    before = w.detach().clone()
    SharpnessStep(model, SAMConfig(kind="helen", rho=0.05, xi=0.3)).ascend(b)
    e = w.detach() - before
    starts = enc.offsets()
    for name, lo in starts.items():
        hi = lo + len(enc.vocab[name]) + 1
        counts = torch.bincount(b.cat.reshape(-1), minlength=w.shape[0])[lo:hi].float()
        scale = (counts / counts.max()).clamp(min=0.3)
        expect = g[lo:hi] * (0.05 * scale / g[lo:hi].norm()).unsqueeze(1)
        torch.testing.assert_close(e[lo:hi], expect)
        top = int(counts.argmax())  # the field's most frequent row moves by rho * its share of the norm
        assert float(e[lo + top].norm()) == pytest.approx(0.05 * float(g[lo + top].norm() / g[lo:hi].norm()), rel=1e-4)


def test_helen_dense_parameters_step_with_the_first_pass_gradient_unless_net_pert():
    """The authors' released setting (net_pert False): only the tables move; after the second backward the
    dense parameters carry the first pass's gradient, the tables the second pass's."""
    enc, model, b = _with_grads("dnn")
    w = model.embedding.table.weight
    dense = [p for p in model.parameters() if p is not w and p.grad is not None]
    first = [p.grad.clone() for p in dense]
    values = [p.detach().clone() for p in dense]
    step = SharpnessStep(model, SAMConfig(kind="helen"))
    moved = step.ascend(b)
    assert all(torch.equal(p.detach(), v) for p, v in zip(dense, values))  # dense parameters not perturbed
    model.zero_grad(set_to_none=True)
    torch.nn.functional.binary_cross_entropy_with_logits(model(b), b.label).backward()  # at w + e
    second_w, second_dense = w.grad.clone(), [p.grad.clone() for p in dense]
    step.restore(moved)
    assert all(torch.equal(p.grad, g) for p, g in zip(dense, first))
    assert not all(torch.equal(g, f) for g, f in zip(second_dense, first))  # the perturbation changed them
    assert torch.equal(w.grad, second_w)
    # net_pert: the dense parameters move by rho along their own gradient's direction
    _, model, b = _with_grads("dnn")
    w = model.embedding.table.weight
    dense = [p for p in model.parameters() if p is not w and p.grad is not None]
    values = [p.detach().clone() for p in dense]
    grads = [p.grad.clone() for p in dense]
    SharpnessStep(model, SAMConfig(kind="helen", net_pert=True)).ascend(b)
    shift = torch.sqrt(sum((p.detach() - v).pow(2).sum() for p, v in zip(dense, values)))
    assert float(shift) == pytest.approx(0.05, rel=1e-4)
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    torch.testing.assert_close(dense[0].detach() - values[0], grads[0] * (0.05 / norm))


def test_trainer_runs_two_passes_per_step_and_learns():
    enc, cols = _data()
    full = enc.transform(cols)
    train, valid = full.slice(torch.arange(2500)), full.slice(torch.arange(2500, 3000))
    torch.manual_seed(0)
    model = build_model(enc, {"name": "deepfm", "hidden_units": [16], "embedding_dim": 4})
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1) if m.training else None)
    tc = TrainerConfig(batch_size=500, epochs=3, patience=3, progress=False, learning_rate=0.01,
                       sharpness={"kind": "helen"})
    Trainer(tc).fit(model, train, valid)
    assert len(calls) == 2 * 5 * 3  # two forwards per step, 5 steps an epoch, 3 epochs
    assert Trainer(tc).evaluate(model, valid)["auc"] > 0.6
    with pytest.raises(ValueError, match="sharpness"):
        TrainerConfig(sharpness={"kind": "sam"}, embedding_update="sparse", embedding_l2_scope="batch")


def test_top_eigenvalue_of_a_known_quadratic():
    w = torch.nn.Parameter(torch.randn(6, 3))
    a = torch.tensor([[1.0, 2.0, 3.0], [0.5, 7.0, 1.0], [4.0, 4.0, 4.0], [9.0, 9.0, 9.0], [1, 1, 1], [1, 1, 1]])
    loss = lambda: 0.5 * (a * w.pow(2)).sum()  # noqa: E731  Hessian: diag(a)
    assert top_eigenvalue(loss, w, torch.tensor([0, 1]), iters=200) == pytest.approx(7.0, rel=1e-3)
    assert top_eigenvalue(loss, w, torch.tensor([3]), iters=50) == pytest.approx(9.0, rel=1e-3)
