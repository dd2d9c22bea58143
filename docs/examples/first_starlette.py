# main.py -- serve with: hypercorn main:app
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


class Say(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody()) -> dict:
        return {"event": "said", "data": {"text": body.text, "length": len(body.text)}}


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


api = Starlette(routes=[Route("/health", health)])
app = GatewayMiddleware(api, gateways=[ChatGateway])
