"""Gateways the MessagePack tests talk to: ``/mp`` (no recovery) and ``/mpr`` (recovery),
served to JSON, MessagePack and Socket.IO clients by one middleware."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.protocol.msgpack import MessagePack
from gatewayasgi.socketio import SocketIO


class Note(BaseModel):
    text: str
    count: int


class Blob(BaseModel):
    name: str
    body: bytes


class Handlers:
    @SubscribeMessage("echo")
    def echo(self, data: Any = MessageBody()) -> Any:
        return data

    @SubscribeMessage("note")
    def note(self, note: Note = MessageBody()) -> Any:
        return {"event": "noted", "data": note}

    @SubscribeMessage("blob")
    def blob(self, blob: Blob = MessageBody()) -> Any:
        """Bytes in (a pydantic ``bytes`` field), bytes out (reversed)."""
        return Blob(name=blob.name, body=blob.body[::-1])

    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> str:
        return str(client.id)

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> str:
        await self.server.join(client, room)  # type: ignore[attr-defined]
        return room

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> str:
        await self.server.to_room(data["room"]).emit("said", data["n"])  # type: ignore[attr-defined]
        return "ok"

    @SubscribeMessage("burst")
    async def burst(self, data: Any = MessageBody()) -> str:
        for n in range(data["count"]):
            await self.server.to_room(data["room"]).emit("said", {"n": n})  # type: ignore[attr-defined]
        return "done"


@WebSocketGateway("/mp")
class Plain(Handlers):
    pass


@WebSocketGateway("/mpr", recovery=Recovery(window=30))
class Recovering(Handlers):
    pass


def make_app(*, protocols: Any = None, **settings: Any) -> GatewayMiddleware:
    """A fresh middleware (one per server) serving both gateways in every protocol."""
    return GatewayMiddleware(
        gateways=[Plain, Recovering],
        protocols=[MessagePack()] if protocols is None else protocols,
        socketio=SocketIO(),
        **settings,
    )
