"""The rl family's training loop: DDPG (Lillicrap et al., 2016) for DRR (papers.md §32) against a simulator.

**Episodes (offline, over logged ratings).** An episode picks a training user and a cut point in the user's
training history: the state is the ``window`` positive (rating >= ``positive``) items before the cut, the
recommendable items are the user's rated items after it. For ``episode_length`` steps the actor proposes an
action (a unit vector, plus Gaussian noise ``noise`` and renormalized; with probability ``epsilon`` a random
item instead), the best-scoring remaining item is recommended, the simulator returns its reward (r - 3) / 2, and a positively rated item
enters the state window (the oldest leaves). Transitions go to a replay buffer with the action actually
taken, the recommended item's unit embedding, not the proto-action (as Wolpertinger DDPG, Dulac-Arnold et al.
2015), and the bootstrap target evaluates the item the target actor would pick; with the actor 10x slower
than the critic, this kept Q near ~10 in 500-episode probes on MovieLens (a possible return is ~6.5), where
storing proto-actions gave 30-98 and the executed vector alone ~3,000. Every step updates the critic on
r + gamma * Q'(s', a') and the actor on -Q(s, mu(s)), and the target networks follow by tau.

**Evaluation** (``evaluate``): for each user with at least ``k`` rated items in the evaluated split, the
state is the last ``window`` positives before the split; the policy recommends ``k`` of the split's items one
by one, greedily, and each logged rating updates the state as in training. precision@k = the share of the k
with rating >= ``positive``. Validation precision is measured every ``eval_every`` episodes; the actor with
the best one is kept (the curves of reward and validation precision are returned)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from pydantic import Field
from tqdm import tqdm

from llmrec.config import StrictConfig
from llmrec.data.simulator import RatingLog, RatingSimulator
from llmrec.models import build_model
from llmrec.models.rl.drr import DRR


class DDPGConfig(StrictConfig):
    """Episodes, their length, discount, target-update rate, learning rates, replay, exploration, seed."""
    episodes: int = Field(3000, ge=1)
    episode_length: int = Field(10, ge=1)
    gamma: float = Field(0.9, ge=0, le=1)
    tau: float = Field(0.01, gt=0, le=1)
    actor_lr: float = Field(1e-5, gt=0)  # the actor 10x slower than the critic (faster: Q overestimates)
    critic_lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(64, ge=1)
    buffer: int = Field(100_000, ge=1)
    noise: float = Field(0.1, ge=0)
    epsilon: float = Field(0.1, ge=0, le=1)
    positive: float = 4.0
    eval_every: int = Field(250, ge=1)
    # the action the replay stores and the critic reads: the executed item's unit vector (default), or its PMF
    # vector as is ("raw": a probe of what the critic can fit, with gamma 0; the actor's actions stay unit
    # vectors, so only the critic is meaningful there)
    critic_action: Literal["unit", "raw"] = "unit"
    k: int = Field(10, ge=1)
    seed: int = 0
    progress: bool = True


@dataclass
class UserHistory:
    """Per user: rated items and ratings in time order (one split, or several concatenated)."""
    items: list[np.ndarray]
    ratings: list[np.ndarray]

    @classmethod
    def of(cls, *logs: RatingLog) -> "UserHistory":
        """The users' histories over the logs, in order (e.g. train, then validation)."""
        n = logs[0].n_users
        items: list[list[np.ndarray]] = [[] for _ in range(n)]
        ratings: list[list[np.ndarray]] = [[] for _ in range(n)]
        for log in logs:
            for u, rows in enumerate(log.by_user()):
                items[u].append(log.item[rows])
                ratings[u].append(log.rating[rows])
        return cls([np.concatenate(x) if x else np.zeros(0, np.int64) for x in items],
                   [np.concatenate(x) if x else np.zeros(0) for x in ratings])


def popular_positives(train: RatingLog, positive: float, n: int) -> np.ndarray:
    """The ``n`` items with the most positive training ratings (what pads a short state window)."""
    counts = np.bincount(train.item[train.rating >= positive], minlength=train.n_items)
    return np.argsort(-counts, kind="stable")[:n]


def initial_window(items: np.ndarray, ratings: np.ndarray, window: int, positive: float,
                   filler: np.ndarray) -> np.ndarray:
    """The last ``window`` positive items of a history, padded in front by ``filler`` (popular positives)."""
    pos = items[ratings >= positive][-window:]
    if len(pos) < window:
        pad = [i for i in filler if i not in set(pos)][: window - len(pos)]
        pos = np.concatenate([np.asarray(pad, np.int64), pos])
    return pos.astype(np.int64)


