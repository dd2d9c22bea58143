# main.py -- hypercorn main:app
from fastapi import FastAPI

from gatewayasgi import GatewayMiddleware, MessageBody, Recovery, SubscribeMessage, WebSocketGateway


@WebSocketGateway("/chat", recovery=Recovery(window=120))  # seconds a session waits
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, text: str = MessageBody("text")) -> None:
        await self.server.emit("message", {"text": text})  # kept for the clients that blink


app = GatewayMiddleware(FastAPI(), gateways=[ChatGateway])
# or GatewayMiddleware(..., recovery=Recovery()) for every gateway (recovery=False opts one out)
