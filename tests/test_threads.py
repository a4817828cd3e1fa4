"""Process resources: thread counts and memory readings."""
import subprocess
import sys

import numpy as np
import pytest

from llmrec.errors import ConfigError
from llmrec.threads import available_cores, peak_rss_mb, resolve_threads, rss_mb


def test_child_peak_rss_is_its_own_not_the_parents():
    """A child started by a large parent reports its own peak (ru_maxrss would report the parent's)."""
    big = np.ones(400 * 2 ** 20 // 8)  # 400 MiB touched in this process
    assert rss_mb() > 400 and peak_rss_mb() >= rss_mb() - 1
    out = subprocess.run([sys.executable, "-c", "from llmrec.threads import peak_rss_mb; print(peak_rss_mb())"],
                         capture_output=True, text=True, check=True).stdout
    assert float(out) < 200 < peak_rss_mb()
    del big


def test_thread_count_resolution(monkeypatch):
    """An explicit count wins, else $LLMREC_THREADS, else $OMP_NUM_THREADS; a bad value names the variable."""
    monkeypatch.setenv("LLMREC_THREADS", "3")
    assert resolve_threads(2) == 2 and resolve_threads() == 3
    monkeypatch.delenv("LLMREC_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's OpenMP setting, before the core count
    assert resolve_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert resolve_threads() == available_cores()
    monkeypatch.setenv("LLMREC_THREADS", "many")
    with pytest.raises(ConfigError, match="LLMREC_THREADS"):
        resolve_threads()
