"""A small continuous-batching decoder over a transformers causal LM with a KV cache.

Static batching (plain ``model.generate`` on a padded batch) keeps every row busy until the
longest one ends, so the compute spent on finished rows is wasted. Here a finished row leaves
the batch at once and a queued prompt takes its slot: its prompt is prefilled and its KV cache is
left-padded into the running cache. Greedy results equal one-prompt-at-a-time decoding.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import inspect

import torch


@dataclass
class RowResult:
    """Tokens, log-probabilities and finish reason decoded so far for one row."""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)  # per token: the k likeliest (id, logprob)
    eos_logprob: float | None = None  # of the end-of-sequence token, when the row ended on it
    finish_reason: str = "length"


@dataclass
class DecodeSettings:
    """Decoding settings of a batch: max new tokens, sampling, stop check, log-probabilities, batch size."""
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    want_logprobs: bool = False
    top_logprobs: int = 0  # also the k likeliest tokens at every step (with want_logprobs)
    batch_size: int = 16
    # called with (row index, generated token ids) -> True when a stop string was produced
    stop_check: Callable[[list[int]], bool] | None = None


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    extra = width - t.shape[dim]
    if extra <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class _Batch:
    """The running rows: their cache tensors per layer, attention mask, last positions and states."""

    def __init__(self) -> None:
        self.cache = None  # a transformers DynamicCache
        self.mask: torch.Tensor | None = None  # [B, L]
        self.last_pos: torch.Tensor | None = None  # [B]
        self.next_tok: torch.Tensor | None = None  # [B]
        self.rows: list[int] = []  # prompt index of each batch row

    def __len__(self) -> int:
        return len(self.rows)

    def merge(self, other: "_Batch") -> None:
        if self.cache is None or not self.rows:
            self.__dict__.update(other.__dict__)
            return
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)], 0)
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)], 0)
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(other.mask, width, 1)], 0)
        self.last_pos = torch.cat([self.last_pos, other.last_pos])
        self.next_tok = torch.cat([self.next_tok, other.next_tok])
        self.rows = self.rows + other.rows

    def keep(self, keep: torch.Tensor) -> None:
        idx = keep.nonzero().squeeze(1)
        for layer in self.cache.layers:
            layer.keys = layer.keys[idx]
            layer.values = layer.values[idx]
        self.mask = self.mask[idx]
        self.last_pos = self.last_pos[idx]
        self.next_tok = self.next_tok[idx]
        self.rows = [self.rows[i] for i in idx.tolist()]
        # drop leading columns that are padding for every remaining row
        if self.rows:
            used = self.mask.any(0).nonzero()
            first = int(used[0]) if len(used) else self.mask.shape[1]
            if first > 0:
                self.mask = self.mask[:, first:]
                for layer in self.cache.layers:
                    layer.keys = layer.keys[:, :, first:]
                    layer.values = layer.values[:, :, first:]


class ContinuousDecoder:
    """Continuous batching within one ``generate`` call: rows that finish leave the batch and waiting prompts
    take their place, over the model's KV cache."""
    def __init__(self, model, pad_id: int, eos_ids: set[int]) -> None:
        self.model = model
        self.pad_id = pad_id
        self.eos_ids = eos_ids
        # transformers 5 renamed the forward argument `past_key_values` to `cache`
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def _choose(self, logits: torch.Tensor, s: DecodeSettings, gen: torch.Generator | None):
        logits = logits.float()
        if s.temperature > 0:
            probs = torch.softmax(logits / s.temperature, dim=-1)
            if s.top_p < 1.0:
                sp, si = probs.sort(dim=-1, descending=True)
                cut = sp.cumsum(-1) - sp > s.top_p
                sp = sp.masked_fill(cut, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, si, sp)
            tok = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        else:
            tok = logits.argmax(-1)
        if not s.want_logprobs:
            return tok, None
        logp = torch.log_softmax(logits, -1)
        lp = logp.gather(1, tok[:, None]).squeeze(1)
        if s.top_logprobs:  # each row: (chosen logprob, [(id, logprob) of the k likeliest])
            vals, ids = logp.topk(s.top_logprobs, dim=-1)
            return tok, [(float(lp[j]), list(zip(ids[j].tolist(), vals[j].tolist()))) for j in range(len(tok))]
        return tok, lp

    def _prefill_batch(self, prompts: list[list[int]], rows: list[int]) -> tuple[_Batch, torch.Tensor]:
        """Left-padded prompts through the model: the new rows' batch state and their last-position logits."""
        from transformers import DynamicCache

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p):] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        cache = DynamicCache()
        dev = self.model.device
        out = self.model(
            input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
            use_cache=True, logits_to_keep=1, **{self._cache_arg: cache},
        )
        b = _Batch()
        b.cache, b.mask, b.last_pos, b.rows = cache, mask, pos[:, -1], rows
        return b, out.logits[:, -1].cpu()

    def _prefill(self, prompts: list[list[int]], rows: list[int], s, gen) -> tuple[_Batch, torch.Tensor, torch.Tensor | None]:
        b, logits = self._prefill_batch(prompts, rows)
        tok, lp = self._choose(logits, s, gen)
        b.next_tok = tok
        return b, tok, lp

    @torch.inference_mode()
    def run(self, prompts: Sequence[list[int]], s: DecodeSettings) -> list[RowResult]:
        """Decode every prompt (token ids) with continuous batching; results in prompt order."""
        results = [RowResult() for _ in prompts]
        order = deque(sorted(range(len(prompts)), key=lambda i: len(prompts[i])))
        gen = None
        if s.temperature > 0:
            gen = torch.Generator().manual_seed(s.seed if s.seed is not None else torch.seed())
        batch = _Batch()
        admit_at = max(1, s.batch_size // 4)
        # Finished rows stay in the batch (masked out of the results) until the next admission or until
        # half the rows are finished: dropping them from the KV cache copies every layer's cache, which
        # costs more than decoding a few idle rows.
        alive = torch.zeros(0, dtype=torch.bool)
        while order or bool(alive.any()):
            live = int(alive.sum())
            free = s.batch_size - live
            admit = bool(order) and (free >= admit_at or live == 0)
            if len(batch) and (admit or live * 2 <= len(batch)) and not bool(alive.all()):
                batch.keep(alive)
                alive = alive[alive]
            if admit:
                take = [order.popleft() for _ in range(min(free, len(order)))]
                new, tok, lp = self._prefill([list(prompts[i]) for i in take], take, s, gen)
                done = self._record(new.rows, tok, lp, results, s, torch.ones(len(take), dtype=torch.bool))
                if done.any():
                    new.keep(~done)
                if len(new):
                    batch.merge(new)
                    alive = torch.cat([alive, torch.ones(len(new), dtype=torch.bool)])
                if not bool(alive.any()):
                    continue
            dev = self.model.device
            batch.mask = torch.cat([batch.mask, torch.ones((len(batch), 1), dtype=torch.long)], 1)
            batch.last_pos = batch.last_pos + 1
            out = self.model(
                input_ids=batch.next_tok[:, None].to(dev), attention_mask=batch.mask.to(dev),
                position_ids=batch.last_pos[:, None].to(dev), use_cache=True, **{self._cache_arg: batch.cache},
            )
            tok, lp = self._choose(out.logits[:, -1].cpu(), s, gen)
            done = self._record(batch.rows, tok, lp, results, s, alive)
            batch.next_tok = tok
            alive = alive & ~done
        return results

    def _record(self, rows: list[int], tok: torch.Tensor, lp, results: list[RowResult], s,
                alive: torch.Tensor) -> torch.Tensor:
        done = torch.zeros(len(rows), dtype=torch.bool)
        for j, (r, t, a) in enumerate(zip(rows, tok.tolist(), alive.tolist())):
            if a:
                done[j] = self.advance(results[r], t, None if lp is None else lp[j], s.max_new_tokens,
                                       s.stop_check)
        return done

    def advance(self, res: RowResult, token: int, logprob, max_new_tokens: int,
                stop_check: Callable[[list[int]], bool] | None) -> bool:
        """Append one chosen token to a row's result (``logprob``: None, its log-probability, or (it, the k
        likeliest (id, logprob))); True when the row is finished (eos, stop string, length). The top-k of a
        step that ends the row at eos is kept too: it is what a scorer asks for."""
        if isinstance(logprob, tuple):
            logprob, top = logprob
            res.top.append(top)
        if token in self.eos_ids:
            res.finish_reason = "stop"
            res.eos_logprob = None if logprob is None else float(logprob)
            return True
        res.tokens.append(token)
        if logprob is not None:
            res.logprobs.append(float(logprob))
        if stop_check is not None and stop_check(res.tokens):
            res.finish_reason = "stop"
            return True
        if len(res.tokens) >= max_new_tokens:
            res.finish_reason = "length"
            return True
        return False


@dataclass
class RowState:
    """One request inside a ``DecodeSession``: its own decoding settings, result so far, and cancel flag."""
    prompt: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    want_logprobs: bool = False
    top_logprobs: int = 0
    stop_check: Callable[[list[int]], bool] | None = None
    generator: torch.Generator | None = None
    result: RowResult = field(default_factory=RowResult)
    finished: bool = False
    cancelled: bool = False


class DecodeSession:
    """Continuous batching ACROSS requests (the serving loop): rows join between decode steps (their prompt
    prefilled, their KV cache merged into the running one), every step decodes one token for every row, and a
    row leaves as soon as it finishes or is cancelled. A short request that arrives while a long one runs
    therefore finishes after about its own number of steps, not after the long one. Each row keeps its own
    settings (max tokens, sampling, stop strings, log-probabilities)."""

    def __init__(self, decoder: ContinuousDecoder) -> None:
        self.decoder = decoder
        self.batch = _Batch()
        self.states: list[RowState] = []  # aligned with the batch rows

    def __len__(self) -> int:
        return len(self.states)

    def _choose(self, logits: torch.Tensor, states: list[RowState]):
        toks, lps = [], []
        for j, st in enumerate(states):
            s = DecodeSettings(max_new_tokens=st.max_new_tokens, temperature=st.temperature, top_p=st.top_p,
                               want_logprobs=st.want_logprobs, top_logprobs=st.top_logprobs)
            tok, lp = self.decoder._choose(logits[j : j + 1], s, st.generator)
            toks.append(tok)
            lps.append(None if lp is None else lp[0])
        return torch.cat(toks), lps

    def _record(self, states: list[RowState], tok: torch.Tensor, lps: list) -> None:
        for st, t, lp in zip(states, tok.tolist(), lps):
            if not st.finished:
                st.finished = self.decoder.advance(st.result, t, lp, st.max_new_tokens, st.stop_check)

    @torch.inference_mode()
    def admit(self, states: list[RowState]) -> None:
        """Prefill these rows and add them to the running batch."""
        if not states:
            return
        new, logits = self.decoder._prefill_batch([st.prompt for st in states], list(range(len(states))))
        tok, lps = self._choose(logits, states)  # each row with its own settings
        new.next_tok = tok
        self._record(states, tok, lps)
        self.batch.merge(new)
        self.states = self.states + states

    @torch.inference_mode()
    def step(self) -> list[RowState]:
        """Drop the rows that ended (finished or cancelled), decode one token for the rest; returns the rows
        that finished in this step (rows can also finish at admission: check ``finished`` after ``admit``)."""
        keep = [not (st.finished or st.cancelled) for st in self.states]
        if not all(keep):
            if any(keep):
                self.batch.keep(torch.tensor(keep, dtype=torch.bool))
                self.states = [st for st, k in zip(self.states, keep) if k]
            else:
                self.batch, self.states = _Batch(), []
        if not self.states:
            return []
        b, dev = self.batch, self.decoder.model.device
        b.mask = torch.cat([b.mask, torch.ones((len(b), 1), dtype=torch.long)], 1)
        b.last_pos = b.last_pos + 1
        out = self.decoder.model(
            input_ids=b.next_tok[:, None].to(dev), attention_mask=b.mask.to(dev),
            position_ids=b.last_pos[:, None].to(dev), use_cache=True, **{self.decoder._cache_arg: b.cache})
        tok, lps = self._choose(out.logits[:, -1].cpu(), self.states)
        b.next_tok = tok
        self._record(self.states, tok, lps)
        return [st for st in self.states if st.finished]
