"""``llmrec recommend``: a trained model's top-k for one user, for the sequential, graph and CTR families."""
import numpy as np
import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data.registry import load_data
from llmrec.train_job import TrainJobConfig, run_training
from llmrec.recommend import item_columns, recommend

SEQ = {"source": "synthetic_sequences", "sequences": {"n_users": 40, "n_items": 30, "max_length": 12, "follow": 0.9}}
WORLD = {"source": "synthetic", "synthetic": {"n_users": 40, "n_items": 30, "impressions_per_user": 20}}


def _train(tmp_path, name, data, **extra):
    job = TrainJobConfig(data=data, model={"name": name, **extra}, output_dir=str(tmp_path / name),
                         sequence={"max_len": 12, "interactions": "all"},
                         trainer={"epochs": 2, "batch_size": 16, "progress": False, "learning_rate": 0.01})
    run_training(job)
    return job


@pytest.mark.slow
def test_sequential_top_k_follows_the_history_and_skips_seen(tmp_path):
    job = _train(tmp_path, "sasrec", SEQ, max_len=12, hidden_size=16, inner_size=32)
    data = load_data(job.data)
    users = np.asarray(data.columns["user_id"]).astype(str)
    seen = set(np.asarray(data.columns["item_id"]).astype(str)[users == "3"])
    recs = recommend(tmp_path / "sasrec" / "model", job, "3", k=5)
    assert len(recs) == 5 and not seen & {r.item for r in recs}
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True) and recs[0].title
    with_seen = recommend(tmp_path / "sasrec" / "model", job, "3", k=30, include_seen=True)
    assert seen & {r.item for r in with_seen}
    with pytest.raises(Exception, match="user: 'nobody'"):
        recommend(tmp_path / "sasrec" / "model", job, "nobody")
    with pytest.raises(Exception, match="k: must be at least 1"):
        recommend(tmp_path / "sasrec" / "model", job, "3", k=0)


@pytest.mark.slow
def test_graph_and_ctr_top_k(tmp_path):
    job = _train(tmp_path, "mf", WORLD, embedding_dim=8)
    recs = recommend(tmp_path / "mf" / "model", job, "5", k=4)
    assert len(recs) == 4 and len({r.item for r in recs}) == 4
    job = _train(tmp_path, "deepfm", WORLD, hidden_units=[16], embedding_dim=4)
    data = load_data(job.data)
    assert {"category", "price", "quality"} <= set(item_columns(data)) and "age" not in item_columns(data)
    recs = recommend(tmp_path / "deepfm" / "model", job, "5", k=30, include_seen=True)
    assert len(recs) == 30 and all(0 <= r.score <= 1 for r in recs)  # every catalogue item, a probability
    fewer = recommend(tmp_path / "deepfm" / "model", job, "5", k=30)
    users = np.asarray(data.columns["user_id"]).astype(str)
    assert len(fewer) == 30 - len(set(np.asarray(data.columns["item_id"]).astype(str)[users == "5"]))


def test_recommend_cli(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"data: {{source: synthetic_sequences, sequences: {{n_users: 30, n_items: 25, max_length: 10}}}}\n"
                   f"model: {{name: gru4rec, embedding_size: 8, hidden_size: 8}}\n"
                   f"sequence: {{max_len: 10, interactions: all}}\n"
                   f"trainer: {{epochs: 1, batch_size: 8, progress: false}}\noutput_dir: {tmp_path / 'out'}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--config", str(cfg)]).exit_code == 0
    res = runner.invoke(app, ["recommend", "--config", str(cfg), "--user", "2", "--k", "3"])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 3 and lines[0].lstrip().startswith("1.")
    bad = runner.invoke(app, ["recommend", "--config", str(cfg), "--user", "zz"])
    assert bad.exit_code != 0 and "user: 'zz' is not a user" in str(bad.exception)
