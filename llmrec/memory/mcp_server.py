"""``llmrec memory mcp``: llmrec memory as an MCP server (the official ``mcp`` SDK), so coding agents and desktop
assistants can remember, recall and forget through any MCP client.

    llmrec memory mcp --store ~/.cache/llmrec/memory/default            # stdio (what desktop clients launch)
    llmrec memory mcp --store postgresql://... --transport streamable-http --port 8766

Tools (every one scoped to ``user_id``; one server may serve many users, on one store or the shared one):

- ``remember(user_id, text, session_id?)``: store a memory; returns its id;
- ``recall(user_id, query, k=5, method="hybrid")``: the best memories, best first (id, text, score);
- ``forget(user_id, memory_id)``: delete one memory; returns how many units went with it.

Bad arguments come back as tool errors naming the argument (the SDK marks the result ``isError``)."""
from __future__ import annotations

import functools
from typing import Literal

from llmrec.memory.api import Memory
from llmrec.retrieval import make_retriever  # retrievers registered by llmrec.memory's __init__


def build_server(memory: Memory, name: str = "llmrec-memory"):
    """An ``MCPServer`` whose tools read and write ``memory``."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    def checked(fn):
        """The tool's bad input (ValueError, KeyError: the memory's one-line messages) as a tool error the
        client sees (the SDK hides the text of other exceptions)."""
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (ValueError, KeyError) as e:
                raise ToolError(str(e).strip("'\"")) from None
        return run

    server = MCPServer(name, instructions="Long-term memory of each user: remember facts, recall them by "
                                          "meaning, forget them on request.")

    @server.tool()
    @checked
    def remember(user_id: str, text: str, session_id: str | None = None) -> dict:
        """Store one memory (a fact, a preference, a message) for user_id; returns its id."""
        ids = memory.add(user_id, text, session_id=session_id)
        return {"id": ids[0]}

    @server.tool()
    @checked
    def recall(user_id: str, query: str, k: int = 5,
               method: Literal["dense", "bm25", "hybrid", "memgas", "rfmem"] = "hybrid") -> dict:
        """The k memories of user_id that best answer query, best first."""
        if not 1 <= k <= 100:
            raise ValueError("k: must be between 1 and 100")
        if method in ("dense", "bm25", "hybrid"):
            hits = memory.search(user_id, query, k=k, method=method)
        else:
            hits = make_retriever(method, memory, {}).retrieve(user_id, query, k)
        return {"memories": [{"id": h.id, "text": h.text, "score": round(h.score, 6)} for h in hits]}

    @server.tool()
    @checked
    def forget(user_id: str, memory_id: str) -> dict:
        """Delete one memory of user_id by its id; returns how many stored units went with it."""
        return {"deleted": memory.delete(user_id, memory_id)}

    return server
