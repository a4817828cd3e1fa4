import json
import tempfile
from pathlib import Path

import pytest

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
    assert set(report["variants"]) == {"deepfm", "deepfm+knowledge", "deepfm+text knowledge", "deepfm+LLM option scores"}
    for v in report["variants"].values():
        assert 0.0 <= v["test_auc_mean"] <= 1.0 and v["test_logloss_mean"] > 0
    assert [e["generated"] for e in report["extraction"]] == [20, 24]
    assert "deepfm+knowledge" in res.output
    # a fresh work dir holds every cache of the run, so all 20 items are scored here (none from LLMREC_HOME)
    assert report["option_scoring"]["item"]["scored"] == 20 and report["option_scoring"]["options"]
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "k" / "options").glob("*.npz")) == ["item", "user"]
    assert sorted(p.name.split(".")[0] for p in (tmp_path / "k" / "text").glob("*.npz")) == ["item", "user"]
    for name in ("deepfm+knowledge", "deepfm+text knowledge", "deepfm+LLM option scores"):  # a plain verdict
        v = report["variants"][name]["verdict"]
        assert v.startswith(("helped", "did not help")) and v in res.output
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


def test_models_command_lists_every_registered_model_as_json():
    from llmrec.models import MODELS

    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == MODELS.names()
    assert all({"family", "task", "defaults", "types"} <= set(r) for r in rows)
    res = CliRunner().invoke(app, ["models", "--family", "ctr"])
    assert res.exit_code == 0 and "dcnv2" in res.output and "star" not in res.output


@pytest.mark.parametrize("model", ["optinter", "star", "mf", "autoint_plus"])
def test_train_command_trains_models_of_every_family(tmp_path, model):
    cfg = tmp_path / "job.yaml"
    extra = {"optinter": "search_epochs: 1, hash_buckets: 500, hidden_units: [16]", "star": "hidden_units: [16]",
             "mf": "embedding_dim: 8", "autoint_plus": "hidden_units: [16], attention_layers: 1"}[model]
    cfg.write_text(f"""
data:
  source: synthetic
  synthetic: {{n_users: 60, n_items: 50, impressions_per_user: 30}}
model: {{name: {model}, {extra}}}
trainer: {{epochs: 2, batch_size: 256, progress: false}}
output_dir: {tmp_path / 'run'}
""")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--set", "trainer.epochs=1"])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["model"]["name"] == model and len(result["history"]) == 1
    assert result["primary_metric"] in result["test"]
    res = CliRunner().invoke(app, ["evaluate", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output[res.output.index("{"):])
    assert ev["test"][result["primary_metric"]] == pytest.approx(result["test"][result["primary_metric"]], abs=1e-9)


def test_experiment_command_writes_a_reproducible_result(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("""
name: tiny
seeds: [1, 2]
isolate: false
datasets:
  s: {data: {synthetic: {n_users: 50, n_items: 40, impressions_per_user: 25}}, trainer: {epochs: 1, batch_size: 256}}
variants:
  - model: {name: fm}
  - {label: "dcnv2:stacked", model: {name: dcnv2, structure: stacked, hidden_units: [16]}}
""")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["experiment", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["seeds"] == [1, 2] and r["config"]["name"] == "tiny" and "git_commit" in r and r["environment"]
    v = r["datasets"]["s"]["variants"]
    assert set(v) == {"fm", "dcnv2:stacked"} and [x["seed"] for x in v["fm"]["runs"]] == [1, 2]
    assert r["jobs"]["s/dcnv2:stacked"]["model"]["structure"] == "stacked"  # the fully resolved config
    assert r["jobs"]["s/dcnv2:stacked"]["model"]["cross_layers"] == 3  # from the defaults file
    assert out.with_suffix(".png").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("structure: stacked", "structure: stacked, crosslayers: 2"))
    res = CliRunner().invoke(app, ["experiment", str(bad)])
    assert res.exit_code != 0 and "model.crosslayers: Extra inputs" in str(res.exception)


ROOT_CFG = Path(__file__).resolve().parents[1] / "configs" / "deepfm_ml100k.yaml"


def test_set_typos_are_blamed_on_the_override_with_a_suggestion():
    """A misspelt `--set` key names the override, not the config file, and suggests the field; a model name
    in the wrong case suggests the registered one."""
    from llmrec.errors import ConfigError
    from llmrec.train_job import load_job_config

    with pytest.raises(ConfigError) as e:
        load_job_config("deepfm_ml100k", ["trainer.epoch=3"])
    assert str(e.value) == "--set trainer.epoch=3: trainer.epoch: Extra inputs are not permitted (did you mean " \
                           "'trainer.epochs'?)"
    with pytest.raises(ConfigError, match=r"--set model.name=DeepFM: .*unknown model 'DeepFM' \(did you mean 'deepfm'\?"):
        load_job_config("deepfm_ml100k", ["model.name=DeepFM"])
    bad = ROOT_CFG.read_text().replace("batch_size:", "batch_sise:", 1)  # a typo in the file: the file is named
    (ROOT_TMP := Path(tempfile.mkdtemp())).joinpath("job.yaml").write_text(bad)
    with pytest.raises(ConfigError, match=r"job.yaml: trainer.batch_sise: Extra inputs are not permitted \(did you mean "
                                          r"'trainer.batch_size'\?\)"):
        load_job_config(ROOT_TMP / "job.yaml")
