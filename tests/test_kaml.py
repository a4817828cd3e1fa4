"""KAML (papers.md §16): the multi-label view (funnel labels, simulated reporting and attribution), the
label codes strict and attribution-driven masking train on, the multilabel task's loss and metrics, MMoE with
HKE, and the named errors."""
import numpy as np
import pytest
import torch

from llmrec.ctr.features import Batch
from llmrec.data import SyntheticConfig, generate_world
from llmrec.data.multilabel import (ATTRIBUTED, REPORTED, UNKNOWN, MultiLabelConfig, label_matrix,
                                    movielens_labels, multi_label_view)
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.schema import RecData
from llmrec.errors import ConfigError, DataError
from llmrec.train_job import TrainJobConfig, prepare, train_prepared
from llmrec.metrics import auc
from llmrec.models import build_model
from llmrec.models.multitask.mmoe import mmoe_tasks
from llmrec.train.tasks import MultiLabelTask, MultiLabelTaskConfig


def funnel(rows, reported, attributed):
    """A hand-made three-task multi-label RecData: rows of (click, cart, purchase) truths."""
    y = np.array(rows, np.float32)
    n = len(y)
    cols = {"user_id": np.array([f"u{i}" for i in range(n)], dtype=object),
            "item_id": np.array([f"i{i}" for i in range(n)], dtype=object),
            "timestamp": np.arange(n, dtype=np.float64), "label": y[:, 0].copy()}
    for t, name in enumerate(("click", "cart", "purchase")):
        cols[name] = y[:, t]
        cols[f"{name}:reported"] = np.array([r[t] for r in reported], bool)
        cols[f"{name}:attributed"] = np.array([a[t] for a in attributed], bool)
    return RecData(name="funnel", columns=cols, fields={"user_id": "categorical", "item_id": "categorical"},
                   tasks=("click", "cart", "purchase"))


def test_label_codes_follow_reporting_attribution_and_the_funnel():
    data = funnel(
        rows=[[1, 1, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]],
        reported=[[1, 1, 1], [1, 0, 0], [1, 0, 1], [1, 0, 0], [1, 0, 0]],
        attributed=[[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]])
    y, code = label_matrix(data, np.arange(5))
    # row 0: everything reported
    assert code[0].tolist() == [REPORTED] * 3 and y[0].tolist() == [1, 1, 1]
    # row 1: no click -> no cart, no purchase (implied by the reported shallower negative)
    assert code[1].tolist() == [REPORTED, ATTRIBUTED, ATTRIBUTED] and y[1].tolist() == [0, 0, 0]
    # row 2: purchase reported negative says nothing about the cart above it; cart unknown
    assert code[2].tolist() == [REPORTED, UNKNOWN, REPORTED] and y[2].tolist() == [1, 0, 0]
    # row 3: clicked, nothing else reported or attributed: unknown
    assert code[3].tolist() == [REPORTED, UNKNOWN, UNKNOWN]
    # row 4: the purchase was attributed -> purchase 1 and the cart below it 1
    assert code[4].tolist() == [REPORTED, ATTRIBUTED, ATTRIBUTED] and y[4].tolist() == [1, 1, 1]
    # the test split: complete labels, all reported
    y, code = label_matrix(data, np.arange(5), complete=True)
    assert (code == REPORTED).all() and y[2].tolist() == [1, 1, 0]


def test_implied_labels_are_never_wrong_on_the_synthetic_world():
    data = load_data(DataConfig(multi_label=MultiLabelConfig(advertiser_by="category"),
                                synthetic=SyntheticConfig(n_users=300, n_items=200)))
    rows = np.arange(len(data))
    y, code = label_matrix(data, rows)
    truth, _ = label_matrix(data, rows, complete=True)
    known = code > UNKNOWN
    assert (y[known] == truth[known]).all()
    # every reporting fraction is exact: 100%, 50%, 30% of the 20 advertisers
    adv = data.columns["advertiser"]
    for name, frac in zip(data.tasks, (1.0, 0.5, 0.3)):
        rep = {a for a, r in zip(adv, data.columns[f"{name}:reported"]) if r}
        assert len(rep) == round(frac * 20)
    # attribution only ever shows true, unreported conversions, about 30% of them
    for name in data.tasks[1:]:
        a, r, t = (data.columns[f"{name}:attributed"], data.columns[f"{name}:reported"], data.columns[name])
        assert not (a & ((t == 0) | r)).any()
        assert 0.2 < a.sum() / ((t > 0) & ~r).sum() < 0.4
    # specialised advertisers: nearly every advertiser sells one category
    cats = {}
    for a, c in zip(adv, data.columns["category"]):
        cats.setdefault(a, set()).add(c)
    assert sum(len(v) == 1 for v in cats.values()) >= 12
    # purchase is the rare label, and the funnel holds
    rates = [data.columns[t].mean() for t in data.tasks]
    assert rates[0] > rates[1] > rates[2] > 0.01
    assert (data.columns["purchase"] <= data.columns["cart"]).all() and (data.columns["cart"] <= data.columns["click"]).all()


