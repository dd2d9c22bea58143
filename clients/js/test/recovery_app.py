"""The gateway the JS client's recovery tests run against (served by hypercorn from the repo root).

.venv/bin/python -m hypercorn clients.js.test.recovery_app:app --bind 127.0.0.1:PORT

History and sessions live in memory, so a restart of the process is a new epoch.
"""

from __future__ import annotations

from typing import Any

import anyio

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.recovery import Recovery


@WebSocketGateway("/chat", recovery=Recovery(window=30))
class RecoveryTestGateway:
    def __init__(self) -> None:
        self.connected: list[dict[str, Any]] = []
        """Each connection as the server saw it: id, recovered, offered subprotocols, query."""
        self.disconnected: list[str] = []
        """Ids whose session ended (``on_disconnect`` runs once, when the session ends)."""

    def on_connection(self, client: Any) -> None:
        self.connected.append(
            {
                "id": client.id,
                "recovered": client.recovered,
                "subprotocols": list(client.scope.get("subprotocols") or []),
                "query": client.scope.get("query_string", b"").decode(),
            }
        )

    def on_disconnect(self, client: Any) -> None:
        self.disconnected.append(client.id)

    @SubscribeMessage("join")
    async def join(self, room: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        await self.server.join(client, room)  # type: ignore[attr-defined]
        return {"joined": room, "id": client.id}

    @SubscribeMessage("say")
    async def say(self, data: Any = MessageBody()) -> str:
        await self.server.to_room(data["room"]).emit("said", data["n"])  # type: ignore[attr-defined]
        return "ok"

    @SubscribeMessage("burst")
    async def burst(self, data: Any = MessageBody()) -> str:
        start = data.get("start", 0)
        for n in range(start, start + data["count"]):
            await self.server.to_room(data["room"]).emit("said", n)  # type: ignore[attr-defined]
        return "done"

    @SubscribeMessage("tokens")
    async def tokens(self, data: Any = MessageBody()) -> Any:
        """A stream of ``count`` numbers, ``delay`` seconds apart: it belongs to the session."""
        for n in range(data["count"]):
            await anyio.sleep(data["delay"])
            yield n

    @SubscribeMessage("connections")
    async def connections(self) -> list[dict[str, Any]]:
        return self.connected

    @SubscribeMessage("disconnections")
    async def disconnections(self) -> list[str]:
        return self.disconnected


app = GatewayMiddleware(None, gateways=[RecoveryTestGateway])
