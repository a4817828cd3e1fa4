"""Data augmentation for sequential recommenders: RSIR (recursive self-improvement with fidelity control)."""
from llmrec.augment.rsir import RSIRConfig, generate_continuations, run_rsir

__all__ = ["RSIRConfig", "generate_continuations", "run_rsir"]
