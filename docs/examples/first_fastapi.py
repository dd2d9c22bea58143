# main.py -- serve with: hypercorn main:app
from fastapi import FastAPI
from pydantic import BaseModel, Field

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


class Say(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody()) -> dict:
        return {"event": "said", "data": {"text": body.text, "length": len(body.text)}}


api = FastAPI()  # your routes and your own websockets stay as they are


@api.get("/health")
async def health() -> dict:
    return {"ok": True}


app = GatewayMiddleware(api, gateways=[ChatGateway])
