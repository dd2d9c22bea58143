"""``GatewayClient`` against a real gateway under hypercorn and uvicorn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatewayasgi.client import (
    CallError,
    CallTimeout,
    ConnectError,
    ConnectionClosed,
    GatewayClient,
    Message,
)
from tests.client.apps import ClientGateway, Wire, gateway_app
from tests.servers import TIMEOUT, Address, run_server

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn"]
QUIET = 0.1  # how long "nothing arrives" is watched for


@pytest.fixture(params=SERVERS)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Address, Wire]]:
    wire = Wire(gateway_app(heartbeat_interval=0.2, heartbeat_timeout=1.0))
    async with run_server(wire, str(request.param)) as address:
        yield address, wire


def client_for(address: str, path: str = "/client", **options: Any) -> GatewayClient:
    options.setdefault("connect_timeout", TIMEOUT)
    return GatewayClient(f"ws://{address}{path}", **options)


async def test_call_returns_the_reply_data(served: tuple[Address, Wire]) -> None:
    address, _ = served
    async with client_for(address) as client:
        assert client.connected and client.state == "connected"
        assert await client.call("echo", {"a": [1, 2]}, timeout=TIMEOUT) == {"a": [1, 2]}
        # A reply under another event name is still the call's reply (the id is the ack).
        note = {"text": "hi", "count": 2}
        assert await client.call("note", note, timeout=TIMEOUT) == note


async def test_call_raises_the_error_frame_with_validation_details(
    served: tuple[Address, Wire],
) -> None:
    address, _ = served
    async with client_for(address) as client:
        with pytest.raises(CallError) as info:
            await client.call("note", {"text": 1}, timeout=TIMEOUT)
        error = info.value
        assert error.event == "note"
        assert error.message == "Invalid payload for WebSocket event 'note'"
        locs = {tuple(item["loc"]) for item in error.details["errors"]}
        assert locs == {("text",), ("count",)}
        assert error.data["message"] == error.message

        with pytest.raises(CallError) as info:
            await client.call("refuse", None, timeout=TIMEOUT)
        assert (info.value.message, info.value.details) == ("refused", {"code": 42})
        # The connection stays open after an error frame.
        assert await client.call("echo", 1, timeout=TIMEOUT) == 1


async def test_call_without_reply_times_out(served: tuple[Address, Wire]) -> None:
    address, _ = served
    async with client_for(address) as client:
        with pytest.raises(CallTimeout) as info:
            await client.call("silent", None, timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert "'silent'" in str(info.value) and "0.2 s" in str(info.value)
        assert await client.call("echo", "still here", timeout=TIMEOUT) == "still here"


async def test_emit_and_receive_with_timeout(served: tuple[Address, Wire]) -> None:
    address, _ = served
    async with client_for(address) as client:
        await client.emit("note", {"text": "x", "count": 1})
        assert await client.receive(timeout=TIMEOUT) == Message("noted", {"text": "x", "count": 1})
        await client.emit("no_such_event", 1)
        event, data = await client.receive(timeout=TIMEOUT)
        assert (event, data["message"]) == (
            "error",
            "No handler for WebSocket event 'no_such_event'",
        )
        with pytest.raises(TimeoutError):
            await client.receive(timeout=QUIET)


async def test_on_handlers_take_their_events_sync_and_async(served: tuple[Address, Wire]) -> None:
    address, _ = served
    seen: list[int] = []
    done = asyncio.Event()
    async with client_for(address) as client:
        client.on("tick", seen.append)

        @client.on("tock")
        async def on_tock(data: int) -> None:
            if data == 2:
                done.set()

        assert await client.call("push", {"event": "tick", "count": 3}, timeout=TIMEOUT)
        assert seen == [0, 1, 2]  # sync handlers run inline, in order, before the reply
        await client.call("push", {"event": "tock", "count": 3}, timeout=TIMEOUT)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        with pytest.raises(TimeoutError):  # events with a handler never reach receive()
            await client.receive(timeout=QUIET)
        client.off("tick")
        await client.call("push", {"event": "tick", "count": 1}, timeout=TIMEOUT)
        assert await client.receive(timeout=TIMEOUT) == Message("tick", 0)


async def test_a_failing_handler_is_logged_and_the_client_goes_on(
    served: tuple[Address, Wire], caplog: pytest.LogCaptureFixture
) -> None:
    address, _ = served
    async with client_for(address) as client:

        @client.on("tick")
        def broken(data: int) -> None:
            raise RuntimeError("handler bug")

        with caplog.at_level(logging.ERROR, logger="gatewayasgi.client"):
            await client.call("push", {"event": "tick", "count": 1}, timeout=TIMEOUT)
        assert "handler of 'tick' failed" in caplog.text
        assert await client.call("echo", 2, timeout=TIMEOUT) == 2


async def test_receive_buffer_is_bounded_and_drops_the_oldest(
    served: tuple[Address, Wire],
) -> None:
    address, _ = served
    async with client_for(address, receive_buffer=3) as client:
        # The reply comes after the 5 frames on the same connection: all are in by then.
        await client.call("push", {"event": "tick", "count": 5}, timeout=TIMEOUT)
        assert client.dropped == 2
        received = [await client.receive(timeout=TIMEOUT) for _ in range(3)]
        assert [message.data for message in received] == [2, 3, 4]


async def test_server_calls_are_answered_with_the_handler_result(
    served: tuple[Address, Wire],
) -> None:
    address, wire = served
    async with client_for(address) as client:

        @client.on("double")
        async def double(data: int) -> int:
            await asyncio.sleep(0)
            return data * 2

        client.on("sync_double", lambda data: data * 2)

        @client.on("broken")
        def broken(data: Any) -> None:
            raise ValueError("cannot answer that")

        for event, ack in (("double", 7), ("sync_double", 8), ("broken", 9), ("nobody", 10)):
            request = {"event": event, "data": 21, "ack": ack}
            assert await client.call("ask", request, timeout=TIMEOUT) == "asked"
        answers = [await asyncio.wait_for(wire.acks.get(), TIMEOUT) for _ in range(4)]
        by_id = {answer["id"]: answer for answer in answers}
        assert by_id[7] == {"event": "$ack", "id": 7, "data": 42}
        assert by_id[8] == {"event": "$ack", "id": 8, "data": 42}
        assert by_id[9] == {"event": "$ack", "id": 9, "error": {"message": "cannot answer that"}}
        assert by_id[10] == {
            "event": "$ack",
            "id": 10,
            "error": {"message": "No handler for server event 'nobody'"},
        }
        # A server call never reaches receive().
        with pytest.raises(TimeoutError):
            await client.receive(timeout=QUIET)


@pytest.mark.parametrize("kind", SERVERS)
async def test_the_servers_own_client_call_gets_the_handlers_answer(kind: str) -> None:
    """End to end with the runtime's ``Connection.call`` (no wire wrapper in between)."""
    from gatewayasgi import Connection

    if not hasattr(Connection, "call"):
        pytest.skip("server -> client calls (Connection.call) are not in this runtime yet")
    from gatewayasgi.runtime.calls import CallRejectedError

    app = gateway_app()
    async with run_server(app, kind) as address, client_for(address) as client:

        @client.on("double")
        async def double(data: int) -> int:
            return data * 2

        @client.on("broken")
        def broken(data: Any) -> None:
            raise ValueError("cannot answer that")

        client_id = await client.call("whoami", timeout=TIMEOUT)
        connection = app.server_for(ClientGateway).get_client(client_id)
        assert connection is not None
        assert await connection.call("double", 21, timeout=TIMEOUT) == 42
        with pytest.raises(CallRejectedError, match="cannot answer that"):
            await connection.call("broken", None, timeout=TIMEOUT)
        with pytest.raises(CallRejectedError, match="No handler for server event 'nobody'"):
            await connection.call("nobody", None, timeout=TIMEOUT)


