"""The ``ai`` package's ``WebSocketChatTransport`` (Node) against ``AISDKChat`` on real servers.

Each test serves ``tests/ai/app.py`` with hypercorn or uvicorn and runs ``node --test
tests/ai/node/chat.test.mjs`` against it: the package's own transport and
``readUIMessageStream``, with ``ws`` as the WebSocket, no client code of ours.

Needs ``node`` >= 20 and ``cd tests/ai/node && npm ci --no-audit --no-fund`` (``make
test`` does it); skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from tests.ai.app import make_app
from tests.servers import run_server

pytestmark = pytest.mark.anyio

NODE_DIR = Path(__file__).with_name("node")
NODE_TIMEOUT = 120.0
"""Seconds one ``node --test`` run may take (each wait in it has its own deadline)."""


def node_binary() -> str:
    """``node`` (>= 20) with this directory's ``node_modules``, or skip saying what is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: make node, or install Node.js >= 20")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < 20:
        pytest.skip(f"node >= 20 is needed, found {version.strip() or 'an unknown version'}")
    if not (NODE_DIR / "node_modules" / "ai" / "package.json").is_file():
        pytest.skip("tests/ai/node/node_modules is missing: cd tests/ai/node && npm ci")
    return node


async def run_node(
    node: str, arguments: list[str], env: dict[str, str], stdin: bytes = b""
) -> tuple[int | None, str]:
    """``node *arguments`` in ``NODE_DIR``: its exit status (None: killed at the deadline)
    and its output."""
    output = bytearray()
    process = await anyio.open_process(
        [node, *arguments],
        cwd=NODE_DIR,
        env=env,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # node --test runs the file in a child: kill them all
    )
    async with process, anyio.create_task_group() as tasks:
        assert process.stdin is not None

        async def drain() -> None:
            assert process.stdout is not None
            async for chunk in process.stdout:
                output.extend(chunk)

        tasks.start_soon(drain)
        await process.stdin.send(stdin)
        await process.stdin.aclose()
        with anyio.move_on_after(NODE_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return None, output.decode(errors="replace")
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
@pytest.mark.timeout(NODE_TIMEOUT + 30)
async def test_the_ai_sdk_transport(server: str) -> None:
    node = node_binary()
    app = make_app()
    async with run_server(app, server) as address:
        env = {**os.environ, "GATEWAY_AI_URL": f"http://{address}"}
        code, output = await run_node(
            node, ["--test", "--test-reporter=spec", "chat.test.mjs"], env
        )
    assert code == 0, output
    assert re.search(r"\bfail 0\b", output), output
    assert re.search(r"\bpass [1-9]", output), output
