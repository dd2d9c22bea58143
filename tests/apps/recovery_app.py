"""A gateway with session recovery on Redis, for tests that run it in several processes.

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL; ``GATEWAYASGI_TEST_NODE`` names the
process in replies, so a test can tell which worker served a client.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))
PARTITIONS = 4


# ``burst`` emits thousands of frames for one request: the whole history is this app's
# to fill (the default share is a quarter of it per client: ``Recovery.client_share``).
@WebSocketGateway("/recover", recovery=Recovery(window=60, client_share=1.0))
class RecoveringGateway:
    @SubscribeMessage("node")
    async def node(self, client: Any = ConnectedSocket()) -> Any:
        return {"node": NODE, "id": client.id, "rooms": sorted(self.server.rooms_of(client))}

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"joined": room, "node": NODE}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> Any:
        await self.server.to_room(data["room"]).emit("said", data["n"])
        return "ok"

    @SubscribeMessage("burst")
    async def burst(self, data: Any = MessageBody()) -> Any:
        for n in range(data.get("start", 0), data["count"]):
            await self.server.to_room(data["room"]).emit("said", n)
        return "done"

    @SubscribeMessage("talk")
    async def talk(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Frames to the requester's room and to itself, then the reply: in that order."""
        for n in range(data["count"]):
            await self.server.to_room(data["room"]).emit("said", n)
            await client.emit("aside", n)
        return {"done": data["count"]}

    @SubscribeMessage("narrate")
    async def narrate(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """A stream (keyed, when asked with a key) that emits a frame before each item."""
        for n in range(data["count"]):
            await client.emit("aside", n)
            yield n

    @SubscribeMessage("tell")
    async def tell(self, data: Any = MessageBody()) -> Any:
        """A stream of ``count`` items, ``delay`` apart, then its end."""
        for n in range(data["count"]):
            await anyio.sleep(data.get("delay", 0.0))
            yield {"n": n, "node": NODE}


# The same handlers with the history split into partitions (``Recovery.partitions``).
@WebSocketGateway("/parts", recovery=Recovery(window=60, client_share=1.0, partitions=PARTITIONS))
class PartitionedGateway(RecoveringGateway):
    @SubscribeMessage("mixed")
    async def mixed(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """``count`` rounds of: a frame to each room alone, to all the rooms at once, to
        everyone, and to the requester alone (``{"to", "n"}``, ``n`` the round)."""
        rooms = data["rooms"]
        for n in range(data["count"]):
            for room in rooms:
                await self.server.to_room(room).emit("mixed", {"to": room, "n": n})
            await self.server.to(*rooms).emit("mixed", {"to": "rooms", "n": n})
            await self.server.emit("mixed", {"to": "all", "n": n})
            target = data.get("client")
            if target:
                await self.server.to(target).emit("mixed", {"to": "me", "n": n})
        return "done"


app = GatewayMiddleware(
    gateways=[RecoveringGateway, PartitionedGateway],
    broker=RedisBroker(os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")),
)
