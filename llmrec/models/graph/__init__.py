"""The graph collaborative-filtering family (importing this package registers its models)."""
from llmrec.models.graph import cigf, confrec, l2q, lightgcn, mf, multigccf  # noqa: F401
