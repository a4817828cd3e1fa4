"""Peer runs in the peers' environment: the command of one run, for the peer libraries (``eval/peers/
peer_ctr.py``) and for papers' own code (issue 37; ``eval/peers/peer_<name>.py`` drives a checkout that
``make peers-code`` clones at the commit docs/methods/ compares, every shim on our side, their code untouched)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llmrec.errors import BackendError
from llmrec.families.base import Prepared

PAPER_CODE = {"helen": ".peers/Helen", "cigf": ".peers/CIGF"}  # library name -> checkout, relative to ours
PAPER_PYTHON = {"cigf": ".venv-cigf/bin/python"}  # a paper's code that needs its own interpreter (TF 1.14)


def peer_command(root: Path, folder: Path, library: str, model: str, seed: int, optimizer: str | None,
                 extra: list[str] | None = None) -> list[str]:
    """The script and arguments of one peer run on ``folder``'s ``split.npz`` / ``spec.json`` (a paper's code
    also gets its checkout and optimizer; a graph paper's code its output file and epoch cap, ``extra``); a
    missing checkout is a named error."""
    split, spec = str(Path(folder) / "split.npz"), str(Path(folder) / "spec.json")
    if library in PAPER_CODE:
        checkout = root / PAPER_CODE[library]
        if not checkout.is_dir():
            raise BackendError(f"peer {library}: {PAPER_CODE[library]} not found (run `make peers-code`)")
        script = str(root / "eval" / "peers" / f"peer_{library}.py")
        if extra is not None:  # graph papers: split, output, checkout, seed, model, epochs
            return [script, split, extra[0], str(checkout), str(seed), model, *extra[1:]]
        return [script, split, spec, str(checkout), str(seed), model, str(optimizer)]
    return [str(root / "eval" / "peers" / "peer_ctr.py"), split, spec, library, str(seed), model]


def _ragged(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in lists])
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
    return ptr, flat


def graph_split_arrays(p: Prepared, behaviours: int) -> dict[str, np.ndarray]:
    """A prepared graph job as plain arrays for a paper's graph code (``eval/peers/peer_cigf.py``): every
    training edge (user row, item index >= 1, behaviour index, the target last; a target-only job's edges are
    all the target's), the validation users with their gold and excluded items, and each user's first test
    item (0: none)."""
    train = p.train
    beh = (np.full(len(train), behaviours - 1, dtype=np.int64) if train.behaviour is None
           else train.behaviour.numpy().astype(np.int64))
    gold_ptr, gold = _ragged(p.valid.gold)
    seen_ptr, seen = _ragged(p.valid.seen)
    first = np.zeros(len(p.context.users), dtype=np.int64)
    for u, g in zip(p.test.users.tolist(), p.test.gold):
        if len(g):
            first[u] = int(g[0])
    return {"n_users": np.int64(len(p.context.users)), "n_items": np.int64(p.context.n_items),
            "behaviours": np.int64(behaviours), "train_users": train.users.numpy().astype(np.int64),
            "train_items": train.items.numpy().astype(np.int64), "train_behaviours": beh,
            "valid_users": p.valid.users.numpy().astype(np.int64), "valid_gold_ptr": gold_ptr, "valid_gold": gold,
            "valid_seen_ptr": seen_ptr, "valid_seen": seen, "test_first": first}
