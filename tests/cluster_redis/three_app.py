"""The gateway of the three-worker tests (``test_three_workers.py``): interest routing on a
Redis Cluster, ``RedisBroker(..., cluster=True, secret=SECRET)``.

``GATEWAYASGI_TEST_REDIS_CLUSTER_URL`` holds the cluster's startup nodes
(comma-separated); ``GATEWAYASGI_TEST_NODE`` names the process in the welcome frame and
in ``stats``; ``GATEWAYASGI_TEST_ROUTING`` picks ``interest`` (the default) or
``namespace`` and ``GATEWAYASGI_TEST_LINGER`` the seconds a room channel lingers (2.0).

Clients join and leave rooms, emit to rooms, client ids or everybody (with excludes),
make another client join a room and emit to it at once, ask for a room's presence, call
a room's members, and read this node's routing counters (``stats``, with ``peers``: the
other live nodes this one knows).
"""

from __future__ import annotations

import os
from time import monotonic
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
from gatewayasgi.brokers.redis import RedisBroker

NAMESPACE = "/three"
SECRET = "three-workers-test-secret-0123456789"
URL_VARIABLE = "GATEWAYASGI_TEST_REDIS_CLUSTER_URL"
NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))
ROUTING = Routing(
    mode=os.environ.get("GATEWAYASGI_TEST_ROUTING", "interest"),  # type: ignore[arg-type]
    linger=float(os.environ.get("GATEWAYASGI_TEST_LINGER", "2.0")),
)


@WebSocketGateway(namespace=NAMESPACE)
class ThreeGateway(OnGatewayConnection):
    server: Any  # set by the middleware

    async def on_connection(self, client: Any) -> None:
        await client.send_json({"event": "welcome", "data": {"id": client.id, "node": NODE}})

    @SubscribeMessage("join")
    async def join(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        for room in data["rooms"]:
            await self.server.join(client, room)
        return {"joined": data["rooms"]}

    @SubscribeMessage("leave")
    async def leave(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        for room in data["rooms"]:
            await self.server.leave(client, room)
        return {"left": data["rooms"]}

    @SubscribeMessage("emit")
    async def emit(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Emit ``msg`` to ``to`` (rooms and ids; none: everybody), skipping ``except``."""
        operator = self.server.to(*data["to"]) if data.get("to") else self.server
        if data.get("except"):
            operator = operator.except_(*data["except"])
        await operator.emit("msg", {"from": client.id, "text": data["text"]})
        return {"sent": True}

    @SubscribeMessage("join_then_emit")
    async def join_then_emit(
        self, data: Any = MessageBody(), client: Any = ConnectedSocket()
    ) -> Any:
        """Make ``who`` (a client id, on any node) join ``room``, then emit to the room."""
        await self.server.in_(data["who"]).join(data["room"])
        await self.server.to(data["room"]).emit("msg", {"from": client.id, "text": data["text"]})
        return {"sent": True}

    @SubscribeMessage("presence")
    async def presence(self, room: Any = MessageBody("room")) -> Any:
        found = await self.server.presence(room)
        return {"ids": list(found.ids), "count": found.count, "missing": found.missing_nodes}

    @SubscribeMessage("call_room")
    async def call_room(self, data: Any = MessageBody()) -> Any:
        results = await self.server.to(data["room"]).call(
            data["event"], data.get("data"), timeout=data["timeout"]
        )
        return {
            "answers": results.answers,
            "errors": results.errors,
            "timed_out": list(results.timed_out),
            "missing_nodes": results.missing_nodes,
        }

    @SubscribeMessage("stats")
    async def stats(self) -> Any:
        backplane = app.backplane
        assert backplane is not None
        counts: dict[str, Any] = dict(backplane.stats.snapshot())
        counts["peers"] = len(backplane.cluster.peers.live(NAMESPACE, monotonic()))
        counts["routing"] = backplane.routing.mode
        return {"node": NODE, **counts}


def make_broker(url: str) -> RedisBroker:
    return RedisBroker(
        url,
        cluster=True,
        secret=SECRET,
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
        connect_timeout=1.0,
        publish_timeout=1.0,
    )


app = GatewayMiddleware(
    gateways=[ThreeGateway],
    broker=make_broker(os.environ.get(URL_VARIABLE, "redis://127.0.0.1:7000")),
    routing=ROUTING,
)
