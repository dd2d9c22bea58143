"""Chat example: a FastAPI app with a chat gateway and one HTML page.

Run: ``make run`` (or ``hypercorn examples.chat.app:app``) and open http://127.0.0.1:8000
in two browser tabs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    OnGatewayConnection,
    OnGatewayDisconnect,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)

PAGE = Path(__file__).with_name("index.html")


@Injectable
class ChatHistory:
    """Keeps the last messages of each room; shared by the gateway and the HTTP API."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[dict[str, str]]] = {}

    def add(self, room: str, message: dict[str, str]) -> None:
        self.rooms.setdefault(room, []).append(message)
        del self.rooms[room][:-50]


class Join(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=32)


class Say(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


@WebSocketGateway(namespace="/chat")
class ChatGateway(OnGatewayConnection, OnGatewayDisconnect):
    def __init__(self, history: ChatHistory) -> None:
        self.history = history

    async def on_connection(self, client):
        await client.send_json({"event": "welcome", "data": {"id": client.id}})

    async def on_disconnect(self, client):
        name = getattr(client.state, "name", None)
        for room in self.server.rooms_of(client):
            await self.server.to(room).except_(client).emit("left", {"name": name})

    @SubscribeMessage("join")
    async def join(self, data: Join = MessageBody(), client=ConnectedSocket()):
        client.state.name = data.name
        await self.server.join(client, data.room)
        await self.server.to(data.room).except_(client).emit("joined", {"name": data.name})
        return {"room": data.room, "history": self.history.rooms.get(data.room, [])}

    @SubscribeMessage("say")
    async def say(self, data: Say = MessageBody(), client=ConnectedSocket()):
        if data.room not in self.server.rooms_of(client):
            raise WsException("join the room first", room=data.room)
        message = {"name": client.state.name, "text": data.text}
        self.history.add(data.room, message)
        await self.server.to(data.room).emit("message", message)


history = ChatHistory()
api = FastAPI(title="gatewayasgi chat")


@api.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE.read_text(encoding="utf-8")


@api.get("/rooms/{room}/history")
async def room_history(room: str) -> list[dict[str, str]]:
    return history.rooms.get(room, [])


app = GatewayMiddleware(api, gateways=[ChatGateway], providers=[history])
