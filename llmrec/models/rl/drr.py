"""DRR (Liu et al., arXiv 1810.12027; papers.md §32): an actor-critic recommender whose state is built from
the user's n most recent positively rated items by a **state representation module**:

- ``n`` (DRR-n): the item embeddings concatenated, no interactions;
- ``p`` (DRR-p): [e_1 .. e_n] and the pairwise products (w_a e_a) * (w_b e_b), a < b (item-item);
- ``u`` (DRR-u): [u * w_a e_a]_a (user-item) and the pairwise item products;
- ``ave`` (DRR-ave): [u; u * ave(w_a e_a); ave(w_a e_a)], a weighted average pooling (the paper's best).

The actor maps the state to an action a in R^d (unit length); an item's score is a . e_i. The critic Q(s, a) is an
MLP on [state; action]. Item and user embeddings are PMF's, frozen (the paper pre-trains them by PMF); the
weights w_a and the networks are learned by DDPG (``llmrec.train.actor_critic``). Actor and critic each own a
state module, so the critic's gradients never move the actor's state."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from llmrec.models.registry import ModelConfigBase, register_model


class DRRConfig(ModelConfigBase):
    """The state module, the window of recent positive items, the hidden width of actor and critic."""
    state: Literal["n", "p", "u", "ave"] = "ave"
    window: int = Field(5, ge=1)
    hidden: int = Field(256, ge=1)


class StateModule(nn.Module):
    """One of DRR's four state representations of (user vector, n recent item vectors)."""

    def __init__(self, kind: str, window: int, dim: int) -> None:
        super().__init__()
        self.kind, self.window, self.dim = kind, window, dim
        self.w = nn.Parameter(torch.ones(window))  # per-position weights w_a
        a, b = np.triu_indices(window, k=1)
        self.register_buffer("pa", torch.from_numpy(a))
        self.register_buffer("pb", torch.from_numpy(b))

    @property
    def out_dim(self) -> int:
        """Width of the state vector."""
        pairs = self.window * (self.window - 1) // 2
        return {"n": self.window, "p": self.window + pairs, "u": self.window + pairs, "ave": 3}[self.kind] * self.dim

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user: (B, d), items: (B, n, d) -> (B, out_dim)."""
        b = items.shape[0]
        if self.kind == "n":
            return items.reshape(b, -1)
        weighted = self.w[None, :, None] * items
        if self.kind == "ave":
            pooled = weighted.mean(1)
            return torch.cat([user, user * pooled, pooled], dim=1)
        pairs = (weighted[:, self.pa] * weighted[:, self.pb]).reshape(b, -1)
        first = items.reshape(b, -1) if self.kind == "p" else (user[:, None, :] * weighted).reshape(b, -1)
        return torch.cat([first, pairs], dim=1)


class Actor(nn.Module):
    """state -> a unit-length action: only its direction ranks items (a . e_i), and a bounded output without
    tanh's saturation (a saturated tanh action stops learning: every component at +-1, no gradient)."""

    def __init__(self, c: DRRConfig, dim: int) -> None:
        super().__init__()
        self.state = StateModule(c.state, c.window, dim)
        self.net = nn.Sequential(nn.Linear(self.state.out_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.hidden),
                                 nn.ReLU(), nn.Linear(c.hidden, dim))

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The action (ranking vector, unit length) for each state."""
        return nn.functional.normalize(self.net(self.state(user, items)), dim=1)


class Critic(nn.Module):
    """(state, action) -> Q."""

    def __init__(self, c: DRRConfig, dim: int) -> None:
        super().__init__()
        self.state = StateModule(c.state, c.window, dim)
        self.net = nn.Sequential(nn.Linear(self.state.out_dim + dim, c.hidden), nn.ReLU(),
                                 nn.Linear(c.hidden, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 1))

    def forward(self, user: torch.Tensor, items: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q of each (state, action)."""
        return self.net(torch.cat([self.state(user, items), action], dim=1)).squeeze(1)


class DRR(nn.Module):
    """Frozen PMF embeddings, the actor and the critic; ``scores`` ranks items for states."""

    def __init__(self, c: DRRConfig, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        super().__init__()
        self.config = c
        dim = item_vectors.shape[1]
        self.register_buffer("users", torch.as_tensor(user_vectors, dtype=torch.float32))
        self.register_buffer("items", torch.as_tensor(item_vectors, dtype=torch.float32))
        self.actor, self.critic = Actor(c, dim), Critic(c, dim)

    def embed(self, user: torch.Tensor, recent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user indices (B,), recent item indices (B, n)) -> their vectors."""
        return self.users[user], self.items[recent]

    def action(self, user: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """The actor's ranking vectors."""
        return self.actor(*self.embed(user, recent))

    def scores(self, user: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """a . e_i for every item: (B, n_items)."""
        return self.action(user, recent) @ self.items.T


@register_model("drr", family="rl", config=DRRConfig, onnx=False)
def build_drr(context: tuple[np.ndarray, np.ndarray], config: DRRConfig) -> DRR:
    """DRR actor-critic over PMF embeddings; state module n / p / u / ave (DRR-ave: the paper's best)."""
    users, items = context
    return DRR(config, users, items)
