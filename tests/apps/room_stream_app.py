"""Room streams on Redis, for tests that run it in several processes: ``/plain`` carries
frames over the broker's pub/sub, ``/recover`` keeps them in a Redis Stream (recovery).

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL; ``GATEWAYASGI_TEST_NODE`` names the
process in replies.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))


async def steps(count: int) -> AsyncIterator[Any]:
    for n in range(1, count + 1):
        yield {"step": n, "node": NODE}
    yield StreamEnd({"steps": count})


class Runs:
    server: Any

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"joined": room, "node": NODE}

    @SubscribeMessage("publish")
    async def publish(self, data: Any = MessageBody()) -> Any:
        result = await self.server.to_room(data["room"]).stream("progress", steps(data["count"]))
        return {"stream": result.id, "items": result.items, "node": NODE}


PlainRuns = WebSocketGateway("/plain")(type("PlainRuns", (Runs,), {}))
RecoveringRuns = WebSocketGateway("/recover", recovery=Recovery(window=60, client_share=1.0))(
    type("RecoveringRuns", (Runs,), {})
)

app = GatewayMiddleware(
    gateways=[PlainRuns, RecoveringRuns],
    broker=RedisBroker(os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")),
)
