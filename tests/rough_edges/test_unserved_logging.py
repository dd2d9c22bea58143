"""Declared-but-not-served gateways and unmatched websocket paths are not silent 403s."""

from __future__ import annotations

import logging

import pytest

from gatewayasgi import BaseGuard, GatewayMiddleware, WebSocketGateway, middleware
from gatewayasgi._types import Receive, Scope, Send
from gatewayasgi.testing import GatewayTestClient, WebSocketDenied

pytestmark = pytest.mark.anyio


@WebSocketGateway("/served")
class ServedGateway:
    pass


@WebSocketGateway("/forgotten")
class ForgottenGateway:
    pass


@WebSocketGateway("/elsewhere-served")
class ServedElsewhereGateway:
    pass


class Nobody(BaseGuard):
    def can_activate(self, context: object) -> bool:
        return False


@WebSocketGateway("/closed-door", handshake_guards=[Nobody])
class ClosedDoorGateway:
    pass


def unserved_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "gatewayasgi" and "passed to no GatewayMiddleware" in record.getMessage()
    ]


async def test_a_forgotten_gateway_is_logged_once_at_startup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "gatewayasgi")
    app = GatewayMiddleware(gateways=[ServedGateway, ClosedDoorGateway])
    async with GatewayTestClient(app) as client:
        async with client.websocket_connect("/served"):
            pass
        async with client.websocket_connect("/served"):
            pass
    (message,) = unserved_warnings(caplog)
    assert f"{__name__}.ForgottenGateway (/forgotten)" in message
    assert "ServedGateway " not in message and "ClosedDoorGateway" not in message
    assert "add them to gateways=[...]" in message


async def test_a_gateway_another_middleware_serves_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "gatewayasgi")
    elsewhere = GatewayMiddleware(gateways=[ServedElsewhereGateway])
    async with GatewayTestClient(GatewayMiddleware(gateways=[ServedGateway])):
        pass
    messages = unserved_warnings(caplog)
    assert messages and all("ServedElsewhereGateway" not in message for message in messages)
    assert elsewhere.tables


async def test_nothing_is_reported_when_every_declared_gateway_is_served(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(middleware, "registered_gateways", lambda: [ServedGateway])
    caplog.set_level(logging.WARNING, "gatewayasgi")
    async with GatewayTestClient(GatewayMiddleware(gateways=[ServedGateway])):
        pass
    assert unserved_warnings(caplog) == []


async def test_a_forgotten_gateway_path_is_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gatewayasgi")
    app = GatewayMiddleware(gateways=[ServedGateway])
    async with GatewayTestClient(app) as client:
        with pytest.raises(WebSocketDenied, match="ForgottenGateway declares it"):
            async with client.websocket_connect("/forgotten?token=secret"):
                pass
    assert (
        "websocket /forgotten refused with 403: no gateway serves this path (namespaces "
        f"served: /served); gateway {__name__}.ForgottenGateway declares it but was passed "
        "to no GatewayMiddleware: add it to gateways=[...]" in caplog.messages
    )
    assert not any("secret" in message for message in caplog.messages)


async def test_an_unmatched_path_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gatewayasgi")
    app = GatewayMiddleware(gateways=[ServedGateway])
    async with GatewayTestClient(app) as client:
        with pytest.raises(WebSocketDenied, match="namespaces served: /served"):
            async with client.websocket_connect("/nowhere"):
                pass
    assert (
        "websocket /nowhere refused with 403: no gateway serves this path (namespaces "
        "served: /served); is the gateway passed to GatewayMiddleware(gateways=[...])?"
        in caplog.messages
    )


async def test_an_unmatched_path_passed_to_the_app_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def refusing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    caplog.set_level(logging.DEBUG, "gatewayasgi")
    app = GatewayMiddleware(refusing, gateways=[ServedGateway])
    async with GatewayTestClient(app, lifespan=False) as client:
        with pytest.raises(WebSocketDenied, match="no gateway serves this path"):
            async with client.websocket_connect("/elsewhere"):
                pass
    [record] = [r for r in caplog.records if r.getMessage().startswith("websocket /elsewhere")]
    assert record.levelno == logging.DEBUG  # the app's own websockets are not news
    assert record.getMessage().startswith(
        "websocket /elsewhere passed to the wrapped app: no gateway serves this path"
    )


async def test_a_handshake_guard_refusal_is_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "gatewayasgi")
    app = GatewayMiddleware(gateways=[ClosedDoorGateway])
    async with GatewayTestClient(app) as client:
        with pytest.raises(WebSocketDenied, match="gateway /closed-door refused it"):
            async with client.websocket_connect("/closed-door"):
                pass
    assert (
        "gateway /closed-door: websocket /closed-door refused with 403: handshake guard "
        "Nobody said no" in caplog.messages
    )
