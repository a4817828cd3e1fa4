"""The one benchmark result writer: JSON with the command, versions, machine and seed that produced it."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    import numpy
    import torch

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for mod in ("transformers", "faiss", "sentence_transformers"):
        try:
            env[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    return env


def write_result(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        **payload,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float))
    os.replace(tmp, path)
    return path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (benchmarks run headless), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
