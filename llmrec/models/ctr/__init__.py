"""The CTR family: one file per model (importing this package registers them all)."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
