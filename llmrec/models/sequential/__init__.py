"""The sequential family: next item from a user's ordered history (importing this package registers its
models)."""
from llmrec.models.sequential import gru4rec, sasrec  # noqa: F401
