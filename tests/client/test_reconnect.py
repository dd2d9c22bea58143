"""Reconnection across a server restart on the same port, and the recovery handshake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from gatewayasgi.client import (
    ConnectError,
    ConnectionClosed,
    GatewayClient,
    Message,
    NotConnected,
    Session,
)
from tests.client.apps import FakeRecoveryGateway, Wire, fake_recovery_app, gateway_app
from tests.servers import TIMEOUT, _hypercorn, _uvicorn, free_port, run_server

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn"]
FAST = {"reconnect_delay": 0.02, "reconnect_delay_max": 0.1, "connect_timeout": TIMEOUT}


@asynccontextmanager
async def serve_on(port: int, kind: str, app: Any) -> AsyncIterator[str]:
    """A real server on a given port, so that a restart keeps the client's URL."""
    runner = _hypercorn if kind == "hypercorn" else _uvicorn
    async with runner(app, port, True, "") as address:
        yield address


@pytest.mark.parametrize("kind", SERVERS)
async def test_reconnects_after_a_server_restart_and_sends_waiting_emits(kind: str) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/client"
    client = GatewayClient(url, **FAST)
    down = asyncio.Event()
    client.on_disconnect(lambda closed: down.set())
    async with serve_on(port, kind, gateway_app()):
        await client.connect()
        assert await client.call("echo", 1, timeout=TIMEOUT) == 1
    await asyncio.wait_for(down.wait(), TIMEOUT)
    assert client.state == "reconnecting" and client.last_close is not None
    assert not client.last_close.terminal
    with pytest.raises(NotConnected):
        await client.emit("echo", "lost", timeout=0.05)
    waiting = asyncio.ensure_future(client.emit("note", {"text": "later", "count": 1}))
    async with serve_on(port, kind, gateway_app()):
        await client.wait_connected(TIMEOUT)
        await asyncio.wait_for(waiting, TIMEOUT)  # sent on the new connection
        assert await client.receive(timeout=TIMEOUT) == Message(
            "noted", {"text": "later", "count": 1}
        )
        assert await client.call("echo", 2, timeout=TIMEOUT) == 2
        await client.close()


async def test_gives_up_after_max_reconnect_attempts() -> None:
    port = free_port()
    client = GatewayClient(f"ws://127.0.0.1:{port}/client", max_reconnect_attempts=2, **FAST)
    async with serve_on(port, "hypercorn", gateway_app()):
        await client.connect()
    closed = await client.wait_closed(timeout=TIMEOUT)
    assert isinstance(closed, ConnectError) and "gave up after 2" in str(closed)
    with pytest.raises(ConnectError):
        await client.call("echo", 1)


async def test_connect_retry_waits_for_the_server() -> None:
    port = free_port()
    client = GatewayClient(f"ws://127.0.0.1:{port}/client", **FAST)
    with pytest.raises(ConnectError) as info:
        await client.connect()  # one attempt by default
    assert info.value.status is None and not info.value.terminal
    attempt = asyncio.ensure_future(client.connect(retry=True))
    async with serve_on(port, "uvicorn", gateway_app()):
        await asyncio.wait_for(attempt, TIMEOUT)
        assert await client.call("echo", 3, timeout=TIMEOUT) == 3
        await client.close()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, Wire]]:
    FakeRecoveryGateway.sessions.clear()
    FakeRecoveryGateway.expire = False
    wire = fake_recovery_app()
    async with run_server(wire, "hypercorn") as address:
        yield f"ws://{address}/fake-recovery", wire


async def test_resume_offers_the_credential_and_reads_session_frames(
    fake: tuple[str, Wire],
) -> None:
    url, wire = fake
    sessions: list[Session] = []
    connected = asyncio.Event()
    client = GatewayClient(url, recover=True, subprotocols=["v1"], **FAST)
    client.on_session(sessions.append)
    client.on_connect(connected.set)
    async with client:
        assert wire.offers == [["gatewayasgi", "v1"]]
        first_id = client.id
        assert first_id is not None and first_id.startswith("c_")
        assert not client.recovered and client.session_reason is None
        last = await client.call("ticks", 3, timeout=TIMEOUT)
        assert [(await client.receive(timeout=TIMEOUT)).data for _ in range(3)] == [0, 1, 2]

        # A cut that is not terminal: the next handshake asks to resume from `last`.
        connected.clear()
        await client.emit("kick", {"code": 1012})
        await asyncio.wait_for(connected.wait(), TIMEOUT)
        token = sessions[0].token
        assert wire.offers[-1] == [
            "gatewayasgi",
            f"gatewayasgi.resume.{first_id}.{token}.e1.{last}",
            "v1",
        ]
        assert client.recovered and client.id == first_id and client.session_reason is None

        # The server lost the history while connected: a $session with a reason.
        assert await client.call("lost", first_id, timeout=TIMEOUT) == "lost"
        assert client.session is not None and client.session.epoch == "e2"
        assert client.session_reason == "epoch" and not client.recovered
        with pytest.raises(TimeoutError):  # $session frames never reach receive()
            await client.receive(timeout=0.1)

        # The window passed: a new session, told so.
        FakeRecoveryGateway.expire = True
        connected.clear()
        await client.emit("kick", {"code": 1001})
        await asyncio.wait_for(connected.wait(), TIMEOUT)
        assert wire.offers[-1][1].startswith(f"gatewayasgi.resume.{first_id}.t")
        assert wire.offers[-1][1].endswith(".e2.100-0")
        assert not client.recovered and client.id != first_id
        assert client.session_reason == "expired"
    assert [s.recovered for s in sessions] == [False, True, False, False]


async def test_close_1000_forgets_the_session_other_codes_keep_it(fake: tuple[str, Wire]) -> None:
    url, wire = fake
    client = GatewayClient(url, recover=True, **FAST)
    await client.connect()
    first_id = client.id
    await client.close(1001)  # e.g. going away: the server keeps the session for its window
    await client.connect()
    assert wire.offers[-1][1].startswith(f"gatewayasgi.resume.{first_id}.")
    assert client.recovered and client.id == first_id
    await client.close()  # 1000: the session ends
    assert client.id is None
    await client.connect()
    assert wire.offers[-1] == ["gatewayasgi"]
    assert not client.recovered and client.id not in (None, first_id)
    await client.close()


async def test_terminal_close_forgets_the_session(fake: tuple[str, Wire]) -> None:
    url, _ = fake
    client = GatewayClient(url, recover=True, **FAST)
    async with client:
        await client.emit("kick", {"code": 4000, "reason": "bye"})
        closed = await client.wait_closed(timeout=TIMEOUT)
        assert isinstance(closed, ConnectionClosed) and closed.code == 4000
        assert client.id is None
