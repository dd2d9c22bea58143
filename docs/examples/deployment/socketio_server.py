# main.py -- native and Socket.IO clients of the same gateway: hypercorn main:app
from fastapi import FastAPI

from gatewayasgi import GatewayMiddleware, MessageBody, Recovery, SubscribeMessage, WebSocketGateway
from gatewayasgi.socketio import SocketIO


@WebSocketGateway("/chat", recovery=Recovery(window=60))  # native clients resume sessions
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, data: dict = MessageBody()) -> dict:
        await self.server.emit("message", data)  # to every client of /chat, of both kinds
        return {"sent": True}


api = FastAPI()
app = GatewayMiddleware(
    api,
    gateways=[ChatGateway],
    socketio=SocketIO(path="/socket.io"),
)
