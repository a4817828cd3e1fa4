"""One error tree for the whole framework. Every error names what is wrong (a field, a row, a file).

Each class also derives from the builtin exception callers already catch for that kind of problem
(``ValueError`` for bad input, ``KeyError`` for an unknown name, ``RuntimeError`` for a failing backend),
so ``except ValueError`` keeps working while ``except LLMRecError`` catches everything llmrec raises."""
from __future__ import annotations


class LLMRecError(Exception):
    """Base of every error llmrec raises on purpose."""


class ConfigError(LLMRecError, ValueError):
    """A config value or key is invalid; the message starts with the field's dotted path."""


class DataError(LLMRecError, ValueError):
    """Input data is malformed; the message names the file, row or column."""


class UnknownNameError(LLMRecError, KeyError):
    """A name looked up in a registry (model, backend, retriever, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BackendError(LLMRecError, RuntimeError):
    """An external backend (HTTP endpoint, engine, subprocess) failed."""


class StoreError(LLMRecError, ValueError):
    """A persisted store or checkpoint is used wrongly or does not match; the message names the field or file."""


class NotFoundError(LLMRecError, KeyError):
    """Something looked up by id or name is absent (a stored id, a user, a column, a vector)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingFileError(LLMRecError, FileNotFoundError):
    """A file or folder llmrec needs is absent; the message names it."""
