"""A gateway with recovery whose clients can make their sessions heavy: many long room
names (``rooms``) and a large ``state`` (``keep``). Served in a worker process by the
memory test of waiting sessions (``tests/hardening/test_waiting_memory.py``), with the
bounds that test sets through the environment."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from typing import Any

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)

MiB = 1024 * 1024


@WebSocketGateway(
    "/wait",
    recovery=Recovery(
        window=120, max_session_bytes=int(os.environ.get("WAIT_SESSION_BYTES", 4 * MiB))
    ),
)
class Waiting:
    @SubscribeMessage("rooms")
    async def rooms(self, names: list[str] = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        for name in names:
            await self.server.join(client, name)
        return len(names)

    @SubscribeMessage("keep")
    async def keep(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        client.state.blob = data
        return "kept"

    @SubscribeMessage("waiting")
    async def waiting(self) -> Any:
        # What the allocator holds but nothing uses goes back to the system first, so
        # that the process's RSS tells what is live (glibc keeps freed heap otherwise).
        gc.collect()
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
        keeper = app.runners["/wait"].keeper
        assert keeper is not None
        return {"sessions": keeper.waiting, "bytes": app.waiting.used}


budget = os.environ.get("WAIT_BUDGET")
app = GatewayMiddleware(
    gateways=[Waiting],
    waiting_budget=None if budget == "none" else int(budget or 16 * MiB),
    max_message_size=2 * MiB,
    max_rooms_per_connection=1000,
)