def test_funnel_columns_leave_the_world_unchanged():
    plain, with_funnel = generate_world(), generate_world(SyntheticConfig(funnel=True))
    for k, v in plain.columns.items():
        assert (with_funnel.columns[k] == v).all(), k


def test_movielens_view_samples_unrated_impressions():
    rng = np.random.default_rng(0)
    users = np.array([f"u{u}" for u in rng.integers(0, 30, 400)], dtype=object)
    items = np.array([f"m{i}" for i in rng.integers(0, 40, 400)], dtype=object)
    ratings = rng.integers(1, 6, 400).astype(np.float32)
    genre = {f"m{i}": ("Drama",) if i % 2 else ("Comedy",) for i in range(40)}
    age = {f"u{u}": float(20 + u) for u in range(30)}
    cols = {"user_id": users, "item_id": items, "rating": ratings, "label": (ratings >= 4).astype(np.float32),
            "timestamp": np.arange(400, dtype=np.float64), "age": np.array([age[u] for u in users], np.float32),
            "genres": np.array([genre[i] for i in items] + [None], dtype=object)[:-1]}
    data = RecData(name="tiny-ml", columns=cols, fields={"user_id": "categorical", "item_id": "categorical",
                                                          "age": "numerical", "genres": "multi_hot"})
    out = movielens_labels(data, negatives=1.0, seed=0)
    c = out.columns
    rated = set(zip(users.tolist(), items.tolist()))
    fake = c["rated"] == 0
    assert 300 < fake.sum() <= 400
    assert all((u, i) not in rated for u, i in zip(c["user_id"][fake], c["item_id"][fake]))
    assert all(g == genre[i] for g, i in zip(c["genres"][fake], c["item_id"][fake]))  # item columns of the item
    assert all(a == age[u] for a, u in zip(c["age"][fake], c["user_id"][fake]))  # user columns of the user
    assert (c["liked"] == ((c["rating"] >= 4) & (c["rated"] > 0))).all() and c["loved"][fake].sum() == 0
    view = multi_label_view(out, ("rated", "liked", "loved"), MultiLabelConfig(advertisers=4))
    assert view.tasks == ("rated", "liked", "loved") and view.fields["advertiser"] == "categorical"


def test_bad_multi_label_input_is_named():
    data = load_data(DataConfig(synthetic=SyntheticConfig(n_users=50, n_items=40, funnel=True)))
    with pytest.raises(ConfigError, match="report"):
        multi_label_view(data, ("click", "cart", "purchase"), MultiLabelConfig(report=[1.0, 0.5]))
    with pytest.raises(ConfigError, match="advertiser_by"):
        multi_label_view(data, ("click", "cart", "purchase"), MultiLabelConfig(advertiser_by="user_id"))
    broken = dict(data.columns)
    broken["purchase"] = np.ones(len(data), np.float32)
    from dataclasses import replace
    with pytest.raises(DataError, match="purchase.*funnel"):
        multi_label_view(replace(data, columns=broken), ("click", "cart", "purchase"), MultiLabelConfig())
    # a task no advertiser reports: missing for every training row
    job = TrainJobConfig(data={"source": "synthetic", "synthetic": {"n_users": 50, "n_items": 40},
                               "multi_label": {"report": [1.0, 0.5, 0.0]}}, model={"name": "mmoe"})
    with pytest.raises(DataError, match="labels.purchase: the label is missing for every train row"):
        prepare(job)


def batch(labels, codes, n_cat=1):
    y = torch.tensor(labels, dtype=torch.float32)
    n = len(y)
    return Batch(cat=torch.zeros((n, n_cat), dtype=torch.long), num=torch.zeros((n, 0)),
                 num_bucket=torch.zeros((n, 0), dtype=torch.long), seq={}, dense={}, label=y[:, 0],
                 labels=y, observed=torch.tensor(codes, dtype=torch.int8))


def test_multilabel_loss_masks_per_task_and_ranks_unlabeled_cells():
    b = batch([[1, 1], [0, 0], [1, 0], [1, 0]],
              [[REPORTED, REPORTED], [REPORTED, ATTRIBUTED], [REPORTED, UNKNOWN], [REPORTED, ATTRIBUTED]])
    logits = torch.tensor([[0.5, 1.0], [-0.2, -1.0], [0.3, 0.4], [0.1, 2.0]])

    def net(_):
        return logits

    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, b.labels, reduction="none")
    strict = MultiLabelTask(MultiLabelTaskConfig(masking="strict")).row_loss(net, b)
    # task 0: all 4 cells; task 1: only row 0 is reported
    assert torch.isclose(strict.mean(), bce[:, 0].mean() + bce[0, 1])
    adm = MultiLabelTask(MultiLabelTaskConfig(masking="attribution")).row_loss(net, b)
    assert torch.isclose(adm.mean(), bce[:, 0].mean() + bce[[0, 1, 3], 1].mean())
    rlu = MultiLabelTask(MultiLabelTaskConfig(masking="attribution", ranking_weight=0.5)).row_loss(net, b)
    sp = torch.nn.functional.softplus
    # task 1: positive row 0 above unlabeled row 2; unlabeled row 2 above negatives rows 1 and 3
    rank = sp(logits[2, 1] - logits[0, 1]) + (sp(logits[1, 1] - logits[2, 1]) + sp(logits[3, 1] - logits[2, 1])) / 2
    assert torch.isclose(rlu.mean(), adm.mean() + 0.5 * rank)
    with pytest.raises(ConfigError, match="task_weights"):
        MultiLabelTask(MultiLabelTaskConfig(task_weights=[1.0])).row_loss(net, b)


