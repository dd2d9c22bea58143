"""Gateways served to python-socketio's ``AsyncClient`` (and to native JSON clients) by
``tests/socketio/test_python_client.py``.

``/chat`` is guarded: a Socket.IO client must send ``auth={"token": TOKEN}`` in its
CONNECT packet, a native client ``?token=TOKEN`` in its URL. ``/`` is Socket.IO's main
namespace, open to everyone. ``make_app()`` builds a fresh middleware (one per server).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.socketio import Arguments, SocketIO

TOKEN = "s3cret"
CHAT = "/chat"


class TokenGuard(BaseGuard):
    """Lets in a Socket.IO CONNECT whose auth has the token, or a native URL with it."""

    async def can_activate(self, context: Any) -> bool:
        client = context.switch_to_ws().get_client()
        auth = client.auth
        assert isinstance(auth, dict), auth
        return auth.get("token") == TOKEN or client.query_params.get("token") == TOKEN


class Point(BaseModel):
    x: int
    y: int


def kinds(value: Any) -> Any:
    """The type names of ``value``'s leaves, with its structure (what the handler saw)."""
    if isinstance(value, dict):
        return {key: kinds(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [kinds(item) for item in value]
    return type(value).__name__


@WebSocketGateway(namespace=CHAT, handshake_guards=[TokenGuard])
class ChatGateway(OnGatewayConnection):
    async def on_connection(self, client: Any) -> None:
        await client.emit("welcome", {"id": client.id, "auth": client.auth})

    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Emits ``echoed`` back, and returns ``data`` (an ack answer, if one was asked)."""
        await client.emit("echoed", data)
        return data

    @SubscribeMessage("add")
    async def add(self, point: Point = MessageBody()) -> Any:
        return {"sum": point.x + point.y}

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"room": room}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        """Emits ``said`` to the room (the sender too, when it is in it); no answer."""
        await self.server.to_room(data["room"]).emit(
            "said", {"from": client.id, "text": data["text"]}
        )

    @SubscribeMessage("bin")
    async def bin(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Emits ``bin`` back with what it got, nested; returns it and its leaves' types."""
        await client.emit("bin", {"nested": {"got": data}, "list": [data]})
        return {"got": data, "kinds": kinds(data)}

    @SubscribeMessage("args")
    async def args(self, data: Any = MessageBody()) -> Any:
        """Answers with what it got (several arguments give several answers) and its type."""
        return Arguments([type(data).__name__, *(data if isinstance(data, Arguments) else [data])])

    @SubscribeMessage("spread")
    async def spread(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        """Emits ``spread`` with the list it got as several arguments."""
        await client.emit("spread", Arguments(data))


@WebSocketGateway(namespace="/")
class MainGateway:
    @SubscribeMessage("ping")
    async def ping(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        return {"pong": data, "id": client.id}


def make_app(**options: Any) -> GatewayMiddleware:
    """A fresh middleware; ``options`` go to ``SocketIO``."""
    return GatewayMiddleware(
        gateways=[ChatGateway, MainGateway], socketio=SocketIO(path="/socket.io", **options)
    )
