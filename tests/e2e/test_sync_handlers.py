"""``def`` handlers run in anyio's worker thread pool, as FastAPI runs ``def`` endpoints.

A handler that blocks holds its own connection, not the event loop: another client's
``async def`` ping answers while it sleeps. The blocked connection's later frames are still
handled in arrival order, after the blocking one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import anyio
import pytest

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from tests.servers import SERVERS, connect, run_server

pytestmark = pytest.mark.anyio

BLOCK = 1.5
"""How long the blocking handler sleeps, seconds."""
PROMPT = 0.5
"""The most another client's ping may take meanwhile (it took ~BLOCK on the loop)."""


@WebSocketGateway("/sync")
class SyncGateway:
    @SubscribeMessage("block")
    def block(self, seconds: float = MessageBody("seconds")) -> dict[str, Any]:
        time.sleep(seconds)  # a sync driver, a blocking library call
        return {"event": "blocked", "data": threading.get_ident()}

    @SubscribeMessage("step")
    def step(self, n: int = MessageBody()) -> int:
        return n

    @SubscribeMessage("ping")
    async def ping(self) -> int:
        return threading.get_ident()

    @SubscribeMessage("loop")
    def loop(self) -> str:
        return anyio.get_current_task().name  # needs the event loop: async def only


@pytest.mark.parametrize("server", SERVERS)
async def test_a_blocking_def_handler_holds_its_connection_not_the_loop(server: str) -> None:
    app = GatewayMiddleware(gateways=[SyncGateway])
    async with (
        run_server(app, server) as address,
        connect(address, "/sync") as a,
        connect(address, "/sync") as b,
    ):
        loop_thread = (await b.request("ping"))["data"]
        await a.send("block", {"seconds": BLOCK}, id=0)
        for n in (1, 2, 3):
            await a.send("step", n, id=n)
        await anyio.sleep(0.1)  # a's handler is asleep by now
        started = time.monotonic()
        assert (await b.request("ping"))["data"] == loop_thread
        waited = time.monotonic() - started
        assert waited < PROMPT, f"a ping waited {waited:.2f}s for another client's handler"
        blocked = await a.recv()
        assert blocked["event"] == "blocked" and blocked["id"] == 0
        assert blocked["data"] != loop_thread  # it ran in a worker thread
        assert [await a.recv() for _ in range(3)] == [
            {"event": "step", "data": n, "id": n} for n in (1, 2, 3)
        ]


@pytest.mark.parametrize("server", ["hypercorn", "hypercorn-trio"])
async def test_a_def_handler_that_needs_the_loop_is_told_why_it_failed(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gatewayasgi")
    app = GatewayMiddleware(gateways=[SyncGateway])
    async with run_server(app, server) as address, connect(address, "/sync") as client:
        reply = await client.request("loop")
        assert reply == {"event": "error", "data": {"message": "Internal server error"}}
        assert await client.expect_close() == 1011
    assert any(
        "SyncGateway.loop is a def handler: it runs in a worker thread" in str(record.exc_info[1])
        for record in caplog.records
    ), [record.exc_info for record in caplog.records]
