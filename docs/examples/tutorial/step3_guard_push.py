# Step 3: a handshake guard, a provider injected into the gateway, and an HTTP route
# that pushes to a room.
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    ExecutionContext,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)


class Join(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    room: str = Field(default="lobby", pattern=r"^[a-z0-9-]{1,32}$")


class Say(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class TokenGuard(BaseGuard):
    """Runs before the WebSocket is accepted: a refused client gets HTTP 403."""

    def can_activate(self, context: ExecutionContext) -> bool:
        client = context.switch_to_ws().get_client()
        return client.query_params.get("token") == "s3cret"


@Injectable
class Moderation:
    """A provider: built once, given to every gateway that asks for it by type."""

    banned = frozenset({"spam"})

    def clean(self, text: str) -> str:
        return " ".join("***" if word in self.banned else word for word in text.split())


@WebSocketGateway("/chat", handshake_guards=[TokenGuard])
class ChatGateway:
    def __init__(self, moderation: Moderation) -> None:
        self.moderation = moderation

    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody(), client: Any = ConnectedSocket()) -> dict:
        client.state.name, client.state.room = body.name, body.room
        await self.server.join(client, body.room)
        return {"room": body.room}

    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody(), client: Any = ConnectedSocket()) -> dict:
        text = self.moderation.clean(body.text)
        await self.server.to(client.state.room).emit(
            "message", {"name": client.state.name, "text": text}
        )
        return {"sent": True}


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway], providers=[Moderation])


@api.post("/rooms/{room}/announce")
async def announce(room: str, text: str) -> dict:
    delivered = (
        await app.server_for(ChatGateway).to(room).emit("message", {"name": "staff", "text": text})
    )
    return {"delivered": delivered}
