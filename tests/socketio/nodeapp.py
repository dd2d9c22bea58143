"""The gateway app the official socket.io-client (Node) talks to in test_node_client.py.

Unchanged ``@WebSocketGateway`` classes, served to Socket.IO clients by ``SocketIO``
and to native-JSON clients at their own paths:

- ``/`` (the main namespace): a handshake guard that wants ``auth.token == "s3cret"``;
  acks, validation errors, rooms, binary, several arguments, server -> client calls.
- ``/a`` and ``/b``: two namespaces a test opens over one Manager.
- ``/recover``: session recovery (``Recovery(window=60)``).
- ``/mixed``: a room shared by socket.io-client sockets and native WebSockets.

``make_app()`` builds a fresh app (a restarted server gets a new one);
``hypercorn tests.socketio.nodeapp:app`` serves one by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.socketio import Arguments, SocketIO

TOKEN = "s3cret"


def kinds(value: Any) -> Any:
    """``value`` with every ``bytes`` replaced by ``"bytes:<len>"``: what the handler got."""
    if isinstance(value, bytes):
        return f"bytes:{len(value)}"
    if isinstance(value, dict):
        return {key: kinds(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [kinds(item) for item in value]
    return value


class TokenGuard(BaseGuard):
    """A handshake guard on the CONNECT payload (``io(url, {auth: {token}})``)."""

    def can_activate(self, context: Any) -> bool:
        client = context.switch_to_ws().get_client()
        return isinstance(client.auth, dict) and client.auth.get("token") == TOKEN


class Add(BaseModel):
    x: int
    y: int


class Shout(BaseModel):
    room: str
    text: str


@WebSocketGateway("/", handshake_guards=[TokenGuard])
class MainGateway:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> Any:
        return {"auth": client.auth, "id": client.id}

    @SubscribeMessage("echo")
    def echo(self, data: Any = MessageBody()) -> Any:
        return data

    @SubscribeMessage("notify")
    def notify(self, data: Any = MessageBody()) -> Any:
        return {"event": "notified", "data": data}

    @SubscribeMessage("add")
    def add(self, data: Add = MessageBody()) -> Any:
        return {"sum": data.x + data.y}

    @SubscribeMessage("fail")
    def fail(self) -> Any:
        raise WsException("not today", code=42)

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"joined": room}

    @SubscribeMessage("shout")
    async def shout(self, data: Shout = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        message = {"from": client.id, "text": data.text}
        return {"delivered": await self.server.to_room(data.room).emit("shouted", message)}

    @SubscribeMessage("binary")
    async def binary(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Answers what arrived (bytes stay bytes) and sends it back as an event too."""
        await client.emit("binary", {"echo": data, "reversed": data["blob"][::-1]})
        return {"kinds": kinds(data), "echo": data, "reversed": data["blob"][::-1]}

    @SubscribeMessage("args")
    async def args(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Several arguments arrive as an ``Arguments``; answered reversed, several too."""
        items = list(data) if isinstance(data, Arguments) else [data]
        await client.emit("many", Arguments(items))
        await client.emit("described", {"type": type(data).__name__, "items": kinds(items)})
        return Arguments(reversed(items))

    @SubscribeMessage("ask")
    async def ask(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Calls the client back (in a task: a handler must not await its own client;
        ``async def``: a ``def`` handler runs in a worker thread, with no event loop)."""

        async def call() -> None:
            answer = await client.call("question", data, timeout=5)
            several = isinstance(answer, Arguments)
            await client.emit(
                "answered", {"answer": list(answer) if several else answer, "several": several}
            )

        task = asyncio.get_running_loop().create_task(call())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "asked"

    @SubscribeMessage("kick")
    async def kick(self, client: Any = ConnectedSocket()) -> None:
        await client.close()


@WebSocketGateway("/a")
class AGateway:
    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> Any:
        return {"ns": "a", "id": client.id, "auth": client.auth}


@WebSocketGateway("/b")
class BGateway:
    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> Any:
        return {"ns": "b", "id": client.id, "auth": client.auth}


@WebSocketGateway("/recover", recovery=Recovery(window=60))
class RecoverGateway:
    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> Any:
        return {
            "id": client.id,
            "recovered": client.recovered,
            "rooms": sorted(self.server.rooms_of(client)),
        }

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"joined": room}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> Any:
        return {"delivered": await self.server.to_room(data["room"]).emit("said", data["n"])}


@WebSocketGateway("/mixed")
class MixedGateway:
    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"joined": room}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> Any:
        said = {"from": data["from"], "text": data["text"]}
        return {"delivered": await self.server.to_room(data["room"]).emit("said", said)}


GATEWAYS = [MainGateway, AGateway, BGateway, RecoverGateway, MixedGateway]


def make_app(**socketio: Any) -> GatewayMiddleware:
    """A new app; ``socketio`` are ``SocketIO`` options besides ``path``."""
    options = {"path": "/socket.io", "connection_state_recovery": True, **socketio}
    return GatewayMiddleware(gateways=GATEWAYS, socketio=SocketIO(**options))


app = make_app()
