"""A room emit carrying bytes reaches Socket.IO members over WebSocket as over polling.

It used to stall the emitting namespace on WebSocket: the outbox starts a send in the
emitting handler's task (an eager write) and its writer task finishes it, and the
socket's attachment lock was an ``anyio.Lock``, bound to the task that took it.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import socketio

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.socketio import SocketIO
from tests.servers import TIMEOUT, run_server

pytestmark = pytest.mark.anyio


@WebSocketGateway("/")
class Blobs:
    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return "joined"

    @SubscribeMessage("blob")
    async def blob(self, room: str = MessageBody()) -> Any:
        await self.server.to(room).emit("blob", {"bytes": b"\x00\x01\xff", "n": 1})
        return "sent"


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_room_emit_with_bytes_reaches_every_member(server: str, transport: str) -> None:
    app = GatewayMiddleware(gateways=[Blobs], socketio=SocketIO())
    async with run_server(app, server) as address:
        sender, member = socketio.AsyncClient(), socketio.AsyncClient()
        got: dict[str, Any] = {}
        both = anyio.Event()

        def receiver(name: str) -> Any:
            def on_blob(data: Any) -> None:
                got[name] = data
                if len(got) == 2:
                    both.set()

            return on_blob

        sender.on("blob", receiver("sender"))
        member.on("blob", receiver("member"))
        try:
            for client in (sender, member):
                await client.connect(f"http://{address}", transports=[transport])
                assert await client.call("join", "r", timeout=TIMEOUT) == "joined"
            assert await sender.call("blob", "r", timeout=TIMEOUT) == "sent"
            with anyio.fail_after(TIMEOUT):
                await both.wait()
            assert got == {
                "sender": {"bytes": b"\x00\x01\xff", "n": 1},
                "member": {"bytes": b"\x00\x01\xff", "n": 1},
            }
            # the emitting namespace goes on
            assert await sender.call("join", "r2", timeout=TIMEOUT) == "joined"
        finally:
            await sender.disconnect()
            await member.disconnect()
