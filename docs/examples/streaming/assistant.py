# main.py -- a gateway whose handlers stream: hypercorn main:app
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from pydantic import BaseModel

from gatewayasgi import (
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
)


class Prompt(BaseModel):
    text: str


async def fake_model(text: str) -> AsyncIterator[str]:
    """Stands in for a model's token stream."""
    for word in f"You said: {text}".split():
        await anyio.sleep(0.01)
        yield word + " "


@WebSocketGateway("/ai")
class Assistant:
    def __init__(self) -> None:
        self.live_tickers = 0

    @SubscribeMessage("prompt")
    async def prompt(self, body: Prompt = MessageBody()) -> AsyncIterator[Any]:
        tokens = 0
        async for token in fake_model(body.text):
            tokens += 1
            yield {"type": "text-delta", "delta": token}  # one stream item per yield
        yield StreamEnd({"tokens": tokens})  # the end frame's data; nothing after it is read

    @SubscribeMessage("ticker")
    async def ticker(self, every: float = MessageBody()) -> AsyncIterator[int]:
        self.live_tickers += 1
        try:
            n = 0
            while True:  # runs until the client cancels it (or leaves)
                n += 1
                yield n
                await anyio.sleep(every)
        finally:  # a $cancel closes the generator at its current await: this runs
            self.live_tickers -= 1

    @SubscribeMessage("countdown")
    def countdown(self, n: int = MessageBody()) -> Iterator[int]:  # a def generator
        for i in range(n, 0, -1):
            time.sleep(0.01)  # each item is taken in the worker thread pool: blocking is fine
            yield i


app = GatewayMiddleware(gateways=[Assistant])
