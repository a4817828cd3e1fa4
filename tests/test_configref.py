"""docs/config-reference.md is generated from the typed configs (`llmrec docs config`): it must equal a fresh
generation, cover every registered model and every field of the job, and carry the source comments."""
from pathlib import Path

from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.configref import field_comments, reference
from llmrec.data.files import FilesConfig
from llmrec.train_job import TrainJobConfig
from llmrec.models import MODELS

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_reference_is_the_generated_one(tmp_path):
    out = tmp_path / "ref.md"
    res = CliRunner().invoke(app, ["docs", "config", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text() == (ROOT / "docs" / "config-reference.md").read_text(), \
        "docs/config-reference.md is stale: run `llmrec docs config --out docs/config-reference.md`"


def test_every_model_and_job_field_is_there_with_its_comment():
    text = reference()
    assert all(f"#### `{n}`" in text for n in MODELS.names())
    assert all(f"| `{f}` |" in text for f in TrainJobConfig.model_fields)
    notes = field_comments(FilesConfig)
    assert notes["positive_rating"].startswith("label = rating >= this") and "time_format" in notes
    assert "| `positive_rating` | float | `4.0` | label = rating >= this" in text
