"""Waiting sessions under attack: memory of the server process has a ceiling.

The attack of issue 17: connect, join 1,000 rooms with 256-character emoji names, drop
the socket, again and again. Each waiting session holds about 1.3 MiB; before the
``waiting_budget`` there was no ceiling. The server runs in a hypercorn worker process
of its own, and its memory is read from ``/proc`` (hypercorn serves from a child
process: the whole process group is summed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
import websockets

from tests.workers import Node, start_node, stop_node

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
APP = "tests.apps.waiting_app:app"
SOCKETS = 32
BUDGET = 12 * MiB
TIMEOUT = 30.0


def _rss(node: Node) -> int:
    """Resident bytes of every process in the node's process group."""
    group = os.getpgid(node.process.pid)
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


async def _request(ws: websockets.ClientConnection, event: str, data: object) -> object:
    await ws.send(json.dumps({"event": event, "data": data, "id": 1}, ensure_ascii=False))
    with anyio.fail_after(TIMEOUT):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") == 1:
                return frame.get("data")


async def _heavy_session(url: str, n: int) -> None:
    """One attacker socket: 1,000 long emoji room names, then a cut (no close)."""
    ws = await websockets.connect(url, subprotocols=["gatewayasgi"], open_timeout=TIMEOUT)
    with anyio.fail_after(TIMEOUT):
        await ws.recv()  # $session
    names = [f"{n:04d}{i:04d}" + "\U0001f600" * 248 for i in range(1000)]
    assert await _request(ws, "rooms", names) == 1000
    ws.transport.abort()


async def test_waiting_sessions_stay_under_the_waiting_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAIT_BUDGET", str(BUDGET))
    node = start_node("W", "", tmp_path, APP, "/wait")
    try:
        url = node.url
        probe = await websockets.connect(url, subprotocols=["gatewayasgi"], open_timeout=TIMEOUT)
        with anyio.fail_after(TIMEOUT):
            await probe.recv()
        # a first heavy session warms the allocator up, then the baseline
        await _heavy_session(url, 0)
        await _request(probe, "waiting", None)
        before = _rss(node)
        for n in range(1, SOCKETS + 1):
            await _heavy_session(url, n)
        with anyio.fail_after(TIMEOUT):  # every cut seen by the server
            while True:
                seen = await _request(probe, "waiting", None)
                assert isinstance(seen, dict)
                if seen["sessions"] <= SOCKETS and seen["bytes"] > 0:
                    break
                await anyio.sleep(0.05)
        await anyio.sleep(0.5)
        seen = await _request(probe, "waiting", None)
        assert isinstance(seen, dict)
        grown = _rss(node) - before
        # the accounting: under the budget, so only some of the sessions wait
        assert seen["bytes"] <= BUDGET
        assert 4 <= seen["sessions"] < SOCKETS
        # what the process holds: about the budget, far from SOCKETS x 1.4 MiB (45 MiB)
        assert grown < BUDGET + 8 * MiB, f"RSS grew {grown / MiB:.1f} MiB for {seen}"
        await probe.close()
    finally:
        stop_node(node)
