"""The plain user,item,timestamp format: CSV / TSV / Parquet, labels or ratings, named errors, and sequences
built from it (ties and short users counted)."""
import pytest

from llmrec.data.interactions import load_interactions
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.views import SequenceViewConfig, sequence_stats, sequence_view
from llmrec.errors import LLMRecError

CSV = """user,item,timestamp,rating,genre
u1,a,1,5,x
u1,b,2,3,y
u1,c,2,4,x
u1,d,4,5,y
u2,a,1,4,x
u2,b,2,5,y
u3,a,1,5,x
"""


def test_csv_and_tsv_load_with_ratings_as_labels(tmp_path):
    p = tmp_path / "inter.csv"
    p.write_text(CSV)
    d = load_interactions(p)
    assert len(d) == 7 and d.columns["label"].tolist() == [1, 0, 1, 1, 1, 1, 1]
    assert d.fields == {"user_id": "categorical", "item_id": "categorical", "genre": "categorical"}
    t = tmp_path / "inter.tsv"
    t.write_text(CSV.replace(",", "\t"))
    assert load_interactions(t).columns["item_id"].tolist() == d.columns["item_id"].tolist()
    via_config = load_data(DataConfig(source="interactions", path=str(p)))
    assert len(via_config) == 7


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "inter.parquet"
    pq.write_table(pa.table({"user": ["u1", "u1"], "item": ["a", "b"], "timestamp": [1.0, 2.0]}), p)
    d = load_interactions(p)
    assert d.columns["item_id"].tolist() == ["a", "b"] and d.columns["label"].tolist() == [1, 1]


def test_without_a_timestamp_file_order_is_time(tmp_path):
    p = tmp_path / "inter.csv"
    p.write_text("user,item,behaviour\nu1,c,buy\nu1,a,view\nu2,a,buy\nu1,b,buy\n")
    d = load_interactions(p)
    assert d.columns["timestamp"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert d.columns["behaviour"].tolist() == ["buy", "view", "buy", "buy"]
    space, train, valid, test = sequence_view(d, config=SequenceViewConfig(interactions="all", max_len=5))
    inv = {v: k for k, v in space.items.items()}
    assert inv[int(test.target[0])] == "b" and inv[int(valid.target[0])] == "a"  # u1 in file order: c a b


@pytest.mark.parametrize("text,match", [
    ("", "empty file"),
    ("user,timestamp\nu1,1\n", "field 'item': missing column"),
    ("user,item,timestamp\n", "no interaction rows"),
    ("user,item,timestamp\nu1,a,soon\n", ":2 field 'timestamp': not a number"),
    ("user,item,timestamp\nu1,a,1\n,b,2\n", ":3 field 'user': empty id"),
    ("user,item,timestamp,label\nu1,a,1,2\n", "field 'label': must be 0 or 1"),
    ("user,item,timestamp\nu1,a\n", ":2: 2 values for 3 columns"),
])
def test_bad_files_name_the_line_and_column(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(LLMRecError, match=match):
        load_interactions(p)


def test_missing_file_and_path(tmp_path):
    with pytest.raises(LLMRecError, match="no such interaction file"):
        load_interactions(tmp_path / "nope.csv")
    with pytest.raises(LLMRecError, match="data.path"):
        load_data(DataConfig(source="interactions"))


def test_sequences_from_the_plain_format_count_ties_and_short_users(tmp_path):
    p = tmp_path / "inter.csv"
    p.write_text(CSV)
    d = load_interactions(p)
    cfg = SequenceViewConfig(interactions="all", max_len=5)
    s = sequence_stats(d, cfg)
    assert s.users == 1 and s.dropped_users == 2 and s.dropped_interactions == 3 and s.tied_timestamps == 1
    space, train, valid, test = sequence_view(d, config=cfg)
    # u1 in time order, the tie (b, c at t=2) in file order: a b c d -> test target d, valid target c
    inv = {v: k for k, v in space.items.items()}
    assert inv[int(test.target[0])] == "d" and inv[int(valid.target[0])] == "c"
    with pytest.raises(Exception, match="max_len"):
        SequenceViewConfig(max_len=0)


def test_a_folder_given_as_the_interaction_file_is_one_line(tmp_path):
    from llmrec.cli import main

    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"data: {{source: interactions, path: {tmp_path}}}\nmodel: {{name: deepfm}}\n")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["train", "--config", str(cfg)])
    lines = [x for x in err.getvalue().splitlines() if x.startswith("error")]
    assert rc != 0 and len(lines) == 1 and "is a folder; give the interaction file itself" in lines[0]


def test_a_time_column_under_another_name_is_refused_not_used_as_a_feature(tmp_path):
    from llmrec.data.interactions import load_interactions
    from llmrec.data.schema import DataFormatError

    f = tmp_path / "log.csv"
    f.write_text("user,item,ts\nu1,i1,3\nu1,i2,1\n")
    with pytest.raises(DataFormatError, match=r"log.csv:1 field 'ts': looks like the time column.*columns.time: ts"):
        load_interactions(f)
