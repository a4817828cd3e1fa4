"""Registries: implementations of one protocol, keyed by name (as mem0's factories).

    LLMS = Registry[Callable[[LLMConfig], LLM]]("llm backend")
    @LLMS.register("openai")
    def _openai(config): ...
    LLMS.get("openai")(config)

Adding an implementation is one registration next to its code, never an ``if`` chain elsewhere. Modules
that register lazily-imported implementations call ``Registry.add_lazy(name, "module:attr")`` so a
registry can list names without importing heavy optional dependencies."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

from llmrec.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects, with lazy entries (``module:attribute`` imported on first use) and named errors."""
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name``."""
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name`` (a duplicate name is an error)."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``module:attribute``, imported on first ``get``."""
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._lazy[name] = target

    def get(self, name: str) -> T:
        """The object registered as ``name`` (lazy entries imported now); ``UnknownNameError`` listing the names
        otherwise."""
        if name not in self._items and name in self._lazy:
            module, attr = self._lazy.pop(name).split(":")
            self._items[name] = getattr(importlib.import_module(module), attr)
        if name not in self._items:
            raise UnknownNameError(f"{self.kind} {name!r} is not registered (have {self.names()})")
        return self._items[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_all(package: str) -> list[str]:
    """Import every module and subpackage of ``package`` (names not starting with ``_``), so that whatever
    they register (models, families' views) is registered by adding a file, with no list to edit."""
    pkg = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    for name in sorted(names):
        importlib.import_module(f"{package}.{name}")
    return sorted(names)
