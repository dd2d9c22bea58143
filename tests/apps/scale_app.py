"""A gateway app for the scale-out tests: run it in several processes sharing one Redis.

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL; ``GATEWAYASGI_TEST_NODE`` names the
process in replies, so a test can tell which node served which client.
"""

from __future__ import annotations

import os
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))


@WebSocketGateway(namespace="/scale")
class ScaleGateway(OnGatewayConnection):
    async def on_connection(self, client: Any) -> None:
        await client.send_json({"event": "welcome", "data": {"id": client.id, "node": NODE}})

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"event": "joined", "data": {"room": room, "node": NODE}}

    @SubscribeMessage("room")
    async def room(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.to(data["room"]).emit("room", {"from": client.id, **data})
        return {"event": "sent", "data": None}

    @SubscribeMessage("room_except_me")
    async def room_except_me(
        self, data: Any = MessageBody(), client: Any = ConnectedSocket()
    ) -> Any:
        await self.server.to(data["room"]).except_(client).emit("room", {"from": client.id, **data})
        return {"event": "sent", "data": None}

    @SubscribeMessage("direct")
    async def direct(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.to(data["to"]).emit("direct", {"from": client.id, **data})
        return {"event": "sent", "data": None}

    @SubscribeMessage("broadcast")
    async def broadcast(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.emit("broadcast", {"from": client.id, **data})
        return {"event": "sent", "data": None}

    @SubscribeMessage("broadcast_except_me")
    async def broadcast_except_me(
        self, data: Any = MessageBody(), client: Any = ConnectedSocket()
    ) -> Any:
        await self.server.except_(client).emit("broadcast", {"from": client.id, **data})
        return {"event": "sent", "data": None}


app = GatewayMiddleware(
    gateways=[ScaleGateway],
    broker=RedisBroker(
        os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
    ),
)
