"""Saving, loading and exporting trained models (every registered model; ONNX for the impression families).

A saved model is a folder: the model's state as its family's view writes it (``model.safetensors``, the
weights; session models: ``sessions.npz``, the training sessions a load refits on), ``encoder.json`` (the
fitted feature encoder, or the id maps of ranking families; graph models add ``graph.npz``, their training
edges) and ``config.json`` (family, model name and its resolved config). It is written to a temporary folder and renamed into place. ``export_onnx`` writes an ONNX graph
over plain tensors and checks its outputs against PyTorch.

Folders saved before the model registry (``{"kind": "ctr", "model": {"name": ..., <every model's
fields>}}``) still load: the fields the named model does not have are dropped, and STAR's
``multi_scenario`` block is lifted into its config."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.data.views import ItemSpace
from llmrec.errors import MissingFileError
from llmrec.families import view_of
from llmrec.models import MODELS


def _legacy_config(old: dict) -> dict:
    """A pre-registry flat model config -> ``{name, <fields of that model>}``."""
    name = old.get("name", "deepfm")
    flat = dict(old)
    flat.update(flat.pop("multi_scenario", None) or {} if name == "star" else {})
    fields = MODELS.get(name).config.model_fields
    return {k: v for k, v in flat.items() if k in fields}


def save_model(path: str | Path, model: nn.Module, encoder: FeatureEncoder | ItemSpace) -> Path:
    """Save a model (safetensors) with its config and encoder so ``load_model`` rebuilds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=path.parent))
    try:
        entry = MODELS.get(model.config.name)
        view = view_of(entry.family)
        view.save_state(tmp, model)
        view.save_context(tmp, encoder)
        (tmp / "config.json").write_text(json.dumps(
            {"kind": entry.family, "model": model.config.name, "config": model.config.model_dump(mode="json")},
            indent=2))
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


def load_model(path: str | Path) -> tuple[nn.Module, FeatureEncoder | ItemSpace]:
    """A saved model and its encoder (current and earlier folder formats)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise MissingFileError(f"{path / 'config.json'}: missing; not a saved llmrec model")
    meta = json.loads((path / "config.json").read_text())
    config = meta["config"] if "config" in meta else _legacy_config(meta["model"])
    view = view_of(MODELS.get(config["name"]).family)
    for f in (view.state_file, "encoder.json"):
        if not (path / f).exists():
            raise MissingFileError(f"{path / f}: missing; not a saved llmrec model")
    encoder = view.load_context(path)
    return view.load_state(path, encoder, config), encoder


class _TensorInputs(nn.Module):
    """Adapts a ``Batch``-taking model to positional tensors (what ONNX graphs take)."""

    def __init__(self, model: nn.Module, seq_names: list[str], dense_names: list[str]) -> None:
        super().__init__()
        self.model, self.seq_names, self.dense_names = model, seq_names, dense_names

    def forward(self, cat, num, num_bucket, *rest):
        seq = dict(zip(self.seq_names, rest[: len(self.seq_names)]))
        dense = dict(zip(self.dense_names, rest[len(self.seq_names):]))
        return torch.sigmoid(self.model(Batch(cat=cat, num=num, num_bucket=num_bucket, seq=seq, dense=dense)))


def export_onnx(model: nn.Module, sample: Batch, path: str | Path, atol: float = 1e-5) -> dict:
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
