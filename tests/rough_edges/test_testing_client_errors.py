"""``GatewayTestClient``: plain exceptions, query strings, no leaked streams, clear denials."""

from __future__ import annotations

import gc
import warnings

import pytest

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi._types import Receive, Scope, Send
from gatewayasgi.testing import GatewayTestClient, WebSocketClosed, WebSocketDenied

pytestmark = pytest.mark.anyio


class DenyAll(BaseGuard):
    def can_activate(self, context: object) -> bool:
        return False


@WebSocketGateway("/edges")
class EdgesGateway:
    @SubscribeMessage("query")
    async def query(self, client=ConnectedSocket()):
        return dict(client.query_params)

    @SubscribeMessage("bye")
    async def bye(self, client=ConnectedSocket()):
        await client.close(4000, "bye")

    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return data


@WebSocketGateway("/guarded", handshake_guards=[DenyAll])
class GuardedGateway:
    pass


def app() -> GatewayMiddleware:
    return GatewayMiddleware(gateways=[EdgesGateway, GuardedGateway])


async def test_denied_is_catchable_around_the_whole_client() -> None:
    """``pytest.raises(WebSocketDenied)`` works around both context managers."""
    with pytest.raises(WebSocketDenied) as info:
        async with GatewayTestClient(app()) as client:
            async with client.websocket_connect("/nowhere"):
                pass
    assert info.value.status == 403


async def test_a_close_raised_in_the_body_comes_out_as_itself() -> None:
    """An exception inside ``websocket_connect`` is not wrapped in ExceptionGroups."""
    with pytest.raises(WebSocketClosed) as info:
        async with GatewayTestClient(app()) as client:
            async with client.websocket_connect("/edges") as ws:
                await ws.emit("bye")
                await ws.receive_json()
    assert (info.value.code, info.value.reason) == (4000, "bye")


async def test_an_assertion_in_the_body_comes_out_as_itself() -> None:
    with pytest.raises(AssertionError, match="mine"):
        async with GatewayTestClient(app()) as client:
            async with client.websocket_connect("/edges"):
                raise AssertionError("mine")


async def test_an_exception_the_app_lets_escape_is_raised_again() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("app bug")

    with pytest.raises(LookupError, match="app bug"):
        async with GatewayTestClient(broken, lifespan=False) as client:
            async with client.websocket_connect("/x"):
                pass


async def test_a_query_string_in_the_path_reaches_the_scope() -> None:
    async with GatewayTestClient(app()) as client:
        async with client.websocket_connect("/edges?token=abc&n=1") as ws:
            await ws.emit("query", id=1)
            assert await ws.receive_json() == {
                "event": "query",
                "data": {"token": "abc", "n": "1"},
                "id": 1,
            }
        async with client.websocket_connect("ws://testserver/edges?token=xyz") as ws:
            await ws.emit("query")
            assert (await ws.receive_json())["data"] == {"token": "xyz"}
        async with client.websocket_connect("/edges", query_string="token=q") as ws:
            await ws.emit("query")
            assert (await ws.receive_json())["data"] == {"token": "q"}


async def test_a_query_string_given_twice_is_refused_clearly() -> None:
    async with GatewayTestClient(app()) as client:
        with pytest.raises(ValueError, match="query string twice"):
            async with client.websocket_connect("/edges?a=1", query_string="b=2"):
                pass


async def test_no_stream_is_left_unclosed() -> None:
    """No ``ResourceWarning: Unclosed MemoryObjectSendStream`` (run under -W error too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with GatewayTestClient(app()) as client:
            async with client.websocket_connect("/edges") as ws:
                await ws.emit("echo", 1)
                await ws.receive_json()
            with pytest.raises(WebSocketDenied):
                async with client.websocket_connect("/nowhere"):
                    pass
            with pytest.raises(WebSocketClosed):
                async with client.websocket_connect("/edges") as ws:
                    await ws.emit("bye")
                    await ws.receive_json()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_denial_names_the_path_and_the_served_namespaces() -> None:
    async with GatewayTestClient(app()) as client:
        with pytest.raises(WebSocketDenied) as info:
            async with client.websocket_connect("/chat"):
                pass
    message = str(info.value)
    assert "/chat" in message
    assert "no gateway serves this path" in message
    assert "/edges, /guarded" in message
    assert info.value.namespaces == ("/edges", "/guarded")


async def test_denial_by_a_gateway_says_which_gateway() -> None:
    async with GatewayTestClient(app()) as client:
        with pytest.raises(WebSocketDenied, match="gateway /guarded refused it"):
            async with client.websocket_connect("/guarded"):
                pass
