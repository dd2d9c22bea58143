# Step 2: rooms. A client joins one; what it says reaches everyone in it.
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)


class Join(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    room: str = Field(default="lobby", pattern=r"^[a-z0-9-]{1,32}$")


class Say(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody(), client: Any = ConnectedSocket()) -> dict:
        client.state.name, client.state.room = body.name, body.room
        await self.server.join(client, body.room)
        await self.server.to(body.room).except_(client).emit("joined", {"name": body.name})
        return {"room": body.room}

    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody(), client: Any = ConnectedSocket()) -> dict:
        message = {"name": client.state.name, "text": body.text}
        await self.server.to(client.state.room).emit("message", message)
        return {"sent": True}


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway])
