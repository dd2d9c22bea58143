"""Streaming: a generator handler fails at startup; the documented recipe streams."""

from __future__ import annotations

import pytest

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.exceptions import ConfigurationError
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


@pytest.mark.parametrize("gateway", [GeneratorGateway, SyncGeneratorGateway])
def test_a_generator_handler_fails_at_startup_with_the_recipe(gateway: type) -> None:
    with pytest.raises(ConfigurationError) as info:
        GatewayMiddleware(gateways=[gateway])
    message = str(info.value)
    assert f"Handler {gateway.__name__}.count for event 'count' is a" in message
    assert "client.emit('count.item', item)" in message
    assert "carries the request's id" in message


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
