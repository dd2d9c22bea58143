"""Keyed streams on Redis, for tests that run it in several worker processes.

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL; ``GATEWAYASGI_TEST_NODE`` names the
process in every item and end. ``closed`` answers how each tag's generator ended
(``done``, or ``closed`` when it was closed early), as this process saw it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
from pydantic import BaseModel

from gatewayasgi import (
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.brokers import RedisBroker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))


class RunRequest(BaseModel):
    n: int
    tag: str
    delay: float = 0.02
    fail: bool = False


@WebSocketGateway("/agent")
class Agent:
    def __init__(self) -> None:
        self.closed: dict[str, str] = {}

    def can_attach(self, client: Any, key: str) -> bool:
        return key.startswith("chat-")

    @SubscribeMessage("run")
    async def run(self, request: RunRequest = MessageBody()) -> AsyncIterator[Any]:
        how, tag = "closed", request.tag
        try:
            for i in range(request.n):
                yield {"i": i, "tag": tag, "node": NODE}
                await anyio.sleep(request.delay)
            if request.fail:
                how = "done"
                raise WsException("no more tokens", left=0)
            how = "done"  # nothing after the StreamEnd is read: the generator is closed there
            yield StreamEnd({"done": tag, "node": NODE})
        finally:
            self.closed[tag] = how

    @SubscribeMessage("closed")
    def closed_tags(self) -> Any:
        return {"closed": self.closed, "node": NODE}


app = GatewayMiddleware(
    gateways=[Agent],
    broker=RedisBroker(os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")),
)