async def test_heartbeats_are_answered_and_keep_the_connection(
    served: tuple[Address, Wire],
) -> None:
    """The gateway closes a client silent for interval + timeout (1.2 s) with 1001, checked
    at each heartbeat: 8 heartbeats (1.6 s) can only arrive if the client answered."""
    address, _ = served
    beats = 0
    enough = asyncio.Event()
    async with client_for(address) as client:

        @client.on("heartbeat")
        def count(data: Any) -> None:
            nonlocal beats
            beats += 1
            if beats >= 8:
                enough.set()

        await asyncio.wait_for(enough.wait(), TIMEOUT)
        assert client.connected and client.last_close is None
        assert await client.call("echo", "alive", timeout=TIMEOUT) == "alive"


async def test_pending_call_raises_when_its_connection_drops_and_the_client_reconnects(
    served: tuple[Address, Wire],
) -> None:
    address, _ = served
    connects = 0
    back = asyncio.Event()
    async with client_for(address, reconnect_delay=0.01, reconnect_delay_max=0.05) as client:

        @client.on_connect  # registered once connected: it sees the reconnection only
        def connected() -> None:
            nonlocal connects
            connects += 1
            back.set()

        # 1012 (service restart) is not terminal: the call's reply is lost, the client is not.
        with pytest.raises(ConnectionClosed) as info:
            await client.call("kick", {"code": 1012, "reason": "restart"}, timeout=TIMEOUT)
        assert (info.value.code, info.value.reason, info.value.terminal) == (1012, "restart", False)
        await asyncio.wait_for(back.wait(), TIMEOUT)
        assert client.connected and connects == 1
        assert client.last_close is not None and client.last_close.code == 1012
        assert await client.call("echo", "again", timeout=TIMEOUT) == "again"


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        ({"event": "kick", "data": {"code": 4001, "reason": "go away"}}, 4001, "go away"),
        ({"event": "forbidden", "data": None}, 1008, None),
    ],
)
async def test_no_reconnect_after_a_terminal_close(
    served: tuple[Address, Wire], request_: dict[str, Any], code: int, reason: str | None
) -> None:
    address, wire = served
    ClientGateway.connections = 0
    client = client_for(address, reconnect_delay=0.01, reconnect_delay_max=0.05)
    async with client:
        disconnects: list[ConnectionClosed] = []
        client.on_disconnect(disconnects.append)
        await client.emit(request_["event"], request_["data"])
        closed = await client.wait_closed(timeout=TIMEOUT)
        assert isinstance(closed, ConnectionClosed)
        assert closed.code == code and closed.terminal
        if reason is not None:
            assert closed.reason == reason
        assert client.state == "closed" and client.close_error is closed
        assert [d.code for d in disconnects] == [code]
        with pytest.raises(ConnectionClosed):
            await client.emit("echo", 1)
        with pytest.raises(ConnectionClosed):
            await client.call("echo", 1)
    assert ClientGateway.connections == 1  # the supervisor ended: nothing can reconnect
    assert len(wire.offers) == 1


