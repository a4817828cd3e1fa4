"""Shared layers every CTR model is composed from: field embeddings, FM interaction, MLP."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from llmrec.config import StrictConfig
from llmrec.errors import ConfigError
from llmrec.ctr.adaptor import AdaptorConfig, KnowledgeAdaptor
from llmrec.ctr.cache import CacheConfig, CachedEmbedding
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.quant import QuantConfig, QuantEmbedding
from llmrec.ctr.torchrec_table import TorchRecTable


class AutoDis(nn.Module):
    """AutoDis numerical embeddings (Guo et al., KDD 2021): per field, H meta-embeddings; the value is
    softly assigned to them: h = LeakyReLU(w x), logits = W h + alpha h, p = softmax(logits / tau),
    e = sum_h p_h ME[h]. ``skip=False`` gives the single-matmul variant (logits = w x)."""

    def __init__(self, n_fields: int, dim: int, buckets: int = 20, temperature: float = 1.0,
                 alpha: float = 0.1, skip: bool = True, init_std: float = 1e-4) -> None:
        super().__init__()
        self.temperature, self.alpha, self.skip = temperature, alpha, skip
        self.meta = nn.Parameter(torch.randn(n_fields, buckets, dim) * init_std)
        self.w = nn.Parameter(torch.randn(n_fields, buckets) * (1.0 / buckets ** 0.5))
        self.W = nn.Parameter(torch.randn(n_fields, buckets, buckets) * (1.0 / buckets ** 0.5))

    def assignments(self, x: torch.Tensor) -> torch.Tensor:  # [B, F] -> [B, F, H]
        """Soft assignment of every numeric value to the meta-embeddings ([B, F] -> [B, F, H])."""
        logits = x.unsqueeze(-1) * self.w
        if self.skip:
            h = nn.functional.leaky_relu(logits)
            logits = torch.einsum("bfh,fgh->bfg", h, self.W) + self.alpha * h
        return torch.softmax(logits / self.temperature, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, F] -> [B, F, dim]
        return torch.einsum("bfh,fhd->bfd", self.assignments(x), self.meta)


class TableConfig(StrictConfig):
    """Which kind of table holds the categorical embeddings (any CTR model): ``dense`` (one
    ``nn.Embedding``), ``cached`` (full table in host memory, hot rows in a cache: ``llmrec.ctr.cache``) or
    ``quantized`` (b-bit codes with step sizes, LPT / ALPT: ``llmrec.ctr.quant``) or ``torchrec`` (a TorchRec
    EmbeddingBagCollection, shardable: ``llmrec.ctr.torchrec_table``)."""
    kind: Literal["dense", "cached", "quantized", "torchrec"] = "dense"
    cache: CacheConfig = CacheConfig()
    quant: QuantConfig = QuantConfig()


def row_fields(encoder: FeatureEncoder) -> torch.Tensor:
    """The categorical field of every row of the shared table (rows after the last field's start: its)."""
    starts = torch.tensor(sorted(encoder.offsets().values()), dtype=torch.long)
    rows = torch.arange(max(1, encoder.n_categorical_rows()))
    return (torch.searchsorted(starts, rows, right=True) - 1).clamp_(min=0) if len(starts) else rows * 0


def make_table(rows: int, dim: int, config: TableConfig | None, init_std: float = 1e-4,
               groups: torch.Tensor | None = None) -> nn.Module:
    """The categorical table a ``TableConfig`` names (``forward(ids) -> ids.shape + (dim,)``); ``groups``:
    the field of every row (a quantized table's per-field step sizes)."""
    if config is None or config.kind == "dense":
        return nn.Embedding(rows, dim)  # FieldEmbedding initializes it with its other tables (same RNG order as v1)
    if config.kind == "quantized":
        return QuantEmbedding(rows, dim, config.quant, groups=groups, init_std=init_std)
    if config.kind == "torchrec":
        sizes = torch.bincount(groups, minlength=int(groups.max()) + 1).tolist()
        return TorchRecTable(sizes, dim, init_std=init_std)
    return CachedEmbedding(rows, dim, config.cache, init_std=init_std)


class FieldEmbedding(nn.Module):
    """Turns a ``Batch`` into per-field vectors ``[B, F, dim]``.

    Categorical fields share one table (offsets per field): one lookup for all of them.
    Numerical fields, by ``numeric``: "scalar" (value x a learned vector per field), "bucket" (an
    embedding per equal-frequency bucket) or "autodis" (soft discretization, ``AutoDis``).
    Multi-hot: mean of token vectors. Dense (e.g. LLM knowledge): a ``KnowledgeAdaptor``
    (linear projection by default, KAR's hybrid experts with ``adaptor.kind="hea"``); features named in
    ``exclude_dense`` are left to the model (LLM4MSR's meta-networks read them instead)."""

    def __init__(self, encoder: FeatureEncoder, dim: int, init_std: float = 1e-4, numeric: str = "scalar",
                 autodis_buckets: int = 20, autodis_temperature: float = 1.0,
                 adaptor: AdaptorConfig | None = None, exclude_dense: frozenset[str] = frozenset(),
                 table: TableConfig | None = None) -> None:
        super().__init__()
        if numeric not in ("scalar", "bucket", "autodis"):
            raise ValueError(f"numeric_embedding: {numeric!r} is not one of scalar, bucket, autodis")
        self.dim, self.numeric = dim, numeric
        self.table = make_table(max(1, encoder.n_categorical_rows()), dim, table, init_std,
                                groups=row_fields(encoder) if table is not None and table.kind in ("quantized", "torchrec")
                                else None)
        # where each categorical field's rows start, then the row count (Helen groups rows by field)
        self.register_buffer("field_starts", torch.tensor(
            [*sorted(encoder.offsets().values()), max(1, encoder.n_categorical_rows())], dtype=torch.long),
            persistent=False)
        n_num = len(encoder.numerical)
        self.num_vectors = nn.Parameter(torch.empty(n_num if numeric == "scalar" else 0, dim))
        sizes = [s.buckets + 1 for s in encoder.numerical] if numeric == "bucket" else []
        self.register_buffer("bucket_offsets", torch.tensor([sum(sizes[:i]) for i in range(len(sizes))],
                                                            dtype=torch.long), persistent=False)
        # with a quantized categorical table the bucket rows are quantized too (their own step per field)
        quant = table is not None and table.kind == "quantized"
        self.bucket_table = ((make_table(max(1, sum(sizes)), dim, table, init_std,
                                         groups=torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)))
                              if quant and sizes else nn.Embedding(max(1, sum(sizes)), dim))
                             if numeric == "bucket" else None)
        self.autodis = (AutoDis(n_num, dim, autodis_buckets, autodis_temperature, init_std=init_std)
                        if numeric == "autodis" and n_num else None)
        self.seq_tables = nn.ModuleDict({
            s.name: nn.EmbeddingBag(encoder.cardinalities()[s.name], dim, mode="mean", padding_idx=0)
            for s in encoder.multi_hot
        })
        dense = {s.name: s.dim for s in encoder.dense if s.name not in exclude_dense}
        self.dense_adaptor = KnowledgeAdaptor(dense, dim, adaptor) if dense else None
        self.n_fields = len(encoder.categorical) + len(encoder.numerical) + len(encoder.multi_hot) + len(dense)
        # a dense table is initialized here with the others; cached / quantized / torchrec tables did it themselves
        own = set() if isinstance(self.table, nn.Embedding) else {id(p) for p in self._categorical_weights()}
        for p in self.embedding_tables():
            if id(p) not in own:
                nn.init.normal_(p, std=init_std)

    def _categorical_weights(self) -> list[torch.Tensor]:
        if isinstance(self.table, CachedEmbedding):
            return [self.table.cache.weight]
        if isinstance(self.table, TorchRecTable):
            return self.table.weights()
        return [] if isinstance(self.table, QuantEmbedding) else [self.table.weight]

    def embedding_tables(self) -> list[torch.Tensor]:
        """The parameters the trainer's embedding regularizer applies to (a quantized table has none: it
        regularizes its batch rows itself)."""
        tables = [*self._categorical_weights(), self.num_vectors, *[t.weight for t in self.seq_tables.values()]]
        if isinstance(self.bucket_table, nn.Embedding):
            tables.append(self.bucket_table.weight)
        if self.autodis is not None:
            tables.append(self.autodis.meta)
        return tables

    @torch.no_grad()
    def grow(self, previous_rows: torch.Tensor, init: str = "oov", init_std: float = 1e-4) -> None:
        """Append rows to the categorical table (IncCTR's new features): ``oov`` starts new row k from row
        ``previous_rows[k]`` (the OOV row its id used until now, so predictions do not jump), ``random`` from
        N(0, init_std)."""
        if not isinstance(self.table, nn.Embedding):
            raise ConfigError("embedding_table: only a dense table can grow (not a cached one)")
        if init not in ("oov", "random"):
            raise ConfigError(f"init: {init!r} is not 'oov' or 'random'")
        old = self.table.weight
        extra = (old[previous_rows] if init == "oov"
                 else torch.randn(len(previous_rows), old.shape[1], device=old.device) * init_std)
        table = nn.Embedding(old.shape[0] + len(previous_rows), old.shape[1], sparse=self.table.sparse,
                             device=old.device)
        table.weight.copy_(torch.cat([old, extra]))
        self.table = table

    @property
    def prefetches(self) -> bool:
        """Whether the table reads ahead (the trainer then announces each next batch)."""
        return isinstance(self.table, CachedEmbedding)

    def prefetch_batch(self, batch: Batch | None) -> None:
        """Announce the next training batch to a table that prefetches (the cached table)."""
        if isinstance(self.table, CachedEmbedding):
            self.table.prefetch(None if batch is None else batch.cat)

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = []
        if batch.cat.shape[1]:
            parts.append(self.table(batch.cat))
        if batch.num.shape[1]:
            if self.numeric == "scalar":
                parts.append(batch.num.unsqueeze(-1) * self.num_vectors)
            elif self.numeric == "bucket":
                parts.append(self.bucket_table(batch.num_bucket + self.bucket_offsets))
            else:
                parts.append(self.autodis(batch.num))
        for name, bag in self.seq_tables.items():
            ids = batch.seq[name]
            parts.append(bag(ids, per_sample_weights=None).unsqueeze(1) if ids.numel() else
                         ids.new_zeros((ids.shape[0], 1, self.dim), dtype=torch.float32))
        if self.dense_adaptor is not None:
            parts.append(self.dense_adaptor(batch.dense))
        return torch.cat(parts, dim=1)


