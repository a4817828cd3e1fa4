"""The one result writer: JSON with the command, git commit, environment, resolved config and seeds that
produced it (every benchmark and experiment writes through it), and headless plotting."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from llmrec.io import write_json_atomic


def git_commit() -> str | None:
    """The checkout's HEAD commit (with ``+dirty`` when tracked files differ), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def environment() -> dict[str, Any]:
    """Machine facts recorded with every result: Python, torch, CPU count, threads, platform."""
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


def provenance(config: Any = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """Command, git commit, time, environment, config and seeds of a result."""
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "config": config,
        "seeds": seeds,
    }


def write_result(path: str | Path, payload: dict[str, Any], config: Any = None,
                 seeds: list[int] | None = None) -> Path:
    """Atomically write ``payload`` with its provenance (command, git commit, environment, config, seeds)."""
    return write_json_atomic(path, {**provenance(config, seeds), **payload})


def result_path(name: str, output: str | None, out: str | Path | None) -> Path:
    """Where an experiment writes its JSON: ``out`` (CLI), else the config's ``output``, else
    ``eval/results/<name>.json``; its folder is created."""
    path = Path(out or output or f"eval/results/{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (benchmarks run headless), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Lay out ``fig``, save it to ``path`` (PNG, 110 dpi, tight) and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    fig.clf()
    pyplot().close(fig)


def grouped_bars(ax, categories: list[str], series: dict[str, list[float]], legend_size: int = 8,
                 ylabel: str = "score") -> None:
    """Bars grouped by category, one bar per series in each group; the value axis starts at zero and is
    labelled, and the legend sits beside the axes so it never covers a bar (save with ``bbox_inches="tight"``)."""
    import numpy as np

    w = 0.8 / max(1, len(series))
    for j, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(categories)) + (j - len(series) / 2 + 0.5) * w, values, w, label=name)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def save_bar_chart(path: str | Path, categories: list[str], series: dict[str, list[float]], ylabel: str,
                   title: str = "", xlabel: str = "", size: tuple[float, float] = (7, 3.8)) -> None:
    """One ``grouped_bars`` figure with its labels, saved to ``path`` (the benchmarks' plots)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    grouped_bars(ax, categories, series, ylabel=ylabel)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
