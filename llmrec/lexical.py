"""Lexical answer metrics: SQuAD-style normalization, exact match and token F1 (max over references)."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    p = normalize(prediction)
    return float(any(p == normalize(r) for r in references))


def _f1(pred: list[str], ref: list[str]) -> float:
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    if not references:
        raise ValueError("references: at least one reference answer is needed")
    pred = normalize(prediction).split()
    return max(_f1(pred, normalize(r).split()) for r in references)


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _prf(overlap: float, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_pred, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_1(prediction: str, reference: str) -> float:
    """ROUGE-1 F1 over normalized tokens."""
    p, r = normalize(prediction).split(), normalize(reference).split()
    return _prf(sum((Counter(p) & Counter(r)).values()), len(p), len(r))


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence) over normalized tokens."""
    p, r = normalize(prediction).split(), normalize(reference).split()
    return _prf(_lcs(p, r), len(p), len(r))


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(prediction: str, reference: str, max_n: int = 4) -> float:
    """Sentence BLEU with add-one smoothing of the n-gram precisions (Lin & Och 2004) and brevity penalty."""
    import math

    p, r = normalize(prediction).split(), normalize(reference).split()
    if not p or not r:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        pn, rn = _ngrams(p, n), _ngrams(r, n)
        match, total = sum((pn & rn).values()), max(sum(pn.values()), 0)
        logs.append(math.log((match + (n > 1)) / (total + (n > 1))) if total + (n > 1) > 0 and match + (n > 1) > 0
                    else float("-inf"))
    if any(x == float("-inf") for x in logs):
        return 0.0
    bp = 1.0 if len(p) > len(r) else math.exp(1 - len(r) / len(p))
    return bp * math.exp(sum(logs) / max_n)


def chrf(prediction: str, reference: str, max_n: int = 6, beta: float = 2.0) -> float:
    """chrF (Popovic 2015): character n-gram F-beta, n = 1..6, averaged over n, spaces removed."""
    p, r = "".join(prediction.split()), "".join(reference.split())
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        pn = Counter(p[i : i + n] for i in range(len(p) - n + 1))
        rn = Counter(r[i : i + n] for i in range(len(r) - n + 1))
        if not pn or not rn:
            continue
        m = sum((pn & rn).values())
        precisions.append(m / sum(pn.values()))
        recalls.append(m / sum(rn.values()))
    if not precisions:
        return 0.0
    P, R = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if P + R == 0 else (1 + beta**2) * P * R / (beta**2 * P + R)


def lexical_scores(prediction: str, reference: str) -> dict[str, float]:
    return {"rouge1": rouge_1(prediction, reference), "rougeL": rouge_l(prediction, reference),
            "bleu": bleu(prediction, reference), "chrf": chrf(prediction, reference),
            "token_f1": token_f1(prediction, [reference])}
