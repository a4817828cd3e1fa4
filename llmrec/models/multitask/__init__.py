"""The multi-task / multi-scenario family (importing this package registers its models)."""
from llmrec.models.multitask import mmoe, star  # noqa: F401
