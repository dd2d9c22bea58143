"""Handshake guards, origin checks, subprotocols and the connection cap, on real servers."""

from __future__ import annotations

import logging

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from gatewayasgi import (
    BaseGuard,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    OnGatewayConnection,
    SubscribeMessage,
    WebSocketGateway,
)
from tests.servers import connect, run_server

pytestmark = pytest.mark.anyio


@Injectable
class Tokens:
    def __init__(self) -> None:
        self.valid = {"s3cret"}


class TokenGuard(BaseGuard):
    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens

    async def can_activate(self, context):
        ws = context.switch_to_ws()
        assert ws.get_event() is None and ws.get_data() is None
        client = ws.get_client()
        token = client.query_params.get("token")
        if token in self.tokens.valid:
            client.state.user = "alice"
            return True
        return False


@WebSocketGateway("/secure", handshake_guards=[TokenGuard], subprotocols=["v2.chat", "v1.chat"])
class SecureGateway(OnGatewayConnection):
    connections = 0

    def on_connection(self, client):
        SecureGateway.connections += 1

    @SubscribeMessage("whoami")
    def whoami(self, client=None, data=MessageBody()):
        return None


@WebSocketGateway("/me")
class MeGateway:
    @SubscribeMessage("me")
    def me(self, data=MessageBody()):
        return data


def status_of(exc: BaseException) -> int:
    assert isinstance(exc, InvalidStatus), exc
    return exc.response.status_code


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_handshake_guard_refuses_with_403_before_accept(server: str) -> None:
    SecureGateway.connections = 0
    app = GatewayMiddleware(gateways=[SecureGateway], providers=[Tokens])
    async with run_server(app, server) as address:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"ws://{address}/secure?token=wrong", open_timeout=5):
                pass
        assert status_of(info.value) == 403
        assert SecureGateway.connections == 0
        middleware_server = app.server_for(SecureGateway)
        assert not middleware_server.clients


async def test_handshake_guard_admits_and_can_set_state() -> None:
    seen = {}

    @WebSocketGateway("/state", handshake_guards=[TokenGuard])
    class StateGateway:
        @SubscribeMessage("user")
        def user(self, data=MessageBody()):
            return None

        def on_connection(self, client):
            seen["user"] = client.state.user

    app = GatewayMiddleware(gateways=[StateGateway], providers=[Tokens])
    async with run_server(app) as address, connect(address, "/state?token=s3cret") as client:
        await client.send("user")
        assert await client.nothing_within(0.2)
    assert seen == {"user": "alice"}


async def test_subprotocol_is_one_the_client_offered() -> None:
    app = GatewayMiddleware(gateways=[SecureGateway], providers=[Tokens])
    async with run_server(app) as address:
        url = f"ws://{address}/secure?token=s3cret"
        async with websockets.connect(url, subprotocols=["v1.chat", "other"]) as ws:
            assert ws.subprotocol == "v1.chat"
        async with websockets.connect(url, subprotocols=["v2.chat", "v1.chat"]) as ws:
            assert ws.subprotocol == "v2.chat"  # the gateway's preference wins


async def test_subprotocol_not_offered_is_never_chosen() -> None:
    app = GatewayMiddleware(gateways=[SecureGateway], providers=[Tokens])
    async with run_server(app) as address:
        url = f"ws://{address}/secure?token=s3cret"
        async with websockets.connect(url) as ws:
            assert ws.subprotocol is None


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://app.example.com:443", True),
        ("http://app.example.com", False),
        ("https://app.example.com.evil.net", False),
        ("https://evil.net/app.example.com", False),
        ("https://app.example.com:8443", False),
        ("null", False),
    ],
)
async def test_origins_match_exactly(origin: str, allowed: bool) -> None:
    app = GatewayMiddleware(
        gateways=[MeGateway],
        allowed_origins=["https://app.example.com"],
    )
    async with run_server(app) as address:
        url = f"ws://{address}/me"
        if allowed:
            async with websockets.connect(url, origin=origin) as ws:
                await ws.send('{"event": "me", "data": 1}')
                assert await ws.recv() == '{"event":"me","data":1}'
        else:
            with pytest.raises(InvalidStatus) as info:
                async with websockets.connect(url, origin=origin):
                    pass
            assert status_of(info.value) == 403


async def test_missing_origin_is_refused_unless_allowed() -> None:
    """With an allow-list, no ``Origin`` is refused by default and admitted when configured."""
    strict = GatewayMiddleware(gateways=[MeGateway], allowed_origins=["https://a.example"])
    lenient = GatewayMiddleware(
        gateways=[MeGateway], allowed_origins=["https://a.example"], allow_missing_origin=True
    )
    async with run_server(strict) as address:
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"ws://{address}/me"):
                pass
        assert status_of(info.value) == 403
    async with run_server(lenient) as address, connect(address, "/me") as client:
        assert await client.request("me", 2) == {"event": "me", "data": 2}


async def test_connection_cap_refuses_the_next_client() -> None:
    app = GatewayMiddleware(gateways=[MeGateway], max_connections=2)
    async with run_server(app) as address:
        async with connect(address, "/me") as one, connect(address, "/me") as two:
            with pytest.raises(InvalidStatus) as info:
                async with websockets.connect(f"ws://{address}/me"):
                    pass
            assert status_of(info.value) == 503
            assert await one.request("me", 1) == {"event": "me", "data": 1}
            assert await two.request("me", 2) == {"event": "me", "data": 2}


async def test_tokens_in_the_query_string_are_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gatewayasgi")

    @WebSocketGateway("/leaky")
    class Crashy:
        @SubscribeMessage("boom")
        def boom(self):
            raise RuntimeError("boom")

    app = GatewayMiddleware(gateways=[Crashy, SecureGateway], providers=[Tokens])
    async with run_server(app) as address:
        async with connect(address, "/leaky?token=TOPSECRET123") as client:
            await client.send("boom")
            await client.recv()
            await client.expect_close()
        with pytest.raises(InvalidStatus):
            async with websockets.connect(f"ws://{address}/secure?token=TOPSECRET456"):
                pass
    assert caplog.records, "expected the handler failure to be logged"
    text = "\n".join(record.getMessage() + str(record.exc_text or "") for record in caplog.records)
    assert "TOPSECRET" not in text
