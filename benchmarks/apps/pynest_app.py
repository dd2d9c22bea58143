"""PyNest's gateway (pynest-api): the seed guide's API on FastAPI, as PyNest registers it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from nest.websockets import ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway
from nest.websockets.gateway import NativeWebSocketGateway


@WebSocketGateway("/ws")
class BenchGateway:
    server: Any

    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> Any:
        return data

    @SubscribeMessage("join")
    async def join(self, room: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"event": "joined", "data": room}

    @SubscribeMessage("publish")
    async def publish(self, data: Any = MessageBody()) -> None:
        await self.server.to(data["room"]).emit("message", data["payload"])

    @SubscribeMessage("fill")
    async def fill(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        for _ in range(data["count"]):
            await client.send_json({"event": "fill", "data": "x" * data["size"]})


app = FastAPI()
_gateway = BenchGateway()
NativeWebSocketGateway(_gateway, BenchGateway.__websocket_gateway__).register(app)  # type: ignore[attr-defined]