class Replay:
    """A ring buffer of (user, window, action, reward, next window, done)."""

    def __init__(self, size: int, window: int, dim: int) -> None:
        self.size, self.n, self.at = size, 0, 0
        self.user = np.zeros(size, np.int64)
        self.state = np.zeros((size, window), np.int64)
        self.next_state = np.zeros((size, window), np.int64)
        self.action = np.zeros((size, dim), np.float32)
        self.reward = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)

    def add(self, user: int, state: np.ndarray, action: np.ndarray, reward: float, nxt: np.ndarray,
            done: bool) -> None:
        """Store one transition (overwriting the oldest when full)."""
        k = self.at
        self.user[k], self.state[k], self.action[k], self.reward[k] = user, state, action, reward
        self.next_state[k], self.done[k] = nxt, float(done)
        self.at, self.n = (k + 1) % self.size, min(self.n + 1, self.size)

    def sample(self, rng: np.random.Generator, b: int) -> tuple[torch.Tensor, ...]:
        """A uniform minibatch as tensors."""
        ix = rng.integers(0, self.n, min(b, self.n))
        return tuple(torch.from_numpy(a[ix]) for a in (self.user, self.state, self.action, self.reward,
                                                       self.next_state, self.done))


def greedy_pick(scores: np.ndarray, remaining: np.ndarray) -> int:
    """Position (in ``remaining``) of the best-scoring remaining item (ties: the first)."""
    return int(np.argmax(scores[remaining]))


def _first_states(model: DRR, past: UserHistory, split: RatingLog, filler: np.ndarray, c: DDPGConfig):
    """Each evaluated user (>= k items in ``split``): (user, candidate items, their ratings, first state)."""
    for u, rows in enumerate(split.by_user()):
        if len(rows) >= c.k:
            state = initial_window(past.items[u], past.ratings[u], model.config.window, c.positive, filler)
            yield u, split.item[rows], split.rating[rows], state


def evaluate(model: DRR, past: UserHistory, split: RatingLog, filler: np.ndarray, c: DDPGConfig) -> dict:
    """precision@k of the policy with logged feedback, and of one static ranking by its first action."""
    model.eval()
    hits, static, users = [], [], 0
    with torch.no_grad():
        for u, cand, rating, state in _first_states(model, past, split, filler, c):
            users += 1
            remaining = np.arange(len(cand))
            got = 0
            for step in range(c.k):
                sc = model.scores(torch.tensor([u]), torch.from_numpy(state)[None]).numpy()[0][cand]
                if step == 0:
                    static.append(float((rating[np.argsort(-sc, kind="stable")[: c.k]] >= c.positive).mean()))
                j = remaining[greedy_pick(sc, remaining)]
                remaining = remaining[remaining != j]
                if rating[j] >= c.positive:
                    got += 1
                    state = np.concatenate([state[1:], [cand[j]]])
            hits.append(got / c.k)
    model.train()
    return {f"precision@{c.k}": float(np.mean(hits)) if hits else 0.0,
            f"static_precision@{c.k}": float(np.mean(static)) if static else 0.0, "users": users}


