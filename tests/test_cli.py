import pytest
import json

from typer.testing import CliRunner

from llmrec.cli import app


@pytest.mark.slow
def test_quickstart_end_to_end_tiny(tmp_path):
    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, [
        "quickstart", "--users", "24", "--items", "20", "--impressions", "30", "--max-new-tokens", "6",
        "--seeds", "1", "--out", str(out), "--work-dir", str(tmp_path / "k"), "--dtype", "float32",
    ])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"deepfm", "deepfm+knowledge"}
    for v in report["variants"].values():
        assert 0.0 <= v["test_auc_mean"] <= 1.0 and v["test_logloss_mean"] > 0
    assert [e["generated"] for e in report["extraction"]] == [20, 24]
    assert "deepfm+knowledge" in res.output
    # second run: knowledge comes from the cache
    res = CliRunner().invoke(app, [
        "quickstart", "--users", "24", "--items", "20", "--impressions", "30", "--max-new-tokens", "6",
        "--seeds", "1", "--out", str(out), "--work-dir", str(tmp_path / "k"), "--dtype", "float32",
    ])
    assert res.exit_code == 0, res.output
    assert [e["generated"] for e in json.loads(out.read_text())["extraction"]] == [0, 0]


def test_generate_command():
    res = CliRunner().invoke(app, ["generate", "What is the capital of France?", "--max-new-tokens", "10"])
    assert res.exit_code == 0, res.output
    row = json.loads(next(x for x in res.output.splitlines() if x.startswith("{")))
    assert "Paris" in row["text"]


def test_train_and_evaluate_commands(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"""
data:
  source: synthetic
  synthetic: {{n_users: 60, n_items: 50, impressions_per_user: 30}}
model: {{name: ipnn, hidden_units: [16]}}
trainer: {{epochs: 2, batch_size: 256, progress: false}}
output_dir: {tmp_path / 'run'}
""")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["model"]["name"] == "ipnn" and 0 < result["test"]["auc"] < 1
    res = CliRunner().invoke(app, ["evaluate", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output[res.output.index("{"):])
    assert ev["test"]["auc"] == result["test"]["auc"]


def test_config_with_unknown_key_names_it(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {name: deepfm, hiden_units: [8]}\n")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg)])
    assert res.exit_code != 0
    assert "hiden_units" in str(res.exception)
