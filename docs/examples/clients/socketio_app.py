# main.py -- one gateway for WebSocket and Socket.IO clients: hypercorn main:app
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    ExecutionContext,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.socketio import SocketIO


class Join(BaseModel):
    room: str
    name: str


class TokenGuard(BaseGuard):  # a Socket.IO client's CONNECT auth is client.auth
    def can_activate(self, context: ExecutionContext) -> bool:
        return context.switch_to_ws().get_client().auth.get("token") == "s3cret"


@WebSocketGateway("/chat", handshake_guards=[TokenGuard])  # the namespace
class ChatGateway:
    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody(), client: Any = ConnectedSocket()) -> dict:
        await self.server.join(client, body.room)
        return {"room": body.room, "welcome": f"hello {body.name}"}  # the ack's answer


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway], socketio=SocketIO(path="/socket.io"))
