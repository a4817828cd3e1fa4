"""The graph collaborative-filtering family (importing this package registers its models)."""
from llmrec.models.graph import mf  # noqa: F401
