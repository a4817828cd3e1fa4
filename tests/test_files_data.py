"""Your own data (`source: files`): any column names, string ids kept, the time column parsed and used for
order, items / users files joined, only declared columns as features, and every mistake one line naming the
file, row and column; `llmrec data check` reports what is used and what is ignored."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.data.files import FilesConfig, check_files, load_files
from llmrec.data.registry import DataConfig, load_data, split_rows
from llmrec.data.schema import DataFormatError
from llmrec.errors import MissingFileError

EVENTS = """customer,sku,ts,stars,device,note
c1,p1,2024-01-01T10:00:00,5,web,hi
c1,p2,2024-01-02T10:00:00,3,app,
c2,p1,2024-01-01T09:00:00,4,web,x
c2,p3,2024-01-03T09:00:00,2,app,y
c3,p2,2024-01-05,5,web,z
"""
ITEMS = """sku,name,brand,tags,blurb
p1,Red shoe,acme,shoes|red,A bright running shoe
p2,Blue hat,zed,hats,
p3,Green bag,acme,bags|green,A roomy bag
"""
USERS = """customer,segment,bio
c1,gold,likes running
c2,silver,
c3,gold,collects hats
"""


@pytest.fixture
def export(tmp_path):
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "users.csv").write_text(USERS)
    return tmp_path


def spec(root, **over) -> dict:
    base = {"interactions": {"path": str(root / "events.csv")},
            "columns": {"user": "customer", "item": "sku", "time": "ts", "rating": "stars"},
            "features": {"device": "categorical"},
            "items": {"path": str(root / "items.csv"), "id": "sku", "title": "name",
                      "features": {"brand": "categorical", "tags": "multi_value", "blurb": "text"}},
            "users": {"path": str(root / "users.csv"), "id": "customer",
                      "features": {"segment": "categorical", "bio": "text"}},
            "domain": "products"}
    base.update(over)
    return base


def test_a_company_export_loads_with_its_own_names(export):
    data = load_files(FilesConfig.model_validate(spec(export)))
    c = data.columns
    assert list(c["user_id"]) == ["c1", "c1", "c2", "c2", "c3"] and c["item_id"][3] == "p3"  # ids as given
    assert c["timestamp"][2] < c["timestamp"][0] < c["timestamp"][1]  # parsed ISO times, not file order
    assert list(c["label"]) == [1, 0, 1, 0, 1]  # stars >= 4
    # declared columns only; item and user columns joined onto each row by id
    assert data.fields == {"user_id": "categorical", "item_id": "categorical", "device": "categorical",
                           "brand": "categorical", "tags": "multi_hot", "segment": "categorical"}
    assert "note" not in c and c["tags"][0] == ("shoes", "red") and c["brand"][3] == "acme"
    # what knowledge prompts read: every item and user, the same keys for all (templates fill everywhere)
    assert data.item_info["p1"] == {"title": "Red shoe", "category": "acme", "description": "A bright running shoe",
                                    "blurb": "A bright running shoe"}
    assert data.item_info["p2"] == {"title": "Blue hat", "category": "zed", "description": "", "blurb": ""}
    assert data.user_info["c3"] == {"profile": "collects hats", "bio": "collects hats"}
    assert data.user_info["c2"] == {"profile": "segment silver", "bio": ""}
    assert data.domain == "products" and data.name == "events"
    # the chronological split follows the mapped time column: the earliest interaction trains
    tr, va, te = split_rows(data, DataConfig(source="files", files=spec(export), split=(0.6, 0.2, 0.2)))
    assert list(tr) == [2, 0, 1] and list(te) == [4]


def test_the_same_files_in_tsv_jsonl_and_parquet_load_the_same(export):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [line.split(",") for line in EVENTS.strip().splitlines()]
    (export / "events.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    (export / "events.jsonl").write_text("\n".join(json.dumps(dict(zip(rows[0], r))) for r in rows[1:]))
    pq.write_table(pa.table({h: [r[k] for r in rows[1:]] for k, h in enumerate(rows[0])}), export / "events.parquet")
    ref = load_files(FilesConfig.model_validate(spec(export)))
    for name in ("events.tsv", "events.jsonl", "events.parquet"):
        d = load_files(FilesConfig.model_validate(spec(export, interactions={"path": str(export / name)})))
        for k in ref.columns:
            assert list(d.columns[k]) == list(ref.columns[k]), (name, k)


def test_without_a_time_column_file_order_must_be_said(export):
    s = spec(export, columns={"user": "customer", "item": "sku", "rating": "stars"})
    with pytest.raises(ValueError, match="columns.time: name the time column, or set file_order_is_time"):
        FilesConfig.model_validate(s)
    data = load_files(FilesConfig.model_validate({**s, "file_order_is_time": True}))
    assert list(data.columns["timestamp"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("case, message", [
    ("folder", "is a folder; give the file itself"),
    ("delimiter", "is the delimiter ';'?"),
    ("missing column", "field 'timestamp': no such column"),
    ("bad time", "events.csv:3 field 'ts': unparsable time 'yesterday'"),
    ("nan label", "events.csv:2 field 'clicked': 'nan' is not a finite number (label)"),
    ("unknown item", "events.csv:6 field 'sku': item 'p9' is not in"),
    ("ragged", "events.csv:3: 5 values for 6 columns"),
    ("no file", "no such file"),
])
def test_every_mistake_is_one_line_naming_file_row_and_column(export, case, message):
    s = spec(export)
    events = export / "events.csv"
    if case == "folder":
        s["interactions"] = {"path": str(export)}
    elif case == "delimiter":
        events.write_text(EVENTS.replace(",", ";"))
    elif case == "missing column":
        s["columns"] = {**s["columns"], "time": "timestamp"}
    elif case == "bad time":
        events.write_text(EVENTS.replace("2024-01-02T10:00:00", "yesterday"))
    elif case == "nan label":
        events.write_text(EVENTS.replace("stars", "clicked").replace(",5,", ",nan,", 1))
        s["columns"] = {"user": "customer", "item": "sku", "time": "ts", "label": "clicked"}
    elif case == "unknown item":
        events.write_text(EVENTS.replace("c3,p2", "c3,p9"))
    elif case == "ragged":
        events.write_text(EVENTS.replace("c1,p2,2024-01-02T10:00:00,3,app,", "c1,p2,2024-01-02T10:00:00,3,app"))
    elif case == "no file":
        s["items"] = {**s["items"], "path": str(export / "nope.csv")}
    with pytest.raises((DataFormatError, MissingFileError)) as e:
        load_files(FilesConfig.model_validate(s))
    text = str(e.value)
    assert message in text and "\n" not in text


def test_check_reports_used_ignored_missing_and_duplicates(export):
    (export / "events.csv").write_text(EVENTS + "c1,p1,2024-01-01T10:00:00,5,web,again\n")
    rep = check_files(FilesConfig.model_validate(spec(export)))
    assert (rep.rows, rep.users, rep.items, rep.positives, rep.duplicates) == (6, 3, 3, 4, 1)
    assert rep.ignored[str(export / "events.csv")] == ["note"] and rep.errors == []
    assert rep.missing["events.csv:note"] == 1 and rep.missing["items.csv:blurb"] == 1
    assert rep.time_unsorted_rows == 2 and rep.items_without_text == 0


def test_data_check_cli_prints_the_report_and_fails_on_errors(export):
    cfg = export / "job.yaml"
    cfg.write_text(
        "data:\n  source: files\n  files:\n    interactions: {path: ./events.csv}\n"
        "    columns: {user: customer, item: sku, time: ts, rating: stars}\n"
        "    items: {path: ./items.csv, id: sku, title: name}\n")
    res = CliRunner().invoke(app, ["data", "check", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "rows 5, users 3, items 3" in res.output and "ignored (not declared) ['device', 'note']" in res.output
    res = CliRunner().invoke(app, ["data", "check", str(cfg), "--set", "data.files.columns.time=when"])
    assert res.exit_code == 1 and "field 'when': no such column" in res.output


@pytest.mark.parametrize("model, knowledge", [("deepfm", False), ("lightgcn", False), ("sasrec", False),
                                              ("deepfm", True), ("sasrec", True)])
def test_own_files_train_a_ctr_a_graph_and_a_sequential_model(tmp_path, model, knowledge):
    """The files feed every family's view through the one training job (a tiny export, one epoch), with the
    items file's text as knowledge (MiniLM over each item's title and description)."""
    from llmrec.train_job import TrainJobConfig, prepare, train_prepared

    rng = np.random.default_rng(0)
    lines = ["who,what,when,score,channel"]
    for n in range(600):
        u, i = rng.integers(0, 30), rng.integers(0, 40)
        lines.append(f"u{u},sku-{i},{1_700_000_000 + 3600 * n},{rng.integers(1, 6)},{'web' if n % 3 else 'app'}")
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "items.csv").write_text("what,title,kind,about\n" + "".join(
        f"sku-{i},Item {i},k{i % 4},a {'red' if i % 2 else 'blue'} thing\n" for i in range(40)))
    files = {"interactions": {"path": str(tmp_path / "log.csv")},
             "columns": {"user": "who", "item": "what", "time": "when", "rating": "score"},
             "features": {"channel": "categorical"},
             "items": {"path": str(tmp_path / "items.csv"), "id": "what", "title": "title",
                       "features": {"kind": "categorical", "about": "text"}}}
    extra = {"sequence": {"max_len": 8, "interactions": "all"}} if model == "sasrec" else {}
    small = {"sasrec": {"max_len": 8, "hidden_size": 8, "inner_size": 16}, "lightgcn": {"embedding_dim": 8},
             "deepfm": {"embedding_dim": 4, "hidden_units": [8]}}[model]
    if knowledge:
        extra["knowledge"] = {"source": "text", "kinds": ["item"]}
    job = TrainJobConfig.model_validate({"data": {"source": "files", "files": files}, "model": {"name": model, **small},
                                         "trainer": {"epochs": 1, "batch_size": 64, "progress": False}, **extra})
    p = prepare(job)
    if knowledge:
        vec = p.context.item_vectors if model == "sasrec" else None
        assert vec is None or (vec.shape[1] == 384 and np.abs(vec[1:]).sum(1).min() > 0)  # every item has text
    _, result = train_prepared(job, p)
    metric = "auc" if model == "deepfm" else "ndcg@10"
    assert 0 <= result["test"][metric] <= 1


def _extraction_yaml(export, template: str, **extra) -> "Path":
    (export / "my_item.txt").write_text(template)
    cfg = export / "extract.yaml"
    lines = ["data:", "  source: files", "  files:", "    interactions: {path: ./events.csv}",
             "    columns: {user: customer, item: sku, time: ts, rating: stars}",
             "    items: {path: ./items.csv, id: sku, title: name, features: {brand: categorical, blurb: text}}",
             "kinds: [item]", "prompts: {item: ./my_item.txt}", "encoder: none"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_extraction_refuses_a_prompt_variable_the_items_do_not_carry(export):
    from llmrec.errors import ConfigError
    from llmrec.knowledge.job import load_extraction_config, run_extraction

    cfg = load_extraction_config(_extraction_yaml(export, "Item {title} costs {price}."))
    assert cfg.prompts["item"] == str(export / "my_item.txt")  # ./ resolved against the YAML
    with pytest.raises(ConfigError, match=r"prompts.item: .*my_item.txt uses \['price'\].*'blurb'"):
        run_extraction(cfg)  # before any model is loaded


@pytest.mark.slow
def test_extract_config_runs_your_prompt_over_your_items(export):
    """`llmrec extract --config` on a company export: the bundled LLM answers your template, filled with
    your items file's columns, for every item of the interactions."""
    from llmrec.jobs import read_shard

    out = export / "knowledge"
    cfg = _extraction_yaml(export, "system: Be brief.\n---\nProduct: {title} by {category}. {blurb}\nWho buys it?",
                           out_dir=str(out), max_new_tokens=8)
    res = CliRunner().invoke(app, ["extract", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    rows = read_shard(out / "item.jsonl")
    assert set(rows) == {"p1", "p2", "p3"} and all(r["text"].strip() for r in rows.values())


def test_recbole_atomic_files_under_any_name_and_without_a_users_file(tmp_path):
    (tmp_path / "shop.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                         "7\t1\t5\t100\n7\t2\t2\t50\n8\t1\t4\t70\n")
    (tmp_path / "shop.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                        "1\tToy Story\tAnimation Comedy\n2\tHeat\tAction\n")
    data = load_files(FilesConfig.model_validate({
        "interactions": {"path": str(tmp_path / "shop.inter"), "format": "tsv"},
        "columns": {"user": "user_id:token", "item": "item_id:token", "time": "timestamp:float",
                    "rating": "rating:float"},
        "items": {"path": str(tmp_path / "shop.item"), "format": "tsv", "id": "item_id:token",
                  "title": "movie_title:token_seq", "features": {"class:token_seq": "multi_value"}},
        "separator": " "}))
    assert list(data.columns["label"]) == [1, 0, 1] and data.columns["class:token_seq"][0] == ("Animation", "Comedy")
    assert data.item_info["1"]["title"] == "Toy Story" and data.name == "shop"
