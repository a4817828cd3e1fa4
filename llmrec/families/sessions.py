"""The sessions view (the session family: AHC-KNN, SKNN, V-SKNN): a data set's interactions cut into
anonymous sessions by pauses in its time column (``job.session``: ``llmrec.data.sessions.SessionViewConfig``), split by session
start time as SR-GNN's preprocessing does. The models are fitted, not trained by the loop: the context is
the catalogue and the training sessions, so a saved model folder holds those (``sessions.npz``) and loading
it refits the index (deterministic, seconds). A user's recommendations come from their latest session in
the data: the next click after it."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from llmrec.data.schema import RecData
from llmrec.data.sessions import Sessions, cut_by_gap, split_sessions, user_sessions
from llmrec.errors import DataError
from llmrec.families.base import VIEWS, FitView, Prepared, indices_of
from llmrec.models import build_model
from llmrec.models.session.base import next_click_metrics


@dataclass
class SessionContext:
    """What a session model is fitted on: the catalogue (item ids by index) and the training sessions."""
    item_ids: list[str]
    train: list[np.ndarray]
    starts: np.ndarray


class SessionView(FitView):
    """Sessions cut from the job's data by time gaps; next-click HR@k / MRR@k over every prefix."""
    name = "sessions"
    state_file = "sessions.npz"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """The job's data as time-split sessions (item indices into the training catalogue)."""
        files = getattr(job.data, "files", None)
        if files is not None and files.file_order_is_time:
            raise DataError("data.files.file_order_is_time: sessions are cut at pauses in real time; name the time "
                            "column (columns.time)")
        raw, starts = user_sessions(data, job.session)
        s = split_sessions(raw, starts, job.session)
        ctx = SessionContext([str(i) for i in s.item_ids], s.train, s.train_start)
        return Prepared(data, ctx, s.train, s.valid, s.test)

    def fit(self, job: Any, p: Prepared, config: Any) -> tuple[Any, dict]:
        """Index the training sessions; HR@k / MRR@k on the validation and test prefixes."""
        ctx: SessionContext = p.context
        t = time.perf_counter()
        model = build_model(None, config).fit(ctx.train, ctx.starts, len(ctx.item_ids))
        fit_seconds = time.perf_counter() - t
        valid = self._metrics(job, p, model, "valid")
        test = self._metrics(job, p, model, "test")
        return model, {"data": p.data.name, "sessions": {"train": len(p.train), "valid": len(p.valid),
                                                         "test": len(p.test)},
                       "items": len(ctx.item_ids), "model": model.config.model_dump(mode="json"), "family": "session",
                       "task": "fit", "primary_metric": f"hr@{job.session.cutoff}", "valid": valid, "test": test,
                       "fit_seconds": fit_seconds, "history": []}

    def evaluate(self, job: Any, p: Prepared, model: Any) -> dict:
        """HR@k / MRR@k on the test prefixes."""
        return self._metrics(job, p, model, "test")

    @staticmethod
    def _metrics(job: Any, p: Prepared, model: Any, split: str) -> dict:
        s = Sessions(item_ids=np.asarray(p.context.item_ids, dtype=object), train=p.train, valid=p.valid,
                     test=p.test, train_start=p.context.starts)
        return next_click_metrics(model, s, split, job.session.cutoff)

    def save_state(self, folder: Path, model: Any) -> None:
        """Nothing beyond the context: a session model is its training sessions (``save_context``)."""

    def load_state(self, folder: Path, context: SessionContext, config: Any) -> Any:
        """The model refitted on the saved training sessions."""
        return build_model(None, config).fit(context.train, context.starts, len(context.item_ids))

    def save_context(self, folder: Path, context: SessionContext) -> None:
        """The catalogue (``encoder.json``) and the training sessions (``sessions.npz``: clicks, offsets, starts)."""
        (folder / "encoder.json").write_text(json.dumps({"items": context.item_ids}))
        lengths = np.array([len(s) for s in context.train], np.int64)
        np.savez(folder / self.state_file, clicks=np.concatenate(context.train).astype(np.int64),
                 offsets=np.r_[0, np.cumsum(lengths)], starts=context.starts)

    def load_context(self, folder: Path) -> SessionContext:
        """The context ``save_context`` wrote."""
        items = json.loads((folder / "encoder.json").read_text())["items"]
        z = np.load(folder / self.state_file)
        off = z["offsets"]
        train = [z["clicks"][a:b] for a, b in zip(off[:-1], off[1:])]
        return SessionContext(items, train, z["starts"])

    def scores(self, model, context: SessionContext, job, data, user, include_seen):
        """Next-click scores after ``user``'s latest session in ``data`` (its items the model does not know
        are left out); the session's own items are not recommended unless ``include_seen``."""
        users = np.asarray(data.columns[data.user_col]).astype(str)
        if user not in set(users):
            raise DataError(f"user: {user!r} is not a user of {data.name}")
        rows = users == user
        sessions, starts = cut_by_gap(users[rows], np.asarray(data.columns[data.item_col])[rows].astype(str),
                                      np.asarray(data.columns[data.time], np.float64)[rows], job.session.gap_seconds)
        latest = sessions[int(np.argmax(starts))]
        index = {item: n for n, item in enumerate(context.item_ids)}
        known = np.array([index[i] for i in latest if i in index], np.int64)
        if not len(known):
            raise DataError(f"user: none of the {len(latest)} items of {user!r}'s latest session is known to the model")
        scores = np.asarray(model.scores(known), np.float64)
        if not include_seen:
            scores[known] = -np.inf
        return scores, list(context.item_ids)

    def session_scores(self, model, context: SessionContext, items: list[str]) -> np.ndarray:
        """Next-click scores after a session given as item ids (an anonymous visitor's clicks)."""
        return np.asarray(model.scores(indices_of(items, context.item_ids, "known to the model")), np.float64)


VIEWS.add("sessions", SessionView())
