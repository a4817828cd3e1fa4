"""The results page (`llmrec docs results`): built from result JSONs, real data before synthetic worlds, and a
result whose experiment config changed after the commit it ran at marked stale."""
import json
import subprocess

from llmrec.resultspage import entries, page


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_results_page_orders_real_data_first_and_marks_stale(tmp_path):
    (tmp_path / "configs" / "experiments").mkdir(parents=True)
    (tmp_path / "eval" / "results").mkdir(parents=True)
    for name in ("real", "world"):
        (tmp_path / "configs" / "experiments" / f"{name}.yaml").write_text(f"name: {name}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "one")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    summary = {"variants": {"lightgcn": {"primary_metric": "ndcg@10", "ndcg@10_mean": 0.3, "ndcg@10_std": 0.01,
                                         "ndcg@20_mean": 0.32, "ndcg@20_std": 0.02}}, "peers": {}}
    for name, source in (("real", "movielens100k"), ("world", "synthetic")):
        (tmp_path / "eval" / "results" / f"{name}.json").write_text(json.dumps({
            "command": f"llmrec experiment {name}", "git_commit": commit, "created": "2026-12-07T00:00:00",
            "seeds": [1, 2, 3], "config": {"datasets": {"d": {"data": {"source": source}}}},
            "datasets": {"d": summary}}))
    (tmp_path / "configs" / "experiments" / "real.yaml").write_text("name: real\nseeds: [1]\n")
    _git(tmp_path, "commit", "-qam", "two")
    es = {e.name: e for e in entries(tmp_path)}
    assert es["real"].stale.startswith("real.yaml changed since") and not es["world"].stale
    assert es["world"].synthetic and not es["real"].synthetic
    text = page(tmp_path)
    assert text.index("### real (stale)") < text.index("## Synthetic worlds") < text.index("### world")
    assert "| d / lightgcn | ndcg@10 0.3000 ± 0.0100, ndcg@20 0.3200 ± 0.0200 |" in text
