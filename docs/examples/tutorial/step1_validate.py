# Step 1: one event, validated by a pydantic model.
from fastapi import FastAPI
from pydantic import BaseModel, Field

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway


class Join(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    room: str = Field(default="lobby", pattern=r"^[a-z0-9-]{1,32}$")


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("join")
    async def join(self, body: Join = MessageBody()) -> dict:
        return {"room": body.room, "welcome": f"hello {body.name}"}


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway])
