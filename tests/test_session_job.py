"""Session models (AHC-KNN, SKNN, V-SKNN) through the training job, not only their benchmark: any data set
with a time column is cut into sessions by pauses, the model is fitted, saved (its training sessions),
loaded (refitted) and recommends for a user's latest session or for a session of item ids, from Python and
the CLI."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import llmrec
from llmrec.cli import app
from llmrec.errors import ConfigError, DataError
from tests.conftest import shared

PAIRS = 12  # item a{n} is followed by b{n} in a session; c* items are popular noise


@pytest.fixture
def clicks(tmp_path):
    """A click log (own column names, ISO times): 300 visits of 2-4 clicks an hour apart or more; each visit
    opens with a{n}, goes on to b{n}, and may add one of three popular c items."""
    rng = np.random.default_rng(0)
    rows, t = ["visitor,product,at"], 1_700_000_000
    for v in range(300):
        user, n = f"v{v % 60}", int(rng.integers(0, PAIRS))
        visit = [f"a{n}", f"b{n}"] + ([f"c{int(rng.integers(0, 3))}"] if rng.random() < 0.7 else [])
        for item in visit:
            t += 60
            rows.append(f"{user},{item},{np.datetime64(t, 's')}")
        t += 7200  # the next visit starts after a pause of two hours: a new session
    (tmp_path / "clicks.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def job(root, **over) -> dict:
    return {"data": {"source": "files", "files": {"interactions": {"path": str(root / "clicks.csv")},
                                                  "columns": {"user": "visitor", "item": "product", "time": "at"}}},
            "model": {"name": "ahc_knn"}, "session": {"min_item_support": 2, "cutoff": 5},
            "output_dir": str(root / "run"), **over}


def test_a_session_model_trains_saves_loads_and_recommends_on_your_files(clicks):
    rec = llmrec.train(job(clicks))
    r = rec.result
    assert r["family"] == "session" and r["primary_metric"] == "hr@5"
    assert r["sessions"]["train"] > 200 and r["sessions"]["test"] >= 29  # 300 visits, a time split of 80/10/10
    # after a{n} the next click is b{n}: the neighbours know it; popularity alone would not (12 pairs)
    assert r["test"]["hr@5"] > 0.6, r["test"]
    assert (clicks / "run" / "model" / "sessions.npz").exists()

    loaded = llmrec.load(clicks / "run")
    assert [x.item for x in loaded.recommend_session(["a3"], k=1)] == ["b3"]
    after = loaded.recommend_session(["a3", "b3"], k=12)
    assert {"a3", "b3"}.isdisjoint(x.item for x in after)  # the session's own items are not recommended
    assert {x.item for x in after[:3]} == {"c0", "c1", "c2"}  # what follows a finished pair: the popular items
    # a user's recommendations follow their latest visit in the data, identical after a reload (a refit)
    assert [x.item for x in loaded.recommend("v7", k=5)] == [x.item for x in rec.recommend("v7", k=5)]
    assert rec.recommend("v7", k=5)[0].score == pytest.approx(loaded.recommend("v7", k=5)[0].score)


def test_the_cli_recommends_after_a_session_as_json(clicks):
    llmrec.train(job(clicks))
    res = CliRunner().invoke(app, ["recommend", "--model-dir", str(clicks / "run"), "--session", "a5", "--k", "2",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["session"][0]["item"] == "b5" and len(out["session"]) == 2
    both = CliRunner().invoke(app, ["recommend", "--model-dir", str(clicks / "run"), "--session", "a5", "--user", "v1"])
    assert both.exit_code != 0 and "not both" in both.output


def test_sessions_need_real_time(clicks):
    raw = job(clicks)
    raw["data"]["files"] = {**raw["data"]["files"], "columns": {"user": "visitor", "item": "product"},
                            "file_order_is_time": True}
    with pytest.raises(DataError, match="file_order_is_time: sessions are cut at pauses in real time"):
        llmrec.train(raw)


def test_session_models_refuse_knowledge_and_other_models_refuse_sessions(clicks, tmp_path):
    with pytest.raises(ConfigError, match="knowledge: ahc_knn is a session model; session models read no"):
        llmrec.train(job(clicks, knowledge={"source": "text", "kinds": ["item"]}))
    graph = llmrec.train({**job(clicks), "model": {"name": "mf", "embedding_dim": 4},
                          "trainer": {"epochs": 1, "progress": False}, "output_dir": str(tmp_path / "mf")})
    with pytest.raises(ConfigError, match="session: mf is a graph model"):
        graph.recommend_session(["a1"])


@pytest.mark.slow
def test_the_job_reproduces_the_session_benchmark_on_movielens(tmp_path):
    """The job on MovieLens-100K (1-hour pauses) sees the benchmark's sessions and gets its figure at the same
    settings (the benchmark's loader, fit and metric computed beside it)."""
    from llmrec.data.sessions import SessionConfig, load_sessions
    from llmrec.models import build_model
    from llmrec.models.session.base import next_click_metrics

    path = shared("ml-100k")
    rec = llmrec.train({"data": {"source": "movielens100k", "path": str(path)},
                        "model": {"name": "ahc_knn", "lam": 1.0, "decay": "div"}, "output_dir": str(tmp_path)})
    s = load_sessions(SessionConfig(source="movielens100k", path=str(path)))
    bench = build_model(None, {"name": "ahc_knn", "lam": 1.0, "decay": "div"}).fit(s.train, s.train_start, s.n_items)
    assert rec.result["test"] == next_click_metrics(bench, s, "test", 20)
    assert rec.result["sessions"] == {"train": len(s.train), "valid": len(s.valid), "test": len(s.test)}


def test_the_front_door_keeps_train_after_the_training_subpackage_is_imported():
    """``llmrec.train`` is the front door's function even when ``llmrec.train`` (the subpackage) was imported
    first, as the CLI and any code using the trainer do (the import system would set the attribute to the
    subpackage)."""
    import subprocess
    import sys

    code = ("from llmrec.train import Trainer\nimport llmrec.train.loop\nimport llmrec\n"
            "print(llmrec.train.__module__, llmrec.load.__module__, Trainer.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["llmrec.api", "llmrec.api", "llmrec.train.loop"]
