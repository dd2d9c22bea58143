"""gatewayasgi: the benchmark protocol as a gateway, written as a user would.

``BenchGateway`` is also what ``gateway_socketio`` serves to Socket.IO clients.
"""

from __future__ import annotations

from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)


@WebSocketGateway("/ws")
class BenchGateway:
    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> Any:
        # An ``{"event", "data"}`` dict, not the bare data: native clients get the same
        # frame either way (and at the same cost), but a Socket.IO client that sent no ack
        # callback gets only this form (docs/socketio.md, "Acks"). ``join`` does the same.
        return {"event": "echo", "data": data}

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"event": "joined", "data": room}

    @SubscribeMessage("publish")
    async def publish(self, data: Any = MessageBody()) -> None:
        await self.server.to(data["room"]).emit("message", data["payload"])

    @SubscribeMessage("fill")
    async def fill(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        payload = "x" * data["size"]
        for _ in range(data["count"]):
            await client.emit("fill", payload)


app = GatewayMiddleware(gateways=[BenchGateway])