class _Ctx:
    eval_batch_size, device = 3, "cpu"

    def autocast(self):
        import contextlib
        return contextlib.nullcontext()


def test_multilabel_metrics_use_reported_cells_only():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 2)) < 0.5).astype(np.float32)
    codes = np.where(rng.random((40, 2)) < 0.7, REPORTED, UNKNOWN).astype(np.int8)
    b = batch(y.tolist(), codes.tolist())
    scores = torch.from_numpy(rng.normal(size=(40, 2)).astype(np.float32))

    class Fixed(torch.nn.Module):
        def forward(self, bb):
            return scores[bb.cat[:, 0]]

    b.cat = torch.arange(40).unsqueeze(1)
    res = MultiLabelTask(names=["a", "b"]).evaluate(Fixed(), b, _Ctx())
    for t, name in enumerate("ab"):
        m = codes[:, t] == REPORTED
        assert res[f"auc_{name}"] == pytest.approx(auc(y[m, t], scores.numpy()[m, t]))
    assert res["auc"] == pytest.approx((res["auc_a"] + res["auc_b"]) / 2)


def test_hke_shifts_only_attributed_cells_in_training():
    job = TrainJobConfig(data={"source": "synthetic", "synthetic": {"n_users": 60, "n_items": 40},
                               "multi_label": {}}, model={"name": "mmoe", "hke": True})
    p = prepare(job)
    model = build_model(p.context, mmoe_tasks(p.context, job.model, p.train, p.valid, job.trainer))
    for d in model.discrepancy:
        torch.nn.init.constant_(d.net[-1].bias, 3.0)
    b = p.train.slice(torch.arange(200))
    model.eval()
    clean = model(b)
    model.train()
    shifted = model(b)
    att = b.observed == ATTRIBUTED
    assert att.any() and (~att).any()
    assert torch.allclose(shifted[~att], clean[~att]) and (shifted[att] - clean[att]).abs().min() > 0.5
    assert clean.shape == (200, 3)


def test_kaml_trains_end_to_end_and_learns_every_label():
    data = {"source": "synthetic", "multi_label": {"advertiser_by": "category"},
            "synthetic": {"n_users": 300, "n_items": 200}}
    job = TrainJobConfig(data=data, model={"name": "mmoe", "hke": True},
                         multilabel={"masking": "attribution", "ranking_weight": 0.1},
                         trainer={"epochs": 3, "batch_size": 512, "progress": False})
    model, r = train_prepared(job, prepare(job))
    assert r["task"] == "multilabel" and model.config.tasks == 3
    assert all(r["test"][f"auc_{t}"] > 0.55 for t in ("click", "cart", "purchase")), r["test"]
    bad = TrainJobConfig(data=data, model={"name": "mmoe", "tasks": 2}, trainer={"epochs": 1, "progress": False})
    with pytest.raises(ConfigError, match="model.tasks: 2, but the data has 3 labels"):
        train_prepared(bad, prepare(bad))


def test_breakdown_plots_per_label_and_per_group(tmp_path):
    from llmrec.experiments.harness import group_aucs, plot, task_aucs

    def variant(extra):
        return {"auc_mean": 0.7, "auc_std": 0.01, "primary_metric": "auc", **extra}

    labels = {"a": variant({"auc_click_mean": 0.6, "auc_click_std": 0.0, "auc_buy_mean": 0.8, "auc_buy_std": 0.0}),
              "b": variant({"auc_click_mean": 0.62, "auc_click_std": 0.0, "auc_buy_mean": 0.79, "auc_buy_std": 0.0})}
    groups = {"a": variant({"searched_yes_auc_mean": 0.7, "searched_yes_auc_std": 0.0,
                            "searched_no_auc_mean": 0.6, "searched_no_auc_std": 0.0})}
    results = {"one": {"variants": labels, "peers": {}}, "two": {"variants": groups, "peers": {}}}
    assert task_aucs(results) == ["click", "buy"] and group_aucs(results) == ["searched_yes", "searched_no"]
    plot(results, tmp_path / "r.png")
    assert all((tmp_path / f).stat().st_size > 0 for f in ("r.png", "r_tasks.png", "r_groups.png"))
