"""Thread hygiene: one place that sets how many threads torch, OpenMP and BLAS use.

Several torch processes on one machine each spinning every core oversubscribe it (measured: the demo's
extraction fell from ~140 to 4 tokens/s on a busy 2-core machine). ``configure_threads`` sets the count once:
the argument, else ``$LLMREC_THREADS``, else ``$OMP_NUM_THREADS`` (before it was read, runs started
with ``OMP_NUM_THREADS=1`` still gave torch 2 threads each, and four benchmarks on 2 cores crawled), else the
cores this process may run on (``os.sched_getaffinity``, which honours taskset / cgroup CPU sets). On a shared machine, give each job its share:
``LLMREC_THREADS=1 llmrec ...`` for N jobs on N cores."""
from __future__ import annotations

import os
import resource
import sys

from llmrec.errors import ConfigError

_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None = None) -> int:
    """The thread count: the argument, else ``$LLMREC_THREADS``, else ``$OMP_NUM_THREADS``, else the available
    cores."""
    if threads is None:
        env = os.environ.get("LLMREC_THREADS")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ConfigError(f"LLMREC_THREADS: expected a positive integer, got {env!r}") from None
    if threads is None:  # an OMP_NUM_THREADS the user set is honoured (torch would otherwise get every core)
        omp = os.environ.get("OMP_NUM_THREADS", "")
        return int(omp) if omp.isdigit() and int(omp) >= 1 else available_cores()
    if threads < 1:
        raise ConfigError(f"threads: must be >= 1, got {threads}")
    return threads


def configure_threads(threads: int | None = None) -> int:
    """Set torch / OpenMP / BLAS threads (before torch is imported: the environment; after: torch itself)."""
    n = resolve_threads(threads)
    explicit = threads is not None or "LLMREC_THREADS" in os.environ
    for var in _VARS:
        if explicit or var not in os.environ:
            os.environ[var] = str(n)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    return n


def rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB: ``VmHWM`` of ``/proc/self/status``, which belongs to
    the process's own address space. ``getrusage(...).ru_maxrss`` is not used: Linux carries it across
    fork + exec, so a child spawned by a 3 GiB parent reports >= 3 GiB however little it used itself.
    Falls back to ``ru_maxrss`` where ``/proc`` is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
