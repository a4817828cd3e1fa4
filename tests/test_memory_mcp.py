"""The MCP memory server through the MCP SDK's own client: the server launched as a subprocess over stdio
(as desktop clients launch it), a memory stored, recalled, forgotten; bad arguments are tool errors."""
import asyncio
import json
import os
import sys

import pytest


def _payload(result) -> dict:
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


@pytest.mark.slow
def test_the_sdk_client_remembers_recalls_and_forgets_over_stdio(tmp_path):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    env = {**os.environ, "PYTHONPATH": os.getcwd(), "LLMREC_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    params = StdioServerParameters(command=sys.executable, env=env,
                                   args=["-m", "llmrec.cli", "memory", "mcp", "--store", str(tmp_path / "store")])

    async def session() -> None:
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"remember", "recall", "forget"}
            stored = _payload(await client.call_tool("remember", {"user_id": "ada", "text": "My cat is called Ziggy."}))
            await client.call_tool("remember", {"user_id": "ada", "text": "I work as a nurse in Leeds."})
            await client.call_tool("remember", {"user_id": "bob", "text": "Bob's cat is called Max."})
            got = _payload(await client.call_tool("recall", {"user_id": "ada", "query": "What is my cat's name?", "k": 2}))
            assert got["memories"][0]["id"] == stored["id"] and "Ziggy" in got["memories"][0]["text"]
            assert all("Max" not in m["text"] for m in got["memories"])  # another user's memory never comes back
            gone = _payload(await client.call_tool("forget", {"user_id": "ada", "memory_id": stored["id"]}))
            assert gone["deleted"] >= 1
            again = _payload(await client.call_tool("recall", {"user_id": "ada", "query": "cat name", "k": 5}))
            assert all(m["id"] != stored["id"] for m in again["memories"])
            bad = await client.call_tool("recall", {"user_id": "ada", "query": "x", "k": 0})
            assert bad.is_error and "k:" in bad.content[0].text

    asyncio.run(session())