class FMInteraction(nn.Module):
    """Second-order factorization machine term: sum over field pairs of <v_i, v_j>."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:  # [B, F, d] -> [B]
        square_of_sum = emb.sum(1).pow(2)
        sum_of_square = emb.pow(2).sum(1)
        return 0.5 * (square_of_sum - sum_of_square).sum(-1)


class FastDropout(nn.Module):
    """Inverted dropout whose mask comes from a counter-based integer hash (murmur3 finalizer) instead of
    ``bernoulli_``: on CPU, PyTorch's per-element RNG made dropout ~30% of DeepFM training time; the hash is
    a handful of vectorized int32 ops, each 32-bit hash giving two 16-bit uniforms. The per-call seed is
    drawn from torch's RNG, so ``torch.manual_seed`` still makes runs reproducible. On GPU, or with p = 0,
    it defers to ``nn.functional.dropout``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout: {p} is not in [0, 1)")
        self.p = p
        self.threshold = int(round(p * 65536))
        self._idx = torch.zeros(0, dtype=torch.int32)

    def _uniform16(self, n: int, seed: int) -> torch.Tensor:
        half = (n + 1) // 2
        if self._idx.numel() < half:
            self._idx = torch.arange(half, dtype=torch.int32)
        v = self._idx[:half] * -1640531535 + seed  # golden-ratio stride; int32 arithmetic wraps
        # logical right shifts (torch shifts int32 arithmetically, so mask off the sign extension)
        v = v ^ ((v >> 16) & 0xFFFF)
        v = v * -2048144789
        v = v ^ ((v >> 13) & 0x7FFFF)
        v = v * -1028477387
        v = v ^ ((v >> 16) & 0xFFFF)
        return torch.cat([v & 0xFFFF, (v >> 16) & 0xFFFF])[:n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, True)
        seed = int(torch.randint(-(2 ** 31), 2 ** 31 - 1, (1,)))
        keep = (self._uniform16(x.numel(), seed) >= self.threshold).view(x.shape)
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


