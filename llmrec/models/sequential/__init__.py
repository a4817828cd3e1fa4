"""The sequential family: next item from a user's ordered history (importing this package registers its
models)."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
