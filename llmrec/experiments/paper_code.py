"""Papers' own code run as peers (issue 37): where each checkout lives (``make peers-code`` clones it at the
commit docs/methods/ compares) and the runner script of ours that drives it (``eval/peers/peer_<name>.py``,
every shim on our side, their code untouched)."""
from __future__ import annotations

PAPER_CODE = {"helen": ".peers/Helen"}  # library name -> checkout, relative to our checkout
