"""A gateway app for the routing tests and benchmark: several processes on one Redis.

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL, ``GATEWAYASGI_TEST_NODE`` names the
process, ``GATEWAYASGI_TEST_ROUTING`` picks ``interest`` (default) or ``namespace``
routing, and ``GATEWAYASGI_TEST_SUBSCRIBE_RATE`` / ``..._BURST`` / ``..._LINGER`` set
the subscribe budget. ``stats`` answers with the node's routing counters.
"""

from __future__ import annotations

import os
import time
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.backplane.routing import Routing
from gatewayasgi.brokers import RedisBroker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))
ROUTING = Routing(
    mode=os.environ.get("GATEWAYASGI_TEST_ROUTING", "interest"),  # type: ignore[arg-type]
    subscribe_rate=float(os.environ.get("GATEWAYASGI_TEST_SUBSCRIBE_RATE", "2000")),
    subscribe_burst=int(os.environ.get("GATEWAYASGI_TEST_SUBSCRIBE_BURST", "2000")),
    linger=float(os.environ.get("GATEWAYASGI_TEST_LINGER", "2.0")),
)


@WebSocketGateway(namespace="/route")
class RouteGateway(OnGatewayConnection):
    async def on_connection(self, client: Any) -> None:
        await client.send_json({"event": "welcome", "data": {"id": client.id, "node": NODE}})

    @SubscribeMessage("join")
    async def join(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        for room in data["rooms"]:
            await self.server.join(client, room)
        return {"event": "joined", "data": None}

    @SubscribeMessage("leave")
    async def leave(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        for room in data["rooms"]:
            await self.server.leave(client, room)
        return {"event": "left", "data": None}

    @SubscribeMessage("emit")
    async def emit(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Emit ``data`` to ``to`` (rooms and ids; none: everybody), skipping ``except``."""
        operator = self.server.to(*data.get("to", ())) if data.get("to") else self.server
        if data.get("except"):
            operator = operator.except_(*data["except"])
        await operator.emit("msg", {"from": client.id, **data})
        return {"event": "sent", "data": None}

    @SubscribeMessage("join_then_emit")
    async def join_then_emit(
        self, data: Any = MessageBody(), client: Any = ConnectedSocket()
    ) -> Any:
        """Make ``who`` (any node) join ``room``, then emit to the room at once."""
        await self.server.in_(data["who"]).join(data["room"])
        await self.server.to(data["room"]).emit("msg", {"from": client.id, **data})
        return {"event": "sent", "data": None}

    @SubscribeMessage("churn")
    async def churn(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Join and leave ``rooms`` ``times`` times over; answers the seconds it took."""
        began = time.perf_counter()
        for _ in range(data["times"]):
            for room in data["rooms"]:
                await self.server.join(client, room)
                await self.server.leave(client, room)
        return {"event": "churned", "data": time.perf_counter() - began}

    @SubscribeMessage("stats")
    async def stats(self) -> Any:
        backplane = app.backplane
        assert backplane is not None
        counts = backplane.stats.snapshot()
        counts["subscribed"] = backplane.subscriptions.subscribed
        counts["lingering"] = backplane.subscriptions.lingering
        return {"event": "stats", "data": {"node": NODE, **counts}}


app = GatewayMiddleware(
    gateways=[RouteGateway],
    broker=RedisBroker(
        os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
        secret=os.environ.get("GATEWAYASGI_TEST_SECRET") or None,
    ),
    routing=ROUTING,
    max_rooms_per_connection=5000,
)
