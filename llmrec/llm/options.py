"""Backend-specific options: ``LLMConfig.options`` is validated by the chosen backend's own typed config, so
every option of every backend is reachable from a config file and a misspelt one is an error naming it."""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmrec.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


def backend_config(config_cls: type[C], config: Any, **common: Any) -> C:
    """``config_cls`` from the common ``LLMConfig`` fields given as ``common`` and ``config.options``."""
    clash = sorted(set(common) & set(config.options))
    if clash:
        raise ConfigError(f"llm.options.{clash[0]}: set it as llm.{clash[0]}, not as an option")
    try:
        return config_cls.model_validate({**common, **config.options})
    except ValidationError as e:
        loc = ".".join(str(x) for x in e.errors()[0]["loc"])
        raise ConfigError(f"llm.options.{loc}: {e.errors()[0]['msg']} ({config.backend} backend)") from None
