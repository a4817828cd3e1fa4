"""AutoAssign+-style id assignment for streaming CTR (papers.md §20; Liu et al., KAIS 2024): an actor-critic
policy decides, per id, whether it gets an exclusive embedding row or shares one of ``shared`` rows of its
field, and evicts exclusive rows it no longer wants.

Table layout (one shared table): rows ``[f * shared, (f + 1) * shared)`` are field f's shared embeddings;
exclusive rows follow, allocated as ids are kept (evicted rows are reused). An id with an exclusive row
uses it; any other id uses its assigned shared row (ids never seen use the slot the policy picks for a
brand-new id, greedily).

Per chunk, for every id seen in it and every id holding a row, the **actor** (an MLP over the id's state:
log count in the chunk, log count so far, whether it is new, whether it holds a row, the chunk's
position, its field one-hot) outputs a softmax over the field's shared slots and a keep probability. A new
id takes a sampled slot (kept for good); an id whose keep probability is >= 0.5 gets an exclusive row
started from its slot's embedding (the better-than-random start the paper argues for: the slot has been
trained by the ids sharing it); a row whose id is absent from the chunk and is no longer kept is evicted
(its id goes back to its slot). Ids active in the chunk are never evicted: in our runs, evicting the
busiest values of small fields (tens of thousands of rows each) on one noisy estimate cost 0.07 AUC.
A few ids the actor would not keep get a row anyway (``explore``), so the critic keeps seeing rows of
every kind; the first ``warmup`` chunks follow the ``min_count`` rule while the critic learns.

The **critic** predicts, from the same state, what an exclusive row is worth: the next chunk's summed log
loss with the id moved to its slot minus with its own row (a counterfactual scored by the trained model,
test-then-train; 0 for a row whose id is absent), regressed in signed-log1p units (the sums are
heavy-tailed: an id seen 10,000 times against one seen once). Optionally TD(0) (``discount``): plus the
discounted value of the id's next state; with 0.9 it valued nearly every row above the cost and the policy
kept them all, losing the AUC that shared rows for rare ids bring, so the default is the next chunk only.
The keep head is fit to the critic's decision (value above ``row_cost`` and, when memory is short, the
value's quantile above a threshold: the budget's Lagrange multiplier, moved by ``budget_step`` x (rows in
use / ids seen - ``budget``) after every chunk, within [0, 1]), each id weighted by how far its value is
from the cost (a logistic loss: it does not saturate the way maximizing sigmoid(keep) x advantage does).
The slot head follows REINFORCE on the summed loss of the id's rows on its slot (baseline: the field's
mean). Both learn from the previous chunk's decisions once the next chunk has scored them (``learn``).

Policies ``min_count`` (an own row once an id has been seen ``min_count`` times) and ``keep_all`` (every id
its own row; with ``init: random`` the usual table, the baseline) use the same layout without learning."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch, FeatureSpec
from llmrec.ctr.ids import IdEncoder


class AssignConfig(StrictConfig):
    """Sizes and learning settings of the assignment policy."""
    shared: int = Field(8, ge=1)  # shared rows per field
    hidden: int = Field(32, ge=1)
    actor_lr: float = Field(1e-2, gt=0)
    critic_lr: float = Field(1e-2, gt=0)
    entropy: float = Field(0.01, ge=0)
    updates: int = Field(50, ge=1)  # gradient steps of actor and critic per chunk
    # memory budget: exclusive + shared rows as a fraction of the ids seen so far (every id its own row);
    # when over it, ids whose critic value ranks below a threshold quantile (a Lagrange multiplier in
    # [0, 1]) are not kept; the threshold moves by ``budget_step`` x (fraction - budget) per chunk
    budget: float = Field(0.75, gt=0)
    budget_step: float = Field(0.5, ge=0)
    row_cost: float = Field(0.01, ge=0)  # what a row must save (critic units: signed log1p of summed log loss)
    # of a row's value in later chunks (TD(0) bootstrapping); 0: the next chunk only. Measured: 0.9 values
    # nearly every row above the cost and the policy keeps them all (see the module docstring)
    discount: float = Field(0.0, ge=0, lt=1)
    warmup: int = Field(2, ge=0)  # chunks decided by the min_count rule while the critic learns
    explore: float = Field(0.05, ge=0, le=1)  # chance an id the policy would not keep gets a row anyway
    # learned: the actor decides; min_count: an id gets its own row once seen this often (a fixed rule);
    # keep_all: every id its own row from its first occurrence (the baseline)
    policy: Literal["learned", "min_count", "keep_all"] = "learned"
    min_count: int = Field(2, ge=1)
    init: Literal["slot", "random"] = "slot"  # a new exclusive row starts from its slot's row, or N(0, 1e-4)
    seed: int = 0


class _Policy(nn.Module):
    def __init__(self, n_state: int, shared: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_state, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.slot = nn.Linear(hidden, shared)
        self.keep = nn.Linear(hidden, 1)
        nn.init.constant_(self.keep.bias, 1.0)  # start by keeping (the baseline's behaviour)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(s)
        return self.slot(h), self.keep(h).squeeze(-1)


class IdAssigner:
    """Raw ids -> rows of a table of shared + exclusive rows, decided by an actor-critic policy (module
    docstring). Duck-types the encoder interface CTR models read; numbers go through ``numbers`` (a fitted
    ``IdEncoder``)."""

    def __init__(self, config: AssignConfig, numbers: IdEncoder, n_chunks: int) -> None:
        self.config, self.numbers, self.n_chunks = config, numbers, n_chunks
        self.categorical: list[FeatureSpec] = numbers.categorical
        self.numerical: list[FeatureSpec] = numbers.numerical
        self.multi_hot: list[FeatureSpec] = []
        self.dense: list[FeatureSpec] = []
        self.fields = [s.name for s in self.categorical]
        F, S = len(self.fields), config.shared
        self.base = F * S
        self.rows_total = self.base  # table rows (shared + exclusive, freed ones included)
        self.free: list[int] = []
        self.slot: list[dict[int, int]] = [{} for _ in range(F)]  # id -> shared slot
        self.own: list[dict[int, int]] = [{} for _ in range(F)]  # id -> exclusive row
        self.count: list[dict[int, int]] = [{} for _ in range(F)]  # id -> occurrences so far
        torch.manual_seed(config.seed)
        self.n_state = 5 + F
        self.actor = _Policy(self.n_state, S, config.hidden)
        self.critic = nn.Sequential(nn.Linear(self.n_state, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))
        self.opt_a = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.pending: dict | None = None  # last chunk's decisions, waiting for their reward
        self.threshold = 0.0  # the memory budget's multiplier (a quantile of the critic's values)
        self.last_scored: dict | None = None  # the last scored decisions: field, id, counterfactual value

    # --- encoder interface -----------------------------------------------------------------------------
    def n_categorical_rows(self) -> int:
        """Rows of the table (shared + exclusive)."""
        return self.rows_total

    def offsets(self) -> dict[str, int]:
        """Start of each field's shared rows."""
        return {f: j * self.config.shared for j, f in enumerate(self.fields)}

    def cardinalities(self) -> dict[str, int]:
        """Shared rows per field (exclusive rows are counted in ``exclusive_rows``)."""
        return {f: self.config.shared for f in self.fields}

    def exclusive_rows(self) -> int:
        """Exclusive rows in use."""
        return sum(len(o) for o in self.own)

    def memory_rows(self) -> int:
        """Rows in use: shared + exclusive (keep_all: exclusive only; its shared rows are never trained and
        stand for the random row an unseen id gets)."""
        return self.exclusive_rows() + (0 if self.config.policy == "keep_all" else self.base)

    def ids_seen(self) -> int:
        """Distinct ids seen so far (the rows of one-row-per-id)."""
        return sum(len(c) for c in self.count)

    # --- states and decisions ----------------------------------------------------------------------------
    def _state(self, j: int, ids: np.ndarray, chunk_counts: np.ndarray, chunk: int) -> torch.Tensor:
        total = np.array([self.count[j].get(int(i), 0) for i in ids], np.float32)
        new = (total == 0).astype(np.float32)
        held = np.array([int(i) in self.own[j] for i in ids], np.float32)
        s = np.zeros((len(ids), self.n_state), np.float32)
        s[:, 0] = np.log1p(chunk_counts)
        s[:, 1] = np.log1p(total + chunk_counts)
        s[:, 2], s[:, 3] = new, held
        s[:, 4] = chunk / max(1, self.n_chunks)
        s[:, 5 + j] = 1.0
        return torch.from_numpy(s)

    def new_id_slot(self, j: int, chunk: int) -> int:
        """The slot the policy gives a brand-new id of field ``j`` (greedy)."""
        with torch.no_grad():
            logits, _ = self.actor(self._state(j, np.array([-1]), np.array([0.0], np.float32), chunk))
        return int(logits.argmax(-1))

    @torch.no_grad()
    def decide(self, cols: dict[str, np.ndarray], chunk: int) -> list[tuple[int, int]]:
        """Assignment decisions for every id of a training chunk and, under the learned policy, every id
        holding a row (absent from the chunk: count 0 in it, so stale rows can be evicted); returns (new row,
        source row) pairs: the exclusive rows to (re)start from their slot's embedding (rows beyond the
        model's table are to be appended: ``ctr_assign._grow``)."""
        S = self.config.shared
        starts: list[tuple[int, int]] = []
        record = {"states": [], "slots": [], "keeps": [], "field": [], "ids": []}
        for j, f in enumerate(self.fields):
            ids, k = np.unique(cols[f], return_counts=True)
            if self.config.policy == "learned" and self.own[j]:
                held = np.fromiter(self.own[j], np.int64, len(self.own[j]))
                stale = held[~np.isin(held, ids)]
                ids, k = np.concatenate([ids, stale]), np.concatenate([k, np.zeros(len(stale), k.dtype)])
            s = self._state(j, ids, k.astype(np.float32), chunk)
            logits, keep_logit = self.actor(s)
            slot = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.rng).squeeze(1)
            if self.config.policy == "learned" and chunk >= self.config.warmup:
                keep = (torch.sigmoid(keep_logit) >= 0.5).float()
                keep[(s[:, 3] > 0) & (s[:, 0] > 0)] = 1.0  # only stale rows (ids absent from the chunk) are evicted
                fresh = (keep == 0) & (s[:, 3] == 0)  # exploration: a few ids without a row get one
                keep[fresh] = torch.bernoulli(torch.full((int(fresh.sum()),), self.config.explore),
                                              generator=self.rng)
            elif self.config.policy in ("min_count", "learned"):
                keep = (torch.expm1(s[:, 1]).round() >= self.config.min_count).float()
            else:
                keep = torch.ones(len(ids))
            for i, sl, kp, c in zip(ids.tolist(), slot.tolist(), keep.tolist(), k.tolist()):
                if i not in self.slot[j]:
                    self.slot[j][i] = sl
                if kp and i not in self.own[j]:
                    row = self.free.pop() if self.free else self._append()
                    self.own[j][i] = row
                    starts.append((row, j * S + self.slot[j][i]))
                elif not kp and i in self.own[j]:
                    self.free.append(self.own[j].pop(i))
                if c:
                    self.count[j][i] = self.count[j].get(i, 0) + c
            record["states"].append(s)
            record["slots"].append(slot)
            record["keeps"].append(keep)
            record["field"].append(np.full(len(ids), j))
            record["ids"].append(ids)
        self.pending = {k: (torch.cat(v) if k in ("states", "slots", "keeps") else np.concatenate(v))
                        for k, v in record.items()}
        return starts

    def _append(self) -> int:
        self.rows_total += 1
        return self.rows_total - 1

    def rows_of(self, j: int, ids: np.ndarray, chunk: int) -> np.ndarray:
        """Table rows of field ``j``'s ids: exclusive row, else assigned slot, else the new-id slot."""
        S, own, slot = self.config.shared, self.own[j], self.slot[j]
        fresh = self.new_id_slot(j, chunk)
        return np.fromiter((own[i] if i in own else j * S + slot.get(i, fresh) for i in ids.tolist()),
                           np.int64, len(ids))

    def transform(self, cols: dict[str, np.ndarray], chunk: int) -> Batch:
        """Encoded rows of a chunk under the current assignment."""
        b = self.numbers.transform(cols)
        for j, f in enumerate(self.fields):
            b.cat[:, j] = torch.from_numpy(self.rows_of(j, cols[f], chunk))
        return b

    # --- learning from the next chunk ----------------------------------------------------------------------
    def learn(self, cols: dict[str, np.ndarray], predict, chunk: int) -> dict[str, float]:
        """Score the previous chunk's decisions on the next chunk (``cols``; ``predict(batch) -> probabilities``
        of the trained model) and update critic and actor (module docstring).

        Keep decisions: for every id holding an exclusive row, the counterfactual value of the row is the
        next chunk's summed log loss with the id on its shared slot minus with its own row (one extra scoring
        of the chunk per field). The critic regresses that value on the id's state; the keep head is fit to
        the critic's keep decision (module docstring), so ids without a row learn from ids like them that
        have one. Slot decisions: REINFORCE on minus the summed
        log loss of the id's rows while it uses the slot, the critic-free baseline being the field mean."""
        if self.pending is None or self.config.policy != "learned":
            self.pending = None
            return {}
        p = self.pending
        b = self.transform(cols, chunk)
        y = b.label.numpy()

        def row_loss(prob: np.ndarray) -> np.ndarray:
            prob = np.clip(prob, 1e-7, 1 - 1e-7)
            return -(y * np.log(prob) + (1 - y) * np.log(1 - prob))

        base = row_loss(predict(b))
        value = np.full(len(p["ids"]), np.nan, np.float32)  # counterfactual value of an own row
        slot_r = np.full(len(p["ids"]), np.nan, np.float32)  # -summed loss on the slot, for slot decisions
        S = self.config.shared
        s_next = torch.zeros_like(p["states"])  # each pending id's state at the next decision, holding a row
        for j, f in enumerate(self.fields):
            ids = cols[f]
            own = self.own[j]
            has = np.fromiter((i in own for i in ids.tolist()), bool, len(ids))
            sel = np.nonzero(p["field"] == j)[0]
            u, inv, cnt = np.unique(ids, return_inverse=True, return_counts=True)
            pos = np.minimum(np.searchsorted(u, p["ids"][sel]), len(u) - 1)
            hit = u[pos] == p["ids"][sel]
            nxt = self._state(j, p["ids"][sel], np.where(hit, cnt[pos], 0).astype(np.float32), chunk)
            nxt[:, 3] = 1.0
            s_next[torch.from_numpy(sel)] = nxt
            if has.any():
                alt = b.slice(torch.arange(len(y)))
                slots = np.fromiter((j * S + self.slot[j].get(i, 0) for i in ids[has].tolist()), np.int64)
                alt.cat[torch.from_numpy(np.nonzero(has)[0]), j] = torch.from_numpy(slots)
                delta = np.where(has, row_loss(predict(alt)) - base, 0.0)
                per_id = np.bincount(inv, weights=delta, minlength=len(u))
                owned = np.bincount(inv, weights=has, minlength=len(u)) > 0
                ok = hit & owned[pos]
                value[sel[ok]] = per_id[pos[ok]]
            # a row held by an id absent from the next chunk was worth nothing there
            gone = ~hit & np.fromiter((i in own for i in p["ids"][sel].tolist()), bool, len(sel))
            value[sel[gone]] = 0.0
            loss_id = np.bincount(inv, weights=np.where(has, 0.0, base), minlength=len(u))
            shared = np.bincount(inv, weights=~has, minlength=len(u)) > 0
            ok = hit & shared[pos]
            slot_r[sel[ok]] = -loss_id[pos[ok]]
        self.last_scored = {"field": p["field"], "ids": p["ids"], "value": value}  # for inspection and tests
        s, slots, keeps = p["states"], p["slots"], p["keeps"]
        stats: dict[str, float] = {"keep_rate": float(keeps.mean())}
        has_v = torch.from_numpy(~np.isnan(value))
        if has_v.any():
            raw = torch.from_numpy(np.nan_to_num(value))[has_v]
            with torch.no_grad():  # TD(0): this chunk's saving plus the discounted value of holding on
                future = self.critic(s_next[has_v]).squeeze(-1)
            target = torch.sign(raw) * torch.log1p(raw.abs()) + self.config.discount * future
            for _ in range(self.config.updates):
                c_loss = nn.functional.huber_loss(self.critic(s[has_v]).squeeze(-1), target)
                self.opt_c.zero_grad()
                c_loss.backward()
                self.opt_c.step()
            stats.update(critic_loss=float(c_loss.detach()), mean_row_value=float(raw.mean()))
        # the memory constraint's multiplier: up while over budget, down (to >= 0) while under it
        frac = self.memory_rows() / max(1, self.ids_seen())
        self.threshold = min(1.0, max(0.0, self.threshold + self.config.budget_step * (frac - self.config.budget)))
        with torch.no_grad():
            v = self.critic(s).squeeze(-1)
            quantile = (torch.argsort(torch.argsort(v)).float() + 0.5) / len(v)
            want = ((v > self.config.row_cost) & (quantile >= self.threshold)).float()
            weight = (v - self.config.row_cost).abs()
            weight = weight / (weight.mean() + 1e-12)  # a mistake costs what the critic says is at stake
        stats.update(rows_fraction=frac, threshold=self.threshold, critic_keeps=float(want.mean()))
        has_s = torch.from_numpy(~np.isnan(slot_r))
        adv = torch.zeros(len(s))
        if has_s.any():
            r = torch.from_numpy(np.nan_to_num(slot_r))
            for j in range(len(self.fields)):  # baseline: the field's mean
                m = has_s & torch.from_numpy(p["field"] == j)
                if m.sum() > 1:
                    adv[m] = (r[m] - r[m].mean()) / (r[m].std() + 1e-8)
        for _ in range(self.config.updates):
            logits, keep_logit = self.actor(s)
            # keep head: advantage-weighted classification toward "the critic says keep" (a logistic loss
            # does not saturate, unlike maximizing sigmoid(keep) x advantage once the logits are large)
            a_loss = nn.functional.binary_cross_entropy_with_logits(keep_logit, want, weight=weight)
            if has_s.any():
                logp_slot = torch.log_softmax(logits, -1).gather(1, slots[:, None]).squeeze(1)
                ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1).mean()
                a_loss = a_loss - (logp_slot * adv)[has_s].mean() - self.config.entropy * ent
            self.opt_a.zero_grad()
            a_loss.backward()
            self.opt_a.step()
        self.pending = None
        return stats
