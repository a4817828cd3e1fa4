"""Peer runs in the peers' environment: the command of one run, for the peer libraries (``eval/peers/
peer_ctr.py``) and for papers' own code (issue 37; ``eval/peers/peer_<name>.py`` drives a checkout that
``make peers-code`` clones at the commit docs/methods/ compares, every shim on our side, their code untouched)."""
from __future__ import annotations

from pathlib import Path

from llmrec.errors import BackendError

PAPER_CODE = {"helen": ".peers/Helen"}  # library name -> checkout, relative to our checkout


def peer_command(root: Path, folder: Path, library: str, model: str, seed: int, optimizer: str | None) -> list[str]:
    """The script and arguments of one peer run on ``folder``'s ``split.npz`` / ``spec.json`` (a paper's code
    also gets its checkout and optimizer); a missing checkout is a named error."""
    split, spec = str(Path(folder) / "split.npz"), str(Path(folder) / "spec.json")
    if library in PAPER_CODE:
        checkout = root / PAPER_CODE[library]
        if not checkout.is_dir():
            raise BackendError(f"peer {library}: {PAPER_CODE[library]} not found (run `make peers-code`)")
        return [str(root / "eval" / "peers" / f"peer_{library}.py"), split, spec, str(checkout), str(seed), model,
                str(optimizer)]
    return [str(root / "eval" / "peers" / "peer_ctr.py"), split, spec, library, str(seed), model]
