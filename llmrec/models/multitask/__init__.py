"""The multi-task / multi-scenario family (importing this package registers its models)."""
from llmrec.registry import import_all

MODULES = import_all(__name__)  # every model file of the family registers itself