async def test_clean_close_sends_1000_and_ends_waiters(served: tuple[Address, Wire]) -> None:
    address, wire = served
    client = client_for(address)
    await client.connect()
    waiter = asyncio.ensure_future(client.receive(timeout=TIMEOUT))
    await asyncio.sleep(0)  # let it start waiting
    await client.close()
    with pytest.raises(ConnectionClosed) as info:
        await waiter
    assert (info.value.code, info.value.terminal) == (1000, True)
    assert client.state == "closed"
    if address.kind == "uvicorn":  # hypercorn reports a client's close as 1006 (README)
        await asyncio.wait_for(wire.disconnected.wait(), TIMEOUT)
        assert wire.disconnects == [1000]


async def test_handshake_headers_reach_the_guard_and_refusals_are_terminal(
    served: tuple[Address, Wire],
) -> None:
    address, _ = served
    async with client_for(address, "/guarded", headers={"x-token": "s3cret"}) as client:
        assert await client.call("whoami", timeout=TIMEOUT) == "s3cret"

    calls = 0

    async def fresh_headers() -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {"x-token": "s3cret"}

    async with client_for(address, "/guarded", headers=fresh_headers) as client:
        assert await client.call("whoami", timeout=TIMEOUT) == "s3cret"
    assert calls == 1

    refused = client_for(address, "/guarded", headers={"x-token": "wrong"})
    with pytest.raises(ConnectError) as info:
        await refused.connect(retry=True)  # a 403 is terminal: no retry loop
    assert (info.value.status, info.value.terminal) == (403, True)
    assert refused.state == "closed" and refused.close_error is info.value


async def test_recover_true_needs_a_session_frame(served: tuple[Address, Wire]) -> None:
    address, wire = served
    client = client_for(address, recover=True, connect_timeout=0.3)
    # No $session within 0.3 s, or a heartbeat first: either way the message says why.
    with pytest.raises(ConnectError, match=r"recover=True needs a gateway with recovery="):
        await client.connect()
    assert wire.offers == [["gatewayasgi"]]
    async with client_for(address, subprotocols=["v1"]) as plain:
        assert plain.id is None and not plain.recovered
    assert wire.offers[-1] == ["v1"]  # recover=False offers nothing of its own
