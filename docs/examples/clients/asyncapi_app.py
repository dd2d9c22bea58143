# main.py -- gatewayasgi asyncapi main:app; gatewayasgi generate client-types main:app -o events.ts
from fastapi import FastAPI
from pydantic import BaseModel

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


class Join(BaseModel):
    room: str


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody()) -> dict[str, str]:
        return {"room": body.room}


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway], asyncapi_url="/asyncapi.json")  # GET it
