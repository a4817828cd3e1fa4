"""Data: the embedded synthetic world, MovieLens-100K and LoCoMo loaders."""
from llmrec.data.schema import DataFormatError, RecData
from llmrec.data.synthetic import SyntheticConfig, generate_world

__all__ = ["DataFormatError", "RecData", "SyntheticConfig", "generate_world"]
