"""llmrec: LLM-augmented recommendation and personalization.

The front door (``llmrec.api``): ``check``, ``dataset``, ``train``, ``load``, ``extract``, ``Memory``;
deeper modules stay importable. Names load on first use, so ``import llmrec`` (and the CLI) start fast."""
from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
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


class _FrontDoor(ModuleType):
    """``llmrec.train`` is both the front door's function and a subpackage (the training loop). Importing the
    subpackage would set the attribute to the module (the import system does so for every submodule), after
    which ``llmrec.train(config)`` fails; the front door keeps its names. The subpackage stays importable by
    its path (``from llmrec.train import Trainer``; ``import llmrec.train as m`` gives the function)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _FrontDoor
