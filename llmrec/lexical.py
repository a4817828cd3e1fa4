"""Lexical answer metrics. Exact match and token F1 are SQuAD's (its normalization, max over references);
ROUGE comes from Google's ``rouge-score`` and BLEU / chrF from ``sacrebleu``, so the numbers are the ones
those libraries (and papers using them) report: ROUGE on 0-1, BLEU and chrF on sacrebleu's 0-100."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """SQuAD normalization: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals a normalized reference, else 0.0."""
    p = normalize(prediction)
    return float(any(p == normalize(r) for r in references))


def _f1(pred: list[str], ref: list[str]) -> float:
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1 of the prediction against the best-matching reference."""
    if not references:
        raise ValueError("references: at least one reference answer is needed")
    pred = normalize(prediction).split()
    return max(_f1(pred, normalize(r).split()) for r in references)


_ROUGE = None


def _rouge(prediction: str, reference: str, key: str) -> float:
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    return float(_ROUGE.score(reference, prediction)[key].fmeasure)


def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F1 by Google's ``rouge-score`` (its tokenizer: lowercase alphanumerics, no stemming), 0-1."""
    return _rouge(prediction, reference, "rouge1")


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence) by ``rouge-score``, 0-1."""
    return _rouge(prediction, reference, "rougeL")


def bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU by ``sacrebleu`` (13a tokenization, exponential smoothing), on sacrebleu's 0-100 scale."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, [reference]).score)


def chrf(prediction: str, reference: str) -> float:
    """chrF (Popovic 2015; character 6-grams, beta 2) by ``sacrebleu``, 0-100."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, [reference]).score)


def lexical_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-L, BLEU, chrF and token F1 of a prediction against one reference."""
    return {"rouge1": rouge_1(prediction, reference), "rougeL": rouge_l(prediction, reference),
            "bleu": bleu(prediction, reference), "chrf": chrf(prediction, reference),
            "token_f1": token_f1(prediction, [reference])}