class ReferencePolicy(nn.Module):
    """The DRR action that ranks as PMF does: the user's frozen [u; 1], unit length (a . [v_i; b_i] orders a
    user's items as PMF's predicted rating, mu + b_u being constant per user), so ``evaluate`` of it is PMF's
    precision: evidence that DRR's policy class contains PMF's ranking."""

    def __init__(self, model: DRR) -> None:
        super().__init__()
        self.config, self.users, self.items = model.config, model.users, model.items

    def action(self, user: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """PMF's direction for each user (the state is not read)."""
        return nn.functional.normalize(self.users[user], dim=1)

    def scores(self, user: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
        """a . e_i for every item, as ``DRR.scores``."""
        return self.action(user, recent) @ self.items.T


def probe(model: DRR, past: UserHistory, split: RatingLog, filler: np.ndarray, c: DDPGConfig) -> dict:
    """Where a DRR policy stands, over the evaluated users' first states: the mean cosine between its action
    and PMF's direction (``ReferencePolicy``), and precision@k of ranking the candidates by its critic,
    Q(s, e_i) with e_i as its replay holds executed items (unit vectors, or raw with ``critic_action``): whether
    the learned value orders items well, i.e. whether a shortfall lies in the critic or in the actor's ascent."""
    ref = ReferencePolicy(model)
    acts = nn.functional.normalize(model.items, dim=1) if c.critic_action == "unit" else model.items
    cosines, critic = [], []
    with torch.no_grad():
        for u, cand, rating, state in _first_states(model, past, split, filler, c):
            s = torch.from_numpy(state)[None]
            cosines.append(float(model.action(torch.tensor([u]), s)[0] @ ref.action(torch.tensor([u]), s)[0]))
            su, si = model.embed(torch.full((len(cand),), u), s.repeat(len(cand), 1))
            q = model.critic(su, si, acts[torch.from_numpy(cand)]).numpy()
            critic.append(float((rating[np.argsort(-q, kind="stable")[: c.k]] >= c.positive).mean()))
    return {"cosine_to_pmf": float(np.mean(cosines)) if cosines else 0.0,
            f"critic_precision@{c.k}": float(np.mean(critic)) if critic else 0.0}


@dataclass
class TrainedPolicy:
    """The best actor by validation precision, and the training curves."""
    model: DRR
    curve: list[dict] = field(default_factory=list)
    best_episode: int = 0
    seconds: float = 0.0


def train_ddpg(model: DRR, sim: RatingSimulator, train: RatingLog, valid: RatingLog, filler: np.ndarray,
               c: DDPGConfig) -> TrainedPolicy:
    """DDPG episodes over the training users (see the module doc); the best actor on validation is kept."""
    torch.manual_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    window, dim = model.config.window, model.items.shape[1]
    hist = UserHistory.of(train)
    eligible = [u for u in range(train.n_users) if len(hist.items[u]) > c.episode_length]
    if not eligible:
        raise ValueError(f"train: no user has more than episode_length={c.episode_length} training ratings")
    target = copy.deepcopy(model)
    emb = model.items.numpy()
    unit_items = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    executed = unit_items if c.critic_action == "unit" else emb  # what the replay stores for an executed item
    executed_t = torch.from_numpy(executed)
    a_opt = torch.optim.Adam(model.actor.parameters(), lr=c.actor_lr)
    q_opt = torch.optim.Adam(model.critic.parameters(), lr=c.critic_lr)
    replay = Replay(c.buffer, window, dim)
    out = TrainedPolicy(model=copy.deepcopy(model))
    best, rewards, t0 = -1.0, [], time.perf_counter()
    for ep in tqdm(range(1, c.episodes + 1), desc=f"DRR-{model.config.state}", disable=not c.progress):
        u = int(rng.choice(eligible))
        items, ratings = hist.items[u], hist.ratings[u]
        cut = int(rng.integers(0, len(items) - c.episode_length))
        state = initial_window(items[:cut], ratings[:cut], window, c.positive, filler)
        cand = items[cut:]
        remaining = np.arange(len(cand))
        total = 0.0
        for step in range(c.episode_length):
            with torch.no_grad():
                a = model.action(torch.tensor([u]), torch.from_numpy(state)[None])[0].numpy()
            a = a + c.noise * rng.normal(size=dim).astype(np.float32)
            a = a / max(float(np.linalg.norm(a)), 1e-12)  # actions live on the unit sphere
            if rng.random() < c.epsilon:
                j = int(rng.choice(remaining))
            else:
                j = remaining[greedy_pick(emb[cand] @ a, remaining)]
            remaining = remaining[remaining != j]
            r = sim.reward(u, int(cand[j]))
            total += r
            nxt = np.concatenate([state[1:], [cand[j]]]) if r > 0 else state
            done = step == c.episode_length - 1 or not len(remaining)
            replay.add(u, state, executed[cand[j]], r, nxt, done)
            state = nxt
            _update(model, target, replay, rng, a_opt, q_opt, c, executed_t)
            if not len(remaining):
                break
        rewards.append(total)
        if ep % c.eval_every == 0 or ep == c.episodes:
            v = evaluate(model, hist, valid, filler, c)
            out.curve.append({"episode": ep, "mean_reward": float(np.mean(rewards[-c.eval_every:])),
                              f"valid_precision@{c.k}": v[f"precision@{c.k}"]})
            if v[f"precision@{c.k}"] > best:
                best, out.best_episode = v[f"precision@{c.k}"], ep
                out.model = copy.deepcopy(model)
    out.seconds = time.perf_counter() - t0
    return out


def _update(model: DRR, target: DRR, replay: Replay, rng: np.random.Generator, a_opt, q_opt, c: DDPGConfig,
            executed: torch.Tensor) -> None:
    if replay.n < c.batch_size:
        return
    user, state, action, reward, nxt, done = replay.sample(rng, c.batch_size)
    with torch.no_grad():  # the target's next action, as executed: the vector of the item it would pick
        nu, ni = target.embed(user, nxt)
        nxt_item = (target.actor(nu, ni) @ target.items.T).argmax(1)
        y = reward + c.gamma * (1 - done) * target.critic(nu, ni, executed[nxt_item])
    su, si = model.embed(user, state)
    q_loss = torch.nn.functional.mse_loss(model.critic(su, si, action), y)
    q_opt.zero_grad()
    q_loss.backward()
    q_opt.step()
    a_loss = -model.critic(su, si, model.actor(su, si)).mean()
    a_opt.zero_grad()
    a_loss.backward()
    a_opt.step()
    with torch.no_grad():
        for p, tp in zip(model.parameters(), target.parameters()):
            tp.mul_(1 - c.tau).add_(c.tau * p)


def train_drr(config, vectors: tuple[np.ndarray, np.ndarray], sim: RatingSimulator, train: RatingLog,
              valid: RatingLog, test: RatingLog, filler: np.ndarray, c: DDPGConfig) -> tuple[TrainedPolicy, dict]:
    """A DRR policy of ``config`` over the frozen ``vectors`` (users, items), its initial weights seeded by
    ``c.seed``, trained by DDPG; the trained policy and its test precision (the state starts from the training
    and validation ratings). The training job's rl view and the rl experiment both train through this."""
    torch.manual_seed(c.seed)  # the actor's and critic's initial weights (train_ddpg seeds what follows)
    trained = train_ddpg(build_model(vectors, config), sim, train, valid, filler, c)
    return trained, evaluate(trained.model, UserHistory.of(train, valid), test, filler, c)
