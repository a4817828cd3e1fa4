"""Data augmentation for sequential recommenders: RSIR (recursive self-improvement with fidelity control) and
DiffuASR (diffusion-generated prefixes for short sequences)."""
from llmrec.augment.diffuasr import DiffuASRConfig, run_diffuasr
from llmrec.augment.rsir import RSIRConfig, generate_continuations, run_rsir

__all__ = ["DiffuASRConfig", "RSIRConfig", "generate_continuations", "run_diffuasr", "run_rsir"]
