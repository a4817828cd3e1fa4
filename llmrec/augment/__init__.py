"""Data augmentation for sequential recommenders: RSIR (recursive self-improvement with fidelity control) and
DiffuASR (diffusion-generated prefixes for short sequences). The algorithms live here, and their training
procedures for any sequential model (``llmrec.augment.rounds``), which the training job's ``augment`` option and
the ``augment`` experiment kind call."""
from llmrec.augment.diffuasr import DiffuASRConfig, ddim_sample, round_to_items, train_diffusion
from llmrec.augment.rsir import RSIRConfig, generate_continuations, generate_sequences

__all__ = ["DiffuASRConfig", "RSIRConfig", "ddim_sample", "generate_continuations", "generate_sequences", "round_to_items",
           "train_diffusion"]
