# main.py -- stream a model's tokens to the requester: hypercorn main:app
from collections.abc import AsyncIterator

import anyio
from pydantic import BaseModel

from gatewayasgi import GatewayMiddleware, MessageBody, Recovery, SubscribeMessage, WebSocketGateway


class Prompt(BaseModel):
    text: str


async def fake_model(text: str) -> AsyncIterator[str]:  # stands in for your model's stream
    for word in f"You said: {text}".split():
        await anyio.sleep(0.05)
        yield word + " "


@WebSocketGateway("/ai", recovery=Recovery(window=120))
class Assistant:
    @SubscribeMessage("prompt")
    async def prompt(self, body: Prompt = MessageBody()) -> AsyncIterator[dict[str, str]]:
        async for token in fake_model(body.text):
            yield {"type": "text-delta", "delta": token}  # one stream item per yield


app = GatewayMiddleware(gateways=[Assistant])
