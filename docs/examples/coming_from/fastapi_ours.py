# gatewayasgi: the same room chat as a gateway in front of the same FastAPI app.
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


class Say(BaseModel):
    text: str = Field(min_length=1)


@WebSocketGateway("/chat/{room}")
class ChatGateway:
    async def on_connection(self, client: Any) -> None:
        await self.server.join(client, client.path_params["room"])

    @SubscribeMessage("say")
    async def say(self, body: Say = MessageBody(), client: Any = ConnectedSocket()) -> None:
        room = client.path_params["room"]
        await self.server.to(room).emit("message", {"text": body.text})


api = FastAPI()
app = GatewayMiddleware(api, gateways=[ChatGateway])
