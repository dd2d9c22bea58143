"""The Python client's streams with ``recover=True`` against a real gateway with recovery:
a stream goes on across a cut that the session survives, items neither lost nor doubled;
leaving the loop cancels it on the server; a session that is not recovered fails it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.client import ConnectionClosed, GatewayClient
from tests.recovery.cut_proxy import CutProxy
from tests.servers import TIMEOUT, free_port, run_server

pytestmark = pytest.mark.anyio

FAST = {"reconnect_delay": 0.02, "reconnect_delay_max": 0.1, "connect_timeout": TIMEOUT}


def make_app(window: float = 30.0) -> tuple[Any, Any]:
    @WebSocketGateway("/chat", recovery=Recovery(window=window))
    class Tokens:
        def __init__(self) -> None:
            self.closed: list[str] = []

        @SubscribeMessage("tokens")
        async def tokens(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            try:
                for n in range(data["count"]):
                    await anyio.sleep(data["delay"])
                    yield n
            finally:
                self.closed.append(client.id)

    app = GatewayMiddleware(gateways=[Tokens])
    return app, app.get(Tokens)


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_stream_survives_a_cut_with_recover(server: str) -> None:
    app, _ = make_app()
    async with run_server(app, server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            client = GatewayClient(f"ws://{proxy.address}/chat", recover=True, **FAST)
            async with client:
                got = []
                with anyio.fail_after(TIMEOUT):
                    async for n in client.stream("tokens", {"count": 50, "delay": 0.01}):
                        got.append(n)
                        if n in (10, 30):
                            proxy.cut()
                assert got == list(range(50))  # once each, in order, across two cuts
                assert client.recovered


async def test_leaving_the_loop_after_a_cut_cancels_on_the_server() -> None:
    app, tokens = make_app()
    async with run_server(app, "hypercorn") as address:
        proxy = CutProxy(address)
        async with proxy.running():
            client = GatewayClient(f"ws://{proxy.address}/chat", recover=True, **FAST)
            async with client:
                with anyio.fail_after(TIMEOUT):
                    async with client.stream("tokens", {"count": 10_000, "delay": 0.01}) as s:
                        async for n in s:
                            if n == 3:
                                proxy.cut()
                            if n == 6:
                                break
                    while not tokens.closed:
                        await anyio.sleep(0.02)
                assert tokens.closed == [client.id]


async def test_a_session_that_is_not_recovered_fails_the_stream() -> None:
    app, tokens = make_app(window=0.2)
    async with run_server(app, "hypercorn") as address:
        proxy = CutProxy(address)
        async with proxy.running():
            client = GatewayClient(f"ws://{proxy.address}/chat", recover=True, **FAST)
            async with client:
                got = []
                with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed):
                    async for n in client.stream("tokens", {"count": 10_000, "delay": 0.01}):
                        got.append(n)
                        if n == 3:
                            # Nowhere to reconnect to until the session's window passed
                            # and the server ended it (its generator closed with it).
                            proxy.target = f"127.0.0.1:{free_port()}"
                            proxy.cut()
                            while not tokens.closed:
                                await anyio.sleep(0.02)
                            proxy.target = address
                assert got == [0, 1, 2, 3]
                assert not client.recovered
                assert client.session_reason in ("expired", "trimmed")
