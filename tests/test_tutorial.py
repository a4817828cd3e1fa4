"""The tutorial (docs/tutorial.md) walked from a folder outside the checkout on a generated company-style
export: its own column names, string ids, a time column not called `timestamp`, an items file with title and
description columns and a users file. check -> extract (the bundled LLM, tiny limits) -> SASRec, LightGCN
and DeepFM with the extracted knowledge -> recommendations for one user and a batch, from the CLI (JSON) and
Python."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import llmrec
from llmrec.cli import app
from llmrec.jobs import read_shard

N_USERS, N_ITEMS = 24, 14


def company_export(root) -> None:
    """Customers who stick to one of two product lines, in time order, with a few cross-overs."""
    rng = np.random.default_rng(3)
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    rows = ["customer_ref,product_code,event_time,stars,channel"]
    for u in range(N_USERS):
        line = u % 2
        for n in range(12):
            i = 2 * int(rng.integers(0, N_ITEMS // 2)) + (line if rng.random() < 0.85 else 1 - line)
            when = start + timedelta(hours=int(rng.integers(0, 24 * 60)))
            rows.append(f"cust-{u:03d},SKU-{i:04d},{when.isoformat()},{int(rng.integers(1, 6))},"
                        f"{'web' if rng.random() < 0.5 else 'store'}")
    (root / "orders.csv").write_text("\n".join(rows) + "\n")
    kinds = ("tea", "coffee")
    (root / "products.csv").write_text("product_code,product_name,long_text,line\n" + "".join(
        f"SKU-{i:04d},{kinds[i % 2].title()} no. {i},A {kinds[i % 2]} blend with notes of "
        f"{['citrus', 'cocoa', 'smoke', 'honey'][i % 4]},{kinds[i % 2]}\n" for i in range(N_ITEMS)))
    (root / "customers.csv").write_text("customer_ref,tier,about\n" + "".join(
        f"cust-{u:03d},{'gold' if u % 3 == 0 else 'basic'},Buys mostly {('tea', 'coffee')[u % 2]}\n"
        for u in range(N_USERS)))


@pytest.mark.slow
def test_the_tutorial_from_a_folder_outside_the_checkout(tmp_path, monkeypatch):
    work = tmp_path / "shop"
    work.mkdir()
    company_export(work)
    monkeypatch.chdir(work)  # nothing below may depend on the checkout being the working directory
    data = {"source": "files", "files": {
        "interactions": {"path": "./orders.csv"},
        "columns": {"user": "customer_ref", "item": "product_code", "time": "event_time", "rating": "stars"},
        "features": {"channel": "categorical"},
        "items": {"path": "./products.csv", "id": "product_code", "title": "product_name",
                  "features": {"line": "categorical", "long_text": "text"}},
        "users": {"path": "./customers.csv", "id": "customer_ref", "features": {"tier": "categorical",
                                                                             "about": "text"}},
        "domain": "tea and coffee"}}
    (work / "data.yaml").write_text(yaml.safe_dump({"data": data}))

    # 1. check
    res = CliRunner().invoke(app, ["data", "check", "data.yaml"])
    assert res.exit_code == 0, res.output
    assert f"users {N_USERS}, items {N_ITEMS}" in res.output

    # the split is chronological on the mapped time column
    d = llmrec.dataset("data.yaml")
    from llmrec.data.registry import DataConfig, split_rows

    tr, va, te = split_rows(d, DataConfig.model_validate(data))
    t = d.columns["timestamp"]
    assert t[tr].max() <= t[va].min() and t[va].max() <= t[te].min()
    assert t.min() >= datetime(2025, 3, 1, tzinfo=timezone.utc).timestamp()  # parsed, not file order

    # 2. extract (tiny limits): every item gets a knowledge row
    (work / "extract.yaml").write_text(yaml.safe_dump(
        {"data": data, "kinds": ["item"], "out_dir": "./knowledge", "max_new_tokens": 8, "progress": False}))
    res = CliRunner().invoke(app, ["extract", "--config", "extract.yaml"])
    assert res.exit_code == 0, res.output
    rows = read_shard(work / "knowledge" / "item.jsonl")
    assert set(rows) == {f"SKU-{i:04d}" for i in range(N_ITEMS)}

    # 3. three families with the knowledge
    knowledge = {"source": "generated", "kinds": ["item"], "dir": str(work / "knowledge")}
    jobs = {"sasrec": {"model": {"name": "sasrec", "max_len": 8, "hidden_size": 16, "inner_size": 32},
                       "sequence": {"max_len": 8, "interactions": "all"}},
            "confrec": {"model": {"name": "confrec", "embedding_dim": 16}},  # LightGCN + a content branch
            "deepfm": {"model": {"name": "deepfm", "embedding_dim": 4, "hidden_units": [16]}}}
    for name, job in jobs.items():
        cfg = {"data": data, **job, "knowledge": knowledge, "output_dir": f"runs/{name}",
               "trainer": {"epochs": 2, "batch_size": 32, "progress": False}}
        (work / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        res = CliRunner().invoke(app, ["train", "--config", f"{name}.yaml"])
        assert res.exit_code == 0, res.output
        assert (work / "runs" / name / "model").is_dir() and (work / "runs" / name / "job.json").is_file()

    # 4. recommend: CLI JSON for a batch, Python for one user; titles on, seen items off
    seen = {u: set(d.columns["item_id"][d.columns["user_id"] == u]) for u in ("cust-001", "cust-002")}
    for name in jobs:
        res = CliRunner().invoke(app, ["recommend", "--model-dir", f"runs/{name}", "--user", "cust-001",
                                       "--user", "cust-002", "--k", "3", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert set(out) == {"cust-001", "cust-002"}
        for u, recs in out.items():
            assert recs and all(r["title"] and r["title"].split(" no. ")[0] in ("Tea", "Coffee") for r in recs)
            assert not {r["item"] for r in recs} & seen[u]
            assert all(r["info"]["description"].startswith("A ") for r in recs)
        model = llmrec.load(work / "runs" / name)
        one = model.recommend("cust-001", k=3)
        assert [r.item for r in one] == [r["item"] for r in out["cust-001"]]
    assert not (work / "memory").exists()
