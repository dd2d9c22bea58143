"""A gateway served to Socket.IO clients by several worker processes on one Redis.

``GATEWAYASGI_TEST_REDIS_URL`` is the Redis URL; ``GATEWAYASGI_TEST_NODE`` names the
process in the welcome, so a test can tell which worker serves which client.
"""

from __future__ import annotations

import os
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.socketio import SocketIO

NODE = os.environ.get("GATEWAYASGI_TEST_NODE", str(os.getpid()))
NAMESPACE = "/workers"


@WebSocketGateway(namespace=NAMESPACE)
class WorkersGateway(OnGatewayConnection):
    async def on_connection(self, client: Any) -> None:
        await client.emit("welcome", {"id": client.id, "node": NODE})

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody("room"), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"room": room, "node": NODE}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        """Emits ``said`` to the whole room (the sender too); answers with the node."""
        await self.server.to_room(data["room"]).emit(
            "said", {"from": client.id, "node": NODE, "text": data["text"]}
        )
        return {"node": NODE}


KEPT = "/kept"


def who(client: Any) -> Any:
    """The session's identity: the CONNECT auth's ``user`` (a real app checks a token)."""
    return client.auth.get("user")


@WebSocketGateway(namespace=KEPT, recovery=Recovery(window=30, identity=who))
class KeptGateway:
    """Session recovery on the Redis history: a Socket.IO client resumes on either worker."""

    @SubscribeMessage("join")
    async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)
        return {"node": NODE}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> Any:
        await self.server.to_room(data["room"]).emit("said", data["n"])
        return {"node": NODE}

    @SubscribeMessage("whoami")
    def whoami(self, client: Any = ConnectedSocket()) -> Any:
        return {
            "id": client.id,
            "recovered": client.recovered,
            "rooms": sorted(self.server.rooms_of(client)),
            "node": NODE,
        }


app = GatewayMiddleware(
    gateways=[WorkersGateway, KeptGateway],
    broker=RedisBroker(
        os.environ.get("GATEWAYASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        reconnect_delay=0.05,
        max_reconnect_delay=1.0,
    ),
    socketio=SocketIO(path="/socket.io", connection_state_recovery=True),
)
