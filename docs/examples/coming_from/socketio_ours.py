# gatewayasgi: a gateway class; Socket.IO clients and plain WebSocket clients both reach it.
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
from gatewayasgi.socketio import SocketIO


class Join(BaseModel):
    name: str = Field(min_length=1)
    room: str = "lobby"


@WebSocketGateway("/chat")  # the Socket.IO namespace, and the WebSocket path
class ChatGateway:
    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody(), client: Any = ConnectedSocket()) -> dict:
        await self.server.join(client, body.room)
        await self.server.to(body.room).emit("joined", {"name": body.name})
        return {"room": body.room}  # the ack's answer


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway], socketio=SocketIO())
