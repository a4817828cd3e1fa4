"""Data augmentation for sequential recommenders: RSIR (recursive self-improvement with fidelity control) and
DiffuASR (diffusion-generated prefixes for short sequences). The algorithms live here; the training rounds
that use them (``run_rsir``, ``run_diffuasr``) are in ``llmrec.experiments.augment``."""
from llmrec.augment.diffuasr import DiffuASRConfig, ddim_sample, round_to_items, train_diffusion
from llmrec.augment.rsir import RSIRConfig, generate_continuations

__all__ = ["DiffuASRConfig", "RSIRConfig", "ddim_sample", "generate_continuations", "round_to_items",
           "train_diffusion"]
