"""What a session waiting for its client costs a worker: RSS per waiting session.

Serves ``tests/apps/waiting_app.py`` (memory history and sessions, no waiting budget) in
a hypercorn worker process, opens and cuts ``N`` connections (200 at a time), and reads
the process group's RSS from ``/proc`` before and after, each time after a
``gc.collect()`` and ``malloc_trim(0)`` in the worker (the app's ``waiting`` event), so
that what the allocator merely keeps does not count. Also prints what the waiting budget
counts for the same sessions. Run: ``.venv/bin/python -m benchmarks.waiting_memory 2000``
(at most ``max_sessions_per_address``, 1,000, wait at once from one address).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import websockets

from tests.hardening.test_waiting_memory import _request, _rss
from tests.workers import start_node, stop_node

BATCH = 200


async def _churn(url: str, count: int) -> None:
    for _ in range(count // BATCH):
        sockets = []
        for _ in range(BATCH):
            ws = await websockets.connect(url, subprotocols=["gatewayasgi"])
            await ws.recv()  # $session
            sockets.append(ws)
        for ws in sockets:
            ws.transport.abort()


async def main(count: int) -> None:
    os.environ["WAIT_BUDGET"] = "none"
    with tempfile.TemporaryDirectory() as workdir:
        node = start_node("M", "", Path(workdir), "tests.apps.waiting_app:app", "/wait")
        try:
            probe = await websockets.connect(node.url, subprotocols=["gatewayasgi"])
            await probe.recv()
            await _churn(node.url, 2 * BATCH)  # warm the allocator up
            await asyncio.sleep(0.5)
            first = await _request(probe, "waiting", None)
            before = _rss(node)
            await _churn(node.url, count)
            await asyncio.sleep(1.0)
            last = await _request(probe, "waiting", None)
            after = _rss(node)
            assert isinstance(first, dict) and isinstance(last, dict)
            waiting = last["sessions"] - first["sessions"]
            counted = (last["bytes"] - first["bytes"]) / waiting
            print(
                f"{waiting} more waiting sessions: RSS +{(after - before) / 1e6:.1f} MB, "
                f"{(after - before) / waiting:,.0f} bytes each; the budget counts "
                f"{counted:,.0f} each"
            )
        finally:
            stop_node(node)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
