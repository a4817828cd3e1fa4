"""ScaleFreeCTR-style embedding cache (papers.md §21): the full table in host memory (fp32, or int8 with a
per-row scale), a fixed number of hot rows in fp32 on the training device (the GPU when there is one, else
a second CPU tier), rows moved between the two on demand.

Per batch (``forward``):

1. **VSI** (``dedup``): the batch's ids are deduplicated first, so each distinct row crosses from host to
   cache once; without it every occurrence of a missing id is copied (what a naive per-lookup gather
   moves). ``stats`` counts lookups, hits and transferred rows either way.
2. Missing rows get a cache slot: free slots first, then the least recently used slots not needed by this
   batch; an evicted row is written back to the host table (quantized again when the host is int8) with its
   optimizer state.
3. The rows for the next batch are gathered from host memory in a background thread while this batch
   trains (``prefetch``; the training loop announces the next batch). Cache membership changes only in
   step 2, on the training thread, before the prefetch starts, so what the thread reads is what step 2 of
   the next batch needs.

The cache updates itself (``apply_gradients``, called by the trainer after backward): plain SGD, Adagrad
or Adam per row, the optimizer state living with the row (in the cache while it is hot, on the host when
evicted). Adam's bias correction uses the table's global step, as ``RowAdam``. With SGD and an fp32 host,
N steps give exactly the parameters of plain single-table training (``tests/test_ctr_scale.py``)."""
from __future__ import annotations

import threading
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.rowopt import STATE_SLOTS, row_step
from llmrec.errors import ConfigError



