# main.py -- serve with: hypercorn main:app
from litestar import Litestar, get
from pydantic import BaseModel, Field

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


class Say(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody()) -> dict:
        return {"event": "said", "data": {"text": body.text, "length": len(body.text)}}


@get("/health")
async def health() -> dict:
    return {"ok": True}


api = Litestar(route_handlers=[health])
app = GatewayMiddleware(api, gateways=[ChatGateway])
