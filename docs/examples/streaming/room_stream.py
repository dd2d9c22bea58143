# main.py -- one agent run streamed to every tab watching it: hypercorn main:app
from collections.abc import AsyncIterator
from typing import Any

import anyio

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
)


async def fake_agent(task: str) -> AsyncIterator[Any]:
    """Stands in for an agent's progress updates."""
    for step in ("plan", "search", "write"):
        await anyio.sleep(0.01)
        yield {"task": task, "step": step}
    yield StreamEnd({"task": task, "steps": 3})  # the end frame's data


@WebSocketGateway("/runs")
class Runs:
    @SubscribeMessage("watch")
    async def watch(self, run: str = MessageBody(), client: Any = ConnectedSocket()) -> str:
        await self.server.join(client, f"run:{run}")
        return "watching"

    @SubscribeMessage("start")
    async def start(self, run: str = MessageBody()) -> Any:
        # Every member of the room gets the same frames; returns once the stream ended.
        result = await self.server.to_room(f"run:{run}").stream("progress", fake_agent(run))
        return {"stream": result.id, "items": result.items, "error": result.error is not None}


app = GatewayMiddleware(gateways=[Runs])