class CacheConfig(StrictConfig):
    """Sizes and policies of the host/hot-row embedding cache."""
    cache_rows: int = Field(65536, ge=1)
    host_dtype: Literal["fp32", "int8"] = "fp32"
    device: str = "auto"  # auto: cuda when available, else cpu (a second CPU tier)
    dedup: bool = True  # VSI: transfer each distinct row once per batch
    prefetch: bool = True  # gather the next batch's rows in a background thread
    optimizer: Literal["sgd", "adagrad", "adam"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


class CachedEmbedding(nn.Module):
    """An embedding table of ``rows`` x ``dim`` held in host memory with a hot-row cache (module docstring).
    ``forward(ids)`` takes any shape of row ids and returns ``ids.shape + (dim,)``."""

    def __init__(self, rows: int, dim: int, config: CacheConfig, init_std: float = 1e-4) -> None:
        super().__init__()
        c = self.config = config
        if c.cache_rows < 1:
            raise ConfigError("cache.cache_rows: must be >= 1")
        dev = c.device if c.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.rows, self.dim, self.device_name = rows, dim, dev
        init = torch.randn(rows, dim) * init_std
        n_state = STATE_SLOTS[c.optimizer]
        try:
            if c.host_dtype == "int8":
                scale = init.abs().amax(1).clamp_min(1e-12) / 127
                self.register_buffer("host_codes", torch.round(init / scale[:, None]).to(torch.int8))
                self.register_buffer("host_scale", scale)
            else:
                self.register_buffer("host", init)
            self.register_buffer("host_state", torch.zeros(n_state, rows, dim))
            self.register_buffer("slot_of", torch.full((rows,), -1, dtype=torch.long))
        except RuntimeError as e:  # allocation failure
            raise ConfigError(f"cache: a host table of {rows} x {dim} does not fit in memory ({e})") from None
        try:
            self.cache = nn.Embedding(c.cache_rows, dim, sparse=True, device=dev)
            self.register_buffer("cache_state", torch.zeros(n_state, c.cache_rows, dim, device=dev))
        except RuntimeError as e:
            raise ConfigError(f"cache.cache_rows: {c.cache_rows} rows do not fit on {dev} ({e})") from None
        nn.init.zeros_(self.cache.weight)
        self.register_buffer("id_of", torch.full((c.cache_rows,), -1, dtype=torch.long))
        self.register_buffer("last_used", torch.zeros(c.cache_rows, dtype=torch.long))
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.clock = 0
        # lookups: rows a gather of every lookup would move; distinct_rows: after VSI's per-batch dedup (what
        # moves without a cache); transferred_rows: what actually crossed from host to cache
        self.stats = {"lookups": 0, "distinct_rows": 0, "hits": 0, "transferred_rows": 0, "evicted_rows": 0}
        self._next: torch.Tensor | None = None
        self._pending: tuple[threading.Thread, dict] | None = None

    # --- host access -----------------------------------------------------------------------------------
    def _host_rows(self, ids: torch.Tensor) -> torch.Tensor:
        if self.config.host_dtype == "int8":
            return self.host_codes[ids].float() * self.host_scale[ids, None]
        return self.host[ids]

    def _write_host(self, ids: torch.Tensor, values: torch.Tensor, state: torch.Tensor | None = None) -> None:
        if self.config.host_dtype == "int8":
            scale = values.abs().amax(1).clamp_min(1e-12) / 127
            self.host_codes[ids] = torch.round(values / scale[:, None]).to(torch.int8)
            self.host_scale[ids] = scale
        else:
            self.host[ids] = values
        if state is not None and state.shape[0]:
            self.host_state[:, ids] = state

    def full_table(self) -> torch.Tensor:
        """Every row's current value (host rows with the cached rows overlaid), fp32 on the CPU."""
        with torch.no_grad():
            table = self._host_rows(torch.arange(self.rows))
            held = self.id_of >= 0
            table[self.id_of[held].cpu()] = self.cache.weight[held].detach().cpu()
        return table

    def memory_bytes(self) -> dict[str, int]:
        """Bytes of the host table (with optimizer state) and of the cache."""
        host = (self.host_codes.numel() + 4 * self.host_scale.numel() if self.config.host_dtype == "int8"
                else 4 * self.host.numel())
        return {"host_table": host, "host_optimizer_state": 4 * self.host_state.numel(),
                "cache": 4 * self.cache.weight.numel(), "cache_optimizer_state": 4 * self.cache_state.numel()}

    # --- the batch's rows into the cache --------------------------------------------------------------
    def prefetch(self, ids: torch.Tensor | None) -> None:
        """Announce the ids of the next batch (None: none); their host rows are gathered in the background
        after this batch's rows are in place."""
        self._next = None if ids is None else ids.detach().to("cpu", dtype=torch.long)

    def _gather(self, ids: torch.Tensor, out: dict) -> None:
        uniq = torch.unique(ids) if self.config.dedup else ids.reshape(-1)
        missing = uniq[self.slot_of[uniq] < 0]
        out["ids"], out["rows"] = missing, self._host_rows(missing)
        out["state"] = self.host_state[:, missing] if self.host_state.shape[0] else None

    def _flat(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` flattened on the CPU; an id outside the table is a named error."""
        flat = ids.reshape(-1).to("cpu", dtype=torch.long)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.rows):
            bad = flat[(flat < 0) | (flat >= self.rows)][0]
            raise ConfigError(f"cache: row id {int(bad)} outside the table [0, {self.rows})")
        return flat

    def _ensure(self, ids: torch.Tensor) -> torch.Tensor:
        """Cache slots of ``ids`` (loading the missing rows); returns the slot of every id."""
        flat = self._flat(ids)
        self.stats["lookups"] += flat.numel()
        pre = None
        if self._pending is not None:
            thread, pre = self._pending
            thread.join()
            self._pending = None
        uniq = torch.unique(flat)
        self.stats["distinct_rows"] += len(uniq)
        cached = self.slot_of[uniq] >= 0
        self.stats["hits"] += int((self.slot_of[flat] >= 0).sum())
        need = uniq[~cached]
        if len(need):
            if len(uniq) > self.config.cache_rows:
                raise ConfigError(f"cache.cache_rows: a batch needs {len(uniq)} distinct rows, the cache holds "
                                  f"{self.config.cache_rows}")
            slots = self._free_slots(len(need), keep=self.slot_of[uniq[cached]])
            if pre is not None and torch.equal(torch.unique(pre["ids"]), need):
                moved_ids, rows, state = pre["ids"], pre["rows"], pre["state"]
            else:
                tmp: dict = {}
                self._gather(flat, tmp)
                moved_ids, rows, state = tmp["ids"], tmp["rows"], tmp["state"]
            self.stats["transferred_rows"] += len(moved_ids)
            # duplicates (no VSI) carry the same values: any one occurrence per id, in ``need`` order
            first = torch.empty(len(need), dtype=torch.long)
            first[torch.searchsorted(need, moved_ids)] = torch.arange(len(moved_ids))
            with torch.no_grad():
                self.cache.weight[slots] = rows[first].to(self.cache.weight.device)
                if state is not None:
                    self.cache_state[:, slots] = state[:, first].to(self.cache_state.device)
            self.id_of[slots] = need.to(self.id_of.device)
            self.slot_of[need] = slots.cpu()
        self.clock += 1
        slot = self.slot_of[flat]
        self.last_used[slot.to(self.last_used.device)] = self.clock
        if self.config.prefetch and self._next is not None and self.training:
            out: dict = {}
            th = threading.Thread(target=self._gather, args=(self._next, out), daemon=True)
            th.start()
            self._pending = (th, out)
        self._next = None
        return slot.view(ids.shape)

    def _free_slots(self, n: int, keep: torch.Tensor) -> torch.Tensor:
        free = (self.id_of < 0).nonzero().squeeze(1)
        if len(free) >= n:
            return free[:n]
        age = self.last_used.clone()
        age[self.id_of < 0] = -1  # free first
        age[keep.to(age.device)] = torch.iinfo(torch.long).max  # never evict this batch's rows
        victims = torch.topk(age, n, largest=False).indices
        old = victims[self.id_of[victims] >= 0]
        if len(old):
            ids = self.id_of[old].cpu()
            with torch.no_grad():
                self._write_host(ids, self.cache.weight[old].detach().cpu(), self.cache_state[:, old].cpu())
            self.slot_of[ids] = -1
            self.id_of[old] = -1
            self.stats["evicted_rows"] += len(old)
        return victims

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.read(ids)
        slots = self._ensure(ids).to(self.cache.weight.device)
        return self.cache(slots)

    @torch.no_grad()
    def read(self, ids: torch.Tensor) -> torch.Tensor:
        """Current rows of ``ids`` without changing what is cached (evaluation, serving): cached rows from
        the cache, the rest from the host table; any batch size."""
        flat = self._flat(ids)
        out = self._host_rows(flat).to(self.cache.weight.device)
        slot = self.slot_of[flat]
        hot = slot >= 0
        out[hot.to(out.device)] = self.cache.weight[slot[hot].to(out.device)]
        return out.view(*ids.shape, self.dim)

    # --- the table's own update ------------------------------------------------------------------------
    @torch.no_grad()
    def apply_gradients(self, lr: float) -> None:
        """Update the cached rows that got a gradient (row-wise SGD / Adagrad / Adam); clears the gradient."""
        g = self.cache.weight.grad
        if g is None:
            return
        self.cache.weight.grad = None
        g = g.coalesce() if g.is_sparse else g.to_sparse()
        rows, vals = g._indices()[0], g._values()
        c = self.config
        self.step_count += 1
        u = row_step(self.cache_state, rows, vals, c.optimizer, int(self.step_count), c.betas, c.eps)
        self.cache.weight.index_add_(0, rows, u, alpha=-lr)