class MLP(nn.Module):
    """Fully connected tower: Linear -> (BatchNorm) -> activation -> dropout per hidden layer."""
    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0, batch_norm: bool = False,
                 out_dim: int | None = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(FastDropout(dropout))
            d = h
        if out_dim is not None:
            layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim if out_dim is not None else d
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pair_indices(n_fields: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of every unordered field pair (i < j), for pairwise-interaction layers."""
    i, j = torch.triu_indices(n_fields, n_fields, offset=1)
    return i, j


class InnerProduct(nn.Module):
    """IPNN product layer: <e_i, e_j> for every field pair i < j -> [B, F(F-1)/2]."""

    def __init__(self, n_fields: int) -> None:
        super().__init__()
        i, j = pair_indices(n_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        self.out_dim = len(i)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return (emb[:, self.i] * emb[:, self.j]).sum(-1)


class KernelProduct(nn.Module):
    """KPNN (Qu et al., TOIS 2018): p_ij = e_i^T K_ij e_j with a kernel per field pair.
    ``kernel``: "vector" (diagonal K_ij), "matrix" (full d x d K_ij) or "number" (scalar K_ij)."""

    def __init__(self, n_fields: int, dim: int, kernel: str = "vector") -> None:
        super().__init__()
        i, j = pair_indices(n_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        p = len(i)
        self.kernel = kernel
        if kernel == "vector":
            self.K = nn.Parameter(torch.ones(p, dim) + 0.01 * torch.randn(p, dim))
        elif kernel == "matrix":
            self.K = nn.Parameter(torch.eye(dim).repeat(p, 1, 1) + 0.01 * torch.randn(p, dim, dim))
        elif kernel == "number":
            self.K = nn.Parameter(torch.ones(p) + 0.01 * torch.randn(p))
        else:
            raise ValueError(f"kpnn_kernel: {kernel!r} is not one of vector, matrix, number")
        self.out_dim = p

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        ei, ej = emb[:, self.i], emb[:, self.j]  # [B, P, d]
        if self.kernel == "vector":
            return (ei * self.K * ej).sum(-1)
        if self.kernel == "matrix":
            return torch.einsum("bpd,pde,bpe->bp", ei, self.K, ej)
        return (ei * ej).sum(-1) * self.K


class PINMicroNet(nn.Module):
    """PIN (Qu et al., TOIS 2018): a micro-network per field pair over [e_i, e_j, e_i * e_j]:
    Linear(3d, hidden) -> LayerNorm -> ReLU -> Linear(hidden, out); outputs concatenated -> [B, P*out]."""

    def __init__(self, n_fields: int, dim: int, hidden: int = 40, out: int = 5) -> None:
        super().__init__()
        i, j = pair_indices(n_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        p = len(i)
        self.w1 = nn.Parameter(torch.empty(p, 3 * dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(p, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.w2 = nn.Parameter(torch.empty(p, hidden, out))
        self.b2 = nn.Parameter(torch.zeros(p, out))
        for w in (self.w1, self.w2):
            nn.init.xavier_normal_(w)
        self.out_dim = p * out

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        ei, ej = emb[:, self.i], emb[:, self.j]
        x = torch.cat([ei, ej, ei * ej], dim=-1)  # [B, P, 3d]
        h = torch.relu(self.norm(torch.einsum("bpk,pkh->bph", x, self.w1) + self.b1))
        return (torch.einsum("bph,pho->bpo", h, self.w2) + self.b2).flatten(1)


class FGCNNGenerator(nn.Module):
    """FGCNN feature generation (Liu et al., WWW 2019): the field-embedding matrix is a 1-channel image;
    each layer is Conv(kernel h x 1, tanh) -> MaxPool(p x 1) -> recombination FC producing new field
    embeddings. Returns the new fields [B, F_new, d]."""

    def __init__(self, n_fields: int, dim: int, channels: list[int], kernel: int = 7, pool: int = 2,
                 recombine: int = 2) -> None:
        super().__init__()
        self.convs, self.recombs = nn.ModuleList(), nn.ModuleList()
        self.dim, self.pool = dim, pool
        in_ch, height, self.n_new = 1, n_fields, 0
        for ch in channels:
            k = min(kernel, height)
            self.convs.append(nn.Conv2d(in_ch, ch, (k, 1), padding=(k // 2, 0) if k % 2 else 0))
            conv_h = height + 2 * (k // 2 if k % 2 else 0) - k + 1
            pooled = max(1, conv_h // pool)
            self.recombs.append(nn.Linear(ch * pooled * dim, recombine * pooled * dim))
            self.n_new += recombine * pooled
            in_ch, height = ch, pooled
        for m in [*self.convs, *self.recombs]:
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x, new = emb.unsqueeze(1), []  # [B, 1, F, d]
        for conv, rec in zip(self.convs, self.recombs):
            x = torch.tanh(conv(x))
            x = nn.functional.max_pool2d(x, (self.pool, 1)) if x.shape[2] >= self.pool else x
            new.append(torch.tanh(rec(x.flatten(1))).view(emb.shape[0], -1, self.dim))
        return torch.cat(new, dim=1)


class CrossNetV2(nn.Module):
    """DCN-V2's cross network (Wang et al., WWW 2021), full rank: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        for lin in self.layers:
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for lin in self.layers:
            x = x0 * lin(x) + x
        return x


class CrossNetMix(nn.Module):
    """DCN-V2's low-rank mixture of cross experts: expert e maps x_l through V_e^T, g, C_e, g, U_e (rank r,
    g = tanh) and a softmax gate over G_e(x_l) mixes them: x_{l+1} = sum_e gate_e * x_0 * (U_e ... + b) + x_l."""

    def __init__(self, dim: int, layers: int, rank: int, experts: int) -> None:
        super().__init__()
        self.v = nn.ParameterList(nn.Parameter(torch.empty(experts, dim, rank)) for _ in range(layers))
        self.c = nn.ParameterList(nn.Parameter(torch.empty(experts, rank, rank)) for _ in range(layers))
        self.u = nn.ParameterList(nn.Parameter(torch.empty(experts, rank, dim)) for _ in range(layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(layers))
        self.gates = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(experts))
        for group in (self.v, self.c, self.u):
            for p in group:
                nn.init.xavier_normal_(p)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for v, c, u, b in zip(self.v, self.c, self.u, self.b):
            h = torch.tanh(torch.einsum("bd,edr->ber", x, v))
            h = torch.tanh(torch.einsum("ber,ers->bes", h, c))
            experts = x0.unsqueeze(1) * (torch.einsum("bes,esd->bed", h, u) + b)  # [B, E, d]
            gate = torch.softmax(torch.cat([g(x) for g in self.gates], dim=1), dim=1)  # [B, E]
            x = (gate.unsqueeze(-1) * experts).sum(1) + x
        return x


class InteractingLayer(nn.Module):
    """AutoInt's interacting layer (Song et al., CIKM 2019): multi-head self-attention over fields with a
    residual projection, ReLU on the sum. [B, F, in_dim] -> [B, F, heads * head_dim]."""

    def __init__(self, in_dim: int, head_dim: int, heads: int, residual: bool = True, scale: bool = True) -> None:
        super().__init__()
        self.heads, self.head_dim, self.scale = heads, head_dim, scale
        out = head_dim * heads
        self.q = nn.Linear(in_dim, out, bias=False)
        self.k = nn.Linear(in_dim, out, bias=False)
        self.v = nn.Linear(in_dim, out, bias=False)
        self.res = nn.Linear(in_dim, out, bias=False) if residual else None
        self.out_dim = out
        for lin in (self.q, self.k, self.v, self.res):
            if lin is not None:
                nn.init.xavier_normal_(lin.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, F, H*D] -> [B, H, F, D]
            return t.view(b, f, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2)
        if self.scale:
            scores = scores / self.head_dim ** 0.5
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, f, self.out_dim)
        if self.res is not None:
            y = y + self.res(x)
        return torch.relu(y)
