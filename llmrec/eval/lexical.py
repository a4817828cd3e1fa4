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
