"""The gateway the cluster tests drive: a controller client asks it to call, fetch, move.

In one process (``make_app()``, served by ``tests.servers.run_server``) or as a worker
process sharing a redis-server (``app``, built when ``GATEWAYASGI_TEST_REDIS_URL`` is
set; ``GATEWAYASGI_TEST_NODE`` names the process in the welcome frame).
"""

from __future__ import annotations

import os
from typing import Any

from gatewayasgi import (
    CallClosedError,
    CallError,
    CallRejectedError,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import Broker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", "local")
NAMESPACE = "/cluster"


def outcome(exc: BaseException) -> dict[str, Any]:
    """A call's failure as the controller sees it."""
    if isinstance(exc, CallRejectedError):
        return {"error": "rejected", "message": exc.message}
    if isinstance(exc, TimeoutError):
        return {"error": "timeout"}
    if isinstance(exc, CallClosedError):
        return {"error": "closed"}
    return {"error": type(exc).__name__, "message": str(exc)}


@WebSocketGateway(namespace=NAMESPACE)
class ClusterGateway(OnGatewayConnection):
    server: Any  # set by the middleware

    async def on_connection(self, client: Any) -> None:
        await client.send_json({"event": "welcome", "data": {"id": client.id, "node": NODE}})

    @SubscribeMessage("join")
    async def join(self, room: Any = MessageBody("room"), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"room": room, "node": NODE}

    @SubscribeMessage("call")
    async def call(self, data: Any = MessageBody()) -> Any:
        """Call another client (by id) from this client's handler."""
        target = self.server.get_client(data["target"])
        try:
            answer = await target.call(data["event"], data.get("data"), timeout=data["timeout"])
        except CallError as exc:
            return outcome(exc)
        return {"data": answer}

    @SubscribeMessage("call_self")
    async def call_self(self, client: Any = ConnectedSocket()) -> Any:
        """Await a call to this very client: refused at once, never a silent hang."""
        try:
            await client.call("never", None, timeout=30)
        except CallError as exc:
            return {"error": type(exc).__name__, "timeout": isinstance(exc, TimeoutError)}
        return {"error": None}

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
            "complete": results.complete,
        }

    @SubscribeMessage("presence")
    async def presence(self, room: Any = MessageBody("room")) -> Any:
        found = await self.server.presence(room)
        return {"ids": list(found.ids), "count": found.count, "missing": found.missing_nodes}

    @SubscribeMessage("fetch")
    async def fetch(self, data: Any = MessageBody()) -> Any:
        return await self.server.in_(data["room"]).fetch_ids()

    @SubscribeMessage("move")
    async def move(self, data: Any = MessageBody()) -> Any:
        """``in_(room).join(to)`` or ``.leave(to)``."""
        members = self.server.in_(data["room"])
        await (members.join(data["to"]) if data["how"] == "join" else members.leave(data["to"]))
        return {"done": True}

    @SubscribeMessage("kick")
    async def kick(self, data: Any = MessageBody()) -> Any:
        """Disconnect a room's clients or one client (by id) on every node."""
        await self.server.in_(data["target"]).disconnect(data["code"], "kicked")
        return {"done": True}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> Any:
        await self.server.to(data["room"]).emit("said", data["text"])
        return {"done": True}


def make_app(broker: Broker | None = None) -> GatewayMiddleware:
    """The cluster test gateway, alone, on ``broker`` (none: one node)."""
    return GatewayMiddleware(gateways=[ClusterGateway], broker=broker)


def _worker_app() -> GatewayMiddleware | None:
    url = os.environ.get("GATEWAYASGI_TEST_REDIS_URL")
    if url is None:
        return None
    from gatewayasgi.brokers.redis import RedisBroker

    return make_app(RedisBroker(url, reconnect_delay=0.05, max_reconnect_delay=1.0))


app = _worker_app()
