"""Streaming: a generator handler (async or not) is a stream; the manual recipe still works."""

from __future__ import annotations

import pytest

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.gateway.decorators import gateway_meta
from gatewayasgi.testing import GatewayTestClient


@WebSocketGateway("/gen")
class GeneratorGateway:
    @SubscribeMessage("count")
    async def count(self, n: int = MessageBody("n")):
        for i in range(n):
            yield i


@WebSocketGateway("/syncgen")
class SyncGeneratorGateway:
    @SubscribeMessage("count")
    def count(self, n: int = MessageBody("n")):
        yield from range(n)


@WebSocketGateway("/stream")
class StreamGateway:
    """The README's streaming recipe."""

    @SubscribeMessage("count")
    async def count(self, n: int = MessageBody("n"), client=ConnectedSocket()):
        for i in range(n):
            await client.emit("count.item", {"i": i})  # through the outbox: bounded
        return {"done": True, "items": n}  # the final frame, with the request's id


@pytest.mark.anyio
@pytest.mark.parametrize("gateway", [GeneratorGateway, SyncGeneratorGateway])
async def test_a_generator_handler_streams_its_items_then_ends(gateway: type) -> None:
    app = GatewayMiddleware(gateways=[gateway])
    path = gateway_meta(gateway).namespace  # type: ignore[union-attr]
    async with GatewayTestClient(app) as client:
        async with client.websocket_connect(path) as ws:
            await ws.emit("count", {"n": 2}, id="req-1")
            frames = [await ws.receive_json() for _ in range(3)]
    assert frames == [
        {"event": "count", "data": 0, "id": "req-1", "seq": 1},
        {"event": "count", "data": 1, "id": "req-1", "seq": 2},
        {"event": "count", "data": None, "id": "req-1", "end": True},
    ]


@pytest.mark.anyio
async def test_the_streaming_recipe_sends_items_then_the_final_reply_with_the_id() -> None:
    app = GatewayMiddleware(gateways=[StreamGateway])
    async with GatewayTestClient(app) as client:
        async with client.websocket_connect("/stream") as ws:
            await ws.emit("count", {"n": 3}, id="req-1")
            frames = [await ws.receive_json() for _ in range(4)]
    assert frames == [
        {"event": "count.item", "data": {"i": 0}},
        {"event": "count.item", "data": {"i": 1}},
        {"event": "count.item", "data": {"i": 2}},
        {"event": "count", "data": {"done": True, "items": 3}, "id": "req-1"},
    ]
