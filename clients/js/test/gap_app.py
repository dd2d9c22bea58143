"""The gateway the JS client's `$gap` test runs against (served by hypercorn from the repo root).

GATEWAYASGI_TEST_REDIS_URL=redis://127.0.0.1:PORT/0 \\
    .venv/bin/python -m hypercorn clients.js.test.gap_app:app --bind 127.0.0.1:PORT

``/gap`` has no recovery and a Redis backplane: when its subscriber connection is cut
(``CLIENT KILL TYPE pubsub``) and is back, its clients get ``$gap``. ``relay`` emits to a
room through a ``RedisEmitter``: that frame reaches the room's members only through this
worker's Redis subscription, so it arriving shows the subscription is live.
"""

from __future__ import annotations

import os
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.emitter import RedisEmitter

REDIS_URL = os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = "/gap"

emitter = RedisEmitter(REDIS_URL, namespace=NAMESPACE)
"""Publishes only: what it emits comes back to this worker over the broker."""


@WebSocketGateway(NAMESPACE)
class GapTestGateway:
    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)  # type: ignore[attr-defined]
        return {"joined": room}

    @SubscribeMessage("relay")
    async def relay(self, data: Any = MessageBody()) -> str:
        await emitter.to(data["room"]).emit("relayed", data["n"])
        return "published"


app = GatewayMiddleware(
    gateways=[GapTestGateway],
    broker=RedisBroker(REDIS_URL, reconnect_delay=0.05, max_reconnect_delay=0.5),
)
