"""The in-process test client drives the middleware with no network."""

from __future__ import annotations

import pytest

from gatewayasgi import (
    GatewayMiddleware,
    MessageBody,
    OnGatewayInit,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.testing import GatewayTestClient, WebSocketClosed, WebSocketDenied

pytestmark = pytest.mark.anyio


@WebSocketGateway("/echo")
class EchoGateway(OnGatewayInit):
    inits = 0

    def after_init(self, server: object) -> None:
        EchoGateway.inits += 1

    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return data

    @SubscribeMessage("boom")
    async def boom(self):
        raise RuntimeError("internal detail")


async def test_round_trip_with_ack_id_and_lifespan() -> None:
    EchoGateway.inits = 0
    app = GatewayMiddleware(gateways=[EchoGateway])
    async with GatewayTestClient(app) as client:
        assert EchoGateway.inits == 1
        async with client.websocket_connect("/echo") as ws:
            await ws.emit("echo", {"x": 1}, id="a")
            assert await ws.receive_json() == {"event": "echo", "data": {"x": 1}, "id": "a"}
    assert EchoGateway.inits == 1


async def test_unknown_path_is_refused_before_accept() -> None:
    app = GatewayMiddleware(gateways=[EchoGateway])
    async with GatewayTestClient(app) as client:
        with pytest.raises(WebSocketDenied):
            async with client.websocket_connect("/nope"):
                pass


async def test_handler_crash_closes_with_1011() -> None:
    app = GatewayMiddleware(gateways=[EchoGateway])
    async with GatewayTestClient(app, lifespan=False) as client:
        async with client.websocket_connect("/echo") as ws:
            await ws.emit("boom")
            assert await ws.receive_json() == {
                "event": "error",
                "data": {"message": "Internal server error"},
            }
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive_json()
            assert info.value.code == 1011


@pytest.mark.parametrize("freeze", [True, False])
async def test_startup_freezes_what_exists_unless_turned_off(freeze: bool) -> None:
    """``gc_freeze`` (on by default) moves startup objects out of full collections."""
    import gc

    gc.unfreeze()
    settings = {} if freeze else {"gc_freeze": False}
    app = GatewayMiddleware(gateways=[EchoGateway], **settings)
    try:
        async with GatewayTestClient(app):
            assert (gc.get_freeze_count() > 0) is freeze
    finally:
        gc.unfreeze()
