"""The one experiment runner: items run in order, each finished one kept in `<output>.partial.json` so a
killed run resumes where it stopped and a later run over more seeds trains only the new ones (only under the
same settings), mean / std over seeds, and the final write with provenance and plot."""
import json

import pytest

from llmrec.config import StrictConfig
from llmrec.experiments.runner import Runner, mean_std


class Exp(StrictConfig):
    name: str = "toy"
    output: str | None = None
    seeds: list[int] = [1, 2]
    scale: float = 1.0


def test_a_killed_run_resumes_only_what_is_missing(tmp_path):
    exp = Exp(output=str(tmp_path / "toy.json"))
    calls = []

    def one(label, seed, fail_at=None):
        if (label, seed) == fail_at:
            raise RuntimeError("killed")
        calls.append((label, seed))
        return {"auc": exp.scale * (0.5 + 0.1 * seed + (0.05 if label == "b" else 0.0)), "note": "x"}

    items = [(lab, lab, s) for lab in ("a", "b") for s in exp.seeds]
    with pytest.raises(RuntimeError):
        Runner(exp, "k1").run(items, lambda lab, s: one(lab, s, fail_at=("b", 1)))
    assert calls == [("a", 1), ("a", 2)] and (tmp_path / "toy.partial.json").exists()
    runs = Runner(exp, "k1").run(items, one)
    assert calls[2:] == [("b", 1), ("b", 2)]  # the first two came from the partial file
    assert Runner(exp, "k2").run(items, one) and len(calls) == 8  # other settings: nothing reused
    s = mean_std(runs)
    assert s["a"]["auc_mean"] == pytest.approx(0.65) and s["b"]["auc_std"] == pytest.approx(0.05)
    assert "note_mean" not in s["a"]
    plotted = []
    path = Runner(exp, "k2").write({"summary": s}, plot=plotted.append)
    saved = json.loads(path.read_text())
    assert saved["summary"] == s and saved["seeds"] == [1, 2] and saved["config"]["name"] == "toy"
    assert "git_commit" in saved and plotted == [tmp_path / "toy.png"]
    again = Runner(exp, "k2").run(items + [("a", "a", 3)], one)  # one more seed later: only it runs
    assert calls[8:] == [("a", 3)] and len(again["a"]) == 3


class Variant(StrictConfig):
    label: str
    width: int = 8


def test_editing_one_variant_reruns_only_that_variant(tmp_path):
    exp = Exp(output=str(tmp_path / "v.json"), seeds=[1])
    calls = []

    def one(v, seed):
        calls.append((v.label, v.width))
        return {"auc": 0.5 + v.width / 100}

    a, b = Variant(label="a"), Variant(label="b")
    Runner(exp, "k").run([(v.label, v, 1) for v in (a, b)], one)
    wider = Variant(label="b", width=16)
    runs = Runner(exp, "k").run([(v.label, v, 1) for v in (a, wider)], one)
    assert calls == [("a", 8), ("b", 8), ("b", 16)] and runs["b"][0]["auc"] == pytest.approx(0.66)
