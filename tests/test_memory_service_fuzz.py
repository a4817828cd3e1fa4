"""Schemathesis (its CLI, the way an API's users run it) against a live ``llmrec memory serve`` and the
service's own OpenAPI spec: generated requests (valid and invalid bodies, queries and paths, with a tenant's
key) never get a 500, and every status code answered is one the spec documents."""
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a few hundred generated requests: CI runs it, the fast lane does not

KEY = "k" * 24


def test_no_generated_request_gets_a_server_error(tmp_path):
    import httpx

    from llmrec.memory.client import launch_service

    cli = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    if cli is None:
        pytest.skip("schemathesis is not installed (pip install 'llmrec[clients]')")
    node, base = launch_service(str(tmp_path / "s"), {KEY: "acme"}, ["--burst", "100000", "--rate", "10000"],
                                env={"PYTHONPATH": os.getcwd(), "LLMREC_HOME": str(tmp_path)}, stderr=subprocess.PIPE)
    try:
        httpx.post(f"{base}/memories", json={"user_id": "alice", "text": "I moved to Lisbon."},
                   headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        run = subprocess.run([cli, "run", f"{base}/openapi.json", "-H", f"Authorization: Bearer {KEY}",
                              "--checks", "not_a_server_error,status_code_conformance", "--max-examples", "30",
                              "--no-color"],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
        assert counts and int(counts[1]) == int(counts[2]) >= 100, run.stdout[-3000:]  # every case passed
    finally:
        node.terminate()
        node.wait(30)
