"""Evaluation goes through the maintained libraries: parity with sacrebleu / rouge-score / scipy /
scikit-learn called directly, and undefined statistics stay undefined (NaN -> "n/a (reason)")."""
import math

import pytest

from llmrec.eval.calibration import calibrate
from llmrec.eval.judge import Judgment
from llmrec.lexical import bleu, chrf, lexical_scores, rouge_1, rouge_l
from llmrec.stats import cohen_kappa, fmt_stat, spearman

PAIRS = [
    ("The Eiffel Tower is in Paris, France.", "The Eiffel Tower stands in Paris."),
    ("He moved to Lisbon in May 2023 with his cat.", "In May 2023 he moved to Lisbon."),
    ("completely unrelated words", "the cat sat on the mat"),
    ("Running runners ran quickly", "the runner runs quick"),
]


@pytest.mark.parametrize("pred,ref", PAIRS)
def test_lexical_metrics_equal_the_libraries(pred, ref):
    import sacrebleu
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False).score(ref, pred)
    assert rouge_1(pred, ref) == pytest.approx(sc["rouge1"].fmeasure)
    assert rouge_l(pred, ref) == pytest.approx(sc["rougeL"].fmeasure)
    assert bleu(pred, ref) == pytest.approx(sacrebleu.sentence_bleu(pred, [ref]).score)
    assert chrf(pred, ref) == pytest.approx(sacrebleu.sentence_chrf(pred, [ref]).score)
    s = lexical_scores(pred, ref)
    assert set(s) == {"rouge1", "rougeL", "bleu", "chrf", "token_f1"} and 0 <= s["token_f1"] <= 1


def test_statistics_equal_scipy_and_sklearn():
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    a, b = [1, 2, 2, 3, 4, 5, 3, 1], [2, 2, 3, 3, 4, 4, 1, 1]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    assert cohen_kappa(a, b, labels=[1, 2, 3, 4, 5]) == pytest.approx(cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5]))


def test_undefined_statistics_are_not_numbers():
    assert math.isnan(spearman([3, 3, 3, 3], [1, 2, 3, 4]))  # a constant judge has no rank correlation
    assert math.isnan(cohen_kappa([2, 2, 2], [2, 2, 2]))  # chance agreement is total: 0 / 0
    js = [Judgment("j", "faithfulness", 4.0, "", "Score: 4", "explicit") for _ in range(5)]
    r = calibrate(js, [1, 2, 3, 4, 4])
    assert r["spearman"] is None and "same score" in r["spearman_why"]
    assert fmt_stat(r["spearman"], r["spearman_why"]) == "n/a (the judge gave every item the same score)"
    assert fmt_stat(0.41234) == "0.412"
