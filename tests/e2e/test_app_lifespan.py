"""The gateways' lifespan work runs whatever the wrapped app does with ``lifespan``.

An app may raise on the scope at once (Django's handler does), raise after taking
``lifespan.startup``, return without answering, or answer startup and return. In each
case the middleware's ``RedisBroker`` runs from startup to shutdown: an emit from another
process (a ``RedisEmitter``) reaches a client, on real servers and a real redis-server.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from gatewayasgi import GatewayMiddleware, SubscribeMessage, WebSocketGateway
from gatewayasgi._types import Receive, Scope, Send
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.emitter import RedisEmitter
from tests.redis_server import RedisServer
from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio


@WebSocketGateway("/lifespan-news")
class NewsGateway:
    @SubscribeMessage("hello")
    def hello(self) -> str:
        return "hi"


async def http_only(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("only HTTP here")


async def raises_after_startup(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("no lifespan support")


async def returns_silently(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()


async def leaves_after_startup(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})


APPS: dict[str, Any] = {
    "raises at once": http_only,
    "raises after startup": raises_after_startup,
    "returns silently": returns_silently,
    "leaves after startup": leaves_after_startup,
}


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
@pytest.mark.parametrize("kind", list(APPS))
async def test_the_broker_runs_whatever_the_app_does_with_lifespan(
    kind: str, server: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayasgi")
    broker = RedisBroker(redis_server.url, reconnect_delay=0.05)
    app = GatewayMiddleware(APPS[kind], gateways=[NewsGateway], broker=broker)
    async with (
        run_server(app, server) as address,
        connect(address, "/lifespan-news") as client,
        RedisEmitter(redis_server.url, namespace="/lifespan-news") as emitter,
    ):
        assert await client.request("hello") == {"event": "hello", "data": "hi"}
        # Pub/sub keeps nothing for late subscribers: emit until the subscription is up.
        with anyio.fail_after(TIMEOUT):
            while True:
                await emitter.emit("news", kind)
                with anyio.move_on_after(0.2):
                    assert await client.recv() == {"event": "news", "data": kind}
                    break
    messages = [record.getMessage() for record in caplog.records]
    assert not any("did not run lifespan" in message for message in messages), messages
    if kind != "leaves after startup":
        assert any("does not run lifespan" in message for message in messages), messages
