"""The edge of a new connection under interest routing: a message another process sends
to a client id as soon as the gateway's ``on_connection`` runs reaches the client (its
channel is subscribed, and acknowledged, before the hook runs). Real hypercorn, a real
redis-server, the ``RedisEmitter`` as the other process."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import websockets

from gatewayasgi import GatewayMiddleware, WebSocketGateway
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.emitter import RedisEmitter
from tests.redis_server import RedisServer
from tests.servers import TIMEOUT, run_server

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_a_direct_emit_from_another_process_at_connection_time_arrives(
    redis_server: RedisServer,
) -> None:
    emitter = RedisEmitter(redis_server.url, "/edge")

    @WebSocketGateway("/edge")
    class Edge:
        async def on_connection(self, client: Any) -> None:
            # As another worker or an HTTP handler would: through Redis, to the id.
            await emitter.to(client.id).emit("hello", client.id)

    app = GatewayMiddleware(gateways=[Edge], broker=RedisBroker(redis_server.url))
    try:
        async with run_server(app, "hypercorn") as address:
            for _ in range(20):
                async with websockets.connect(f"ws://{address}/edge") as ws:
                    with anyio.fail_after(TIMEOUT):
                        frame = json.loads(await ws.recv())
                    assert frame["event"] == "hello"
    finally:
        await emitter.aclose()
