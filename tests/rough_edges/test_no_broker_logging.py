"""Without a broker, rooms are local to the process: the middleware says so once, at
startup, so several worker processes do not split rooms silently."""

from __future__ import annotations

import logging

import pytest

from gatewayasgi import GatewayMiddleware, SubscribeMessage, WebSocketGateway
from gatewayasgi.brokers import RedisBroker
from tests.redis_server import RedisServer
from tests.servers import SERVERS, connect, run_server

pytestmark = pytest.mark.anyio

LOCAL = "rooms and emits are local to this process"


@WebSocketGateway("/local-rooms")
class LocalGateway:
    @SubscribeMessage("ping")
    def ping(self) -> str:
        return "pong"


def local_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if LOCAL in record.getMessage()]


@pytest.mark.parametrize("server", SERVERS)
async def test_no_broker_is_logged_once_per_middleware_at_startup(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayasgi")
    first, second = (GatewayMiddleware(gateways=[LocalGateway]) for _ in range(2))
    async with run_server(first, server) as address:
        [record] = local_lines(caplog)  # at startup, before any client
        assert record.levelno == logging.INFO
        assert "broker=RedisBroker" in record.getMessage()
        for _ in range(2):
            async with connect(address, "/local-rooms") as client:
                assert await client.request("ping") == {"event": "ping", "data": "pong"}
    async with run_server(first, server):  # the same middleware served again
        pass
    assert len(local_lines(caplog)) == 1
    async with run_server(second, server):
        pass
    assert len(local_lines(caplog)) == 2


async def test_a_broker_or_no_gateway_is_not_logged(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayasgi")
    shared = GatewayMiddleware(gateways=[LocalGateway], broker=RedisBroker(redis_server.url))
    async with run_server(shared) as address, connect(address, "/local-rooms") as client:
        assert await client.request("ping") == {"event": "ping", "data": "pong"}
    async with run_server(GatewayMiddleware(gateways=[])):
        pass
    assert local_lines(caplog) == []
