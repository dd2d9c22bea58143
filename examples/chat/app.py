"""Chat example: a FastAPI app with a chat gateway and one HTML page using the TS client.

Run: ``make run`` (it builds the TypeScript client, then serves
``hypercorn examples.chat.app:app``) and open http://127.0.0.1:8000 in two browser tabs.

The page loads the client from ``clients/js/dist`` (``/client/index.js``, ESM), so
``clients/js`` must be built first (``make run`` and ``make test`` do it).
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    OnGatewayConnection,
    OnGatewayDisconnect,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.socketio import SocketIO

PAGE = Path(__file__).with_name("index.html")
CLIENT_DIST = Path(__file__).resolve().parents[2] / "clients" / "js" / "dist"
MSGPACK_DIST = CLIENT_DIST.parent / "node_modules" / "@msgpack" / "msgpack" / "dist.esm"
"""The client's one dependency (its MessagePack codec), as ES modules: the page maps the
bare ``@msgpack/msgpack`` import here (an import map), as a bundler would resolve it."""
"""The built TypeScript client (``npm run build`` in clients/js), served at ``/client/``."""


@Injectable
class ChatHistory:
    """Keeps the last messages of each room; shared by the gateway and the HTTP API."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[dict[str, str]]] = {}

    def add(self, room: str, name: str, text: str) -> dict[str, str]:
        message = {"id": uuid4().hex, "room": room, "name": name, "text": text}
        self.rooms.setdefault(room, []).append(message)
        del self.rooms[room][:-50]
        return message


class Join(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=32)


class Say(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


@WebSocketGateway(namespace="/chat", recovery=Recovery(window=60))
class ChatGateway(OnGatewayConnection, OnGatewayDisconnect):
    """One room at a time per client, with a member list (the sessions connected now).

    With recovery, a client whose connection drops keeps its session (id, room, name) for
    60 s and gets the messages it missed when it comes back."""

    def __init__(self, history: ChatHistory) -> None:
        self.history = history
        self.names: dict[str, str] = {}
        """Session id -> the name it joined with."""
        self.rooms: dict[str, str] = {}
        """Session id -> the room it is in (one at a time)."""

    async def on_connection(self, client):
        # After the `$session` frame (recovery): this runs for new and resumed sessions.
        await client.send_json(
            {"event": "welcome", "data": {"id": client.id, "recovered": client.recovered}}
        )
        if client.recovered:  # back in its rooms: the others' member lists show it again
            for room in self.server.rooms_of(client):
                await self.announce_members(room)

    async def on_disconnect(self, client):
        # With recovery this runs when the session ends: the client closed on purpose
        # (the TS client's close() sends `$end`), the app closed it, or the window passed
        # (its rooms are released by then, hence the gateway's own `rooms` record).
        name = self.names.pop(client.id, None)
        room = self.rooms.pop(client.id, None)
        if room is not None:
            await self.server.to_room(room).except_(client).emit("left", {"name": name})
            await self.announce_members(room, leaving=client.id)

    async def members(self, room: str, leaving: str | None = None) -> list[str]:
        """The names of the sessions in ``room`` (``server.presence``: every node)."""
        presence = await self.server.presence(room)
        return sorted(self.names.get(i, "?") for i in presence.ids if i != leaving)

    async def announce_members(self, room: str, leaving: str | None = None) -> None:
        names = await self.members(room, leaving)
        await self.server.to_room(room).emit("members", {"room": room, "names": names})

    @SubscribeMessage("join")
    async def join(self, data: Join = MessageBody(), client=ConnectedSocket()):
        """Join ``room`` (leaving the previous one); the reply holds its history and members."""
        self.names[client.id] = data.name
        self.rooms[client.id] = data.room
        for old in self.server.rooms_of(client) - {data.room}:
            await self.server.leave(client, old)
            await self.server.to_room(old).emit("left", {"name": data.name})
            await self.announce_members(old)
        if data.room not in self.server.rooms_of(client):
            await self.server.join(client, data.room)
            await self.server.to_room(data.room).except_(client).emit("joined", {"name": data.name})
        await self.announce_members(data.room)
        return {
            "room": data.room,
            "history": self.history.rooms.get(data.room, []),
            "members": await self.members(data.room),
        }

    @SubscribeMessage("say")
    async def say(self, data: Say = MessageBody(), client=ConnectedSocket()):
        """Send to the room; the reply (an ack) says how many members it reached."""
        if data.room not in self.server.rooms_of(client):
            raise WsException("join the room first", room=data.room)
        message = self.history.add(data.room, self.names.get(client.id, "?"), data.text)
        delivered = await self.server.to_room(data.room).emit("message", message)
        return {"id": message["id"], "delivered": delivered}


history = ChatHistory()
api = FastAPI(title="gatewayasgi chat")


@api.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE.read_text(encoding="utf-8")


@api.get("/client/{name}", response_model=None)
async def client_module(name: str) -> Response:
    """The TypeScript client's ES modules, as built in clients/js/dist."""
    path = CLIENT_DIST / name
    if not name.endswith(".js") or not path.is_file():
        return PlainTextResponse(
            f"{name} not found in {CLIENT_DIST}: build the client first "
            "(make chat-client, or npm ci && npm run build in clients/js)",
            status_code=404,
        )
    return FileResponse(path, media_type="text/javascript")


@api.get("/client/msgpack/{name:path}", response_model=None)
async def client_dependency(name: str) -> Response:
    """``@msgpack/msgpack``'s ES modules (``utils/`` too), from clients/js/node_modules."""
    path = (MSGPACK_DIST / name).resolve()
    inside = path.is_relative_to(MSGPACK_DIST.resolve())
    if not name.endswith(".mjs") or not inside or not path.is_file():
        return PlainTextResponse(f"{name} not found in {MSGPACK_DIST}", status_code=404)
    return FileResponse(path, media_type="text/javascript")


@api.get("/rooms/{room}/history")
async def room_history(room: str) -> list[dict[str, str]]:
    return history.rooms.get(room, [])


# The same gateway serves socket.io-client too: io("http://127.0.0.1:8000/chat").
app = GatewayMiddleware(api, gateways=[ChatGateway], providers=[history], socketio=SocketIO())
