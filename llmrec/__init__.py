"""llmrec: LLM-augmented recommendation and personalization.

The front door (``llmrec.api``): ``check``, ``dataset``, ``train``, ``load``, ``extract``, ``Memory``;
deeper modules stay importable. Names load on first use, so ``import llmrec`` (and the CLI) start fast."""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"check": "llmrec.api", "dataset": "llmrec.api", "train": "llmrec.api", "load": "llmrec.api",
            "extract": "llmrec.api", "Recommender": "llmrec.api", "Recommendation": "llmrec.api",
            "Memory": "llmrec.memory.api"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmrec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
