"""Streams served to Socket.IO clients (python-socketio), over WebSocket and polling.

A stream request carries an ack id; each item arrives as an event of the request's name
whose last argument is ``{"id": <ack id>, "seq": n}``; the ack answers the end (the final
value, or ``null, {"cancelled": true}``); ``emit("$cancel", ackId)`` cancels it.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import socketio

from gatewayasgi import (
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.socketio import SocketIO
from tests.servers import TIMEOUT, run_server, server_until

pytestmark = pytest.mark.anyio


@WebSocketGateway("/")
class Tokens:
    def __init__(self) -> None:
        self.closed = 0

    @SubscribeMessage("prompt")
    async def prompt(self, n: int = MessageBody()) -> Any:
        for i in range(n):
            yield f"t{i}"
        yield StreamEnd({"tokens": n})

    @SubscribeMessage("endless")
    async def endless(self) -> Any:
        try:
            while True:
                yield "x"
                await anyio.sleep(0.02)
        finally:
            self.closed += 1


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_socketio_clients_read_streams_and_cancel_them(server: str, transport: str) -> None:
    app = GatewayMiddleware(gateways=[Tokens], socketio=SocketIO())
    tokens = app.get(Tokens)
    async with run_server(app, server) as address:
        sio = socketio.AsyncClient()
        items: list[tuple[str, int]] = []
        sio.on("prompt", lambda item, meta: items.append((item, meta["seq"])))
        ticks: list[Any] = []
        sio.on("endless", lambda item, meta: ticks.append(meta))
        await sio.connect(f"http://{address}", transports=[transport])
        try:
            assert await sio.call("prompt", 3, timeout=TIMEOUT) == {"tokens": 3}
            with anyio.fail_after(TIMEOUT):  # the client hands events to tasks
                while len(items) < 3:
                    await anyio.sleep(0.01)
            assert items == [("t0", 1), ("t1", 2), ("t2", 3)]

            ended: list[Any] = []
            await sio.emit("endless", callback=lambda *args: ended.append(args))
            with anyio.fail_after(TIMEOUT):
                while not ticks:
                    await anyio.sleep(0.01)
            await sio.emit("$cancel", ticks[0]["id"])
            await server_until(address, lambda: tokens.closed == 1)
            with anyio.fail_after(TIMEOUT):
                while not ended:
                    await anyio.sleep(0.01)
            assert ended == [(None, {"cancelled": True})]
        finally:
            await sio.disconnect()
