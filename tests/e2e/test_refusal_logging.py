"""On a live server, a refused gateway handshake says why in the log (info), not just 403.

A wrong path, a gateway declared but passed to no middleware, and a handshake guard each
log their reason in the words of the test client's ``WebSocketDenied``; the query string
(where tokens travel) never reaches the log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import websockets.exceptions
from fastapi import FastAPI

from gatewayasgi import BaseGuard, GatewayMiddleware, SubscribeMessage, WebSocketGateway
from tests.servers import SERVERS, connect, run_server

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-t0ken"


class TokenGuard(BaseGuard):
    def can_activate(self, context: Any) -> bool:
        client = context.switch_to_ws().get_client()
        return bool(client.query_params.get("token") == "right")


@WebSocketGateway("/door", handshake_guards=[TokenGuard])
class DoorGateway:
    @SubscribeMessage("ping")
    def ping(self) -> str:
        return "pong"


@WebSocketGateway("/left-out")
class LeftOutGateway:
    pass


async def refused(address: str, path: str) -> int:
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with connect(address, path):
            pass
    return int(info.value.response.status_code)


def gateway_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "gatewayasgi" and record.levelno == logging.INFO
    ]


@pytest.mark.parametrize("server", SERVERS)
async def test_each_refusal_logs_its_reason_without_the_query_string(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayasgi")
    app = GatewayMiddleware(gateways=[DoorGateway])
    async with run_server(app, server) as address:
        async with connect(address, "/door?token=right") as client:
            assert await client.request("ping") == {"event": "ping", "data": "pong"}
        assert await refused(address, f"/door?token={TOKEN}") == 403
        assert await refused(address, f"/nowhere?token={TOKEN}") == 403
        assert await refused(address, f"/left-out?token={TOKEN}") == 403
    lines = gateway_lines(caplog)
    assert (
        "gateway /door: websocket /door refused with 403: handshake guard TokenGuard said no"
        in lines
    )
    assert (
        "websocket /nowhere refused with 403: no gateway serves this path (namespaces "
        "served: /door); is the gateway passed to GatewayMiddleware(gateways=[...])?"
    ) in lines
    assert (
        "websocket /left-out refused with 403: no gateway serves this path (namespaces "
        f"served: /door); gateway {__name__}.LeftOutGateway declares it but was passed to "
        "no GatewayMiddleware: add it to gateways=[...]"
    ) in lines
    assert not any(TOKEN in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_forgotten_gateway_in_front_of_an_app_is_logged(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayasgi")
    app = GatewayMiddleware(FastAPI(), gateways=[DoorGateway])
    async with run_server(app, server) as address:
        assert await refused(address, f"/left-out?token={TOKEN}") == 403  # FastAPI's answer
        assert await refused(address, "/elsewhere") == 403
    lines = gateway_lines(caplog)
    assert (
        "websocket /left-out passed to the wrapped app: no gateway serves this path "
        f"(namespaces served: /door); gateway {__name__}.LeftOutGateway declares it but was "
        "passed to no GatewayMiddleware: add it to gateways=[...]"
    ) in lines
    # the app's own paths are its business: at debug only
    assert not any(line.startswith("websocket /elsewhere") for line in lines)
