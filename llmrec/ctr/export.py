"""Saving, loading and exporting trained CTR models.

A saved model is a folder: ``model.safetensors`` (weights), ``encoder.json`` (fitted feature encoders)
and ``config.json`` (the model config). It is written to a temporary folder and renamed into place.
``export_onnx`` writes an ONNX graph over plain tensors and checks its outputs against PyTorch."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.models import CTRModel, ModelConfig, build_model


def save_model(path: str | Path, model: CTRModel, encoder: FeatureEncoder) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "encoder.json").write_text(encoder.to_json())
        (tmp / "config.json").write_text(json.dumps({"kind": "ctr", "model": model.config.model_dump()}, indent=2))
        if path.exists():
            old = path.with_name(path.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_model(path: str | Path) -> tuple[CTRModel, FeatureEncoder]:
    path = Path(path)
    for f in ("model.safetensors", "encoder.json", "config.json"):
        if not (path / f).exists():
            raise FileNotFoundError(f"{path / f}: missing; not a saved llmrec CTR model")
    encoder = FeatureEncoder.from_json((path / "encoder.json").read_text())
    config = ModelConfig(**json.loads((path / "config.json").read_text())["model"])
    model = build_model(encoder, config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.eval()
    return model, encoder


class _TensorInputs(nn.Module):
    """Adapts a ``Batch``-taking model to positional tensors (what ONNX graphs take)."""

    def __init__(self, model: CTRModel, seq_names: list[str], dense_names: list[str]) -> None:
        super().__init__()
        self.model, self.seq_names, self.dense_names = model, seq_names, dense_names

    def forward(self, cat, num, num_bucket, *rest):
        seq = dict(zip(self.seq_names, rest[: len(self.seq_names)]))
        dense = dict(zip(self.dense_names, rest[len(self.seq_names):]))
        return torch.sigmoid(self.model(Batch(cat=cat, num=num, num_bucket=num_bucket, seq=seq, dense=dense)))


def export_onnx(model: CTRModel, sample: Batch, path: str | Path, atol: float = 1e-5) -> dict:
    """Export to ONNX and check that onnxruntime reproduces PyTorch's probabilities on ``sample``."""
    import onnxruntime as ort

    seq_names, dense_names = sorted(sample.seq), sorted(sample.dense)
    wrapper = _TensorInputs(model, seq_names, dense_names).eval()  # eval: no dropout, running BN stats
    args = (sample.cat, sample.num, sample.num_bucket, *[sample.seq[k] for k in seq_names],
            *[sample.dense[k] for k in dense_names])
    names = ["cat", "num", "num_bucket", *[f"seq_{k}" for k in seq_names], *[f"dense_{k}" for k in dense_names]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(wrapper, args, str(path), input_names=names, output_names=["prob"],
                      dynamic_axes={n: {0: "batch"} for n in [*names, "prob"]}, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: a.numpy() for n, a in zip(names, args) if n in {i.name for i in sess.get_inputs()}}
    onnx_out = sess.run(["prob"], feeds)[0]
    with torch.no_grad():
        torch_out = wrapper(*args).numpy()
    diff = float(np.max(np.abs(onnx_out - torch_out))) if len(torch_out) else 0.0
    if diff > atol:
        raise AssertionError(f"ONNX output differs from PyTorch by {diff:.2e} (> {atol})")
    return {"path": str(path), "max_abs_diff": diff, "rows": len(torch_out)}
