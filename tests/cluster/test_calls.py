"""Server -> client calls on one process, under hypercorn and uvicorn, with a real client.

A controller client asks the gateway to call another client (the callee) by id: the
callee sees ``{"event", "data", "ack": N}`` and answers with ``$ack`` (or does not), and
the controller's reply tells how ``client.call`` ended.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from gatewayasgi.runtime.calls import MAX_PENDING_CALLS
from tests.cluster.app import NAMESPACE, make_app
from tests.servers import Client, connect, run_server, server_read

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn"]


async def welcome(client: Client) -> str:
    frame = await client.recv()
    assert frame["event"] == "welcome", frame
    return str(frame["data"]["id"])


async def ask(controller: Client, callee_id: str, timeout: float, **call: Any) -> None:
    """Send the controller's ``call`` request (its reply is read later)."""
    data = {"target": callee_id, "event": "ask", "timeout": timeout, **call}
    await controller.send("call", data, id=1)


@pytest.mark.parametrize("server", SERVERS)
async def test_call_returns_the_answer_data(server: str) -> None:
    async with (
        run_server(make_app(), server) as address,
        connect(address, NAMESPACE) as callee,
        connect(address, NAMESPACE) as controller,
    ):
        callee_id = await welcome(callee)
        await welcome(controller)
        await ask(controller, callee_id, 5, data={"n": 21})
        frame = await callee.recv()
        assert frame["event"] == "ask" and frame["data"] == {"n": 21}
        assert type(frame["ack"]) is int
        await callee.send("$ack", {"doubled": 42}, id=frame["ack"])
        assert await controller.recv() == {
            "event": "call",
            "data": {"data": {"doubled": 42}},
            "id": 1,
        }


@pytest.mark.parametrize("server", SERVERS)
async def test_call_raises_the_clients_error_message(server: str) -> None:
    async with (
        run_server(make_app(), server) as address,
        connect(address, NAMESPACE) as callee,
        connect(address, NAMESPACE) as controller,
    ):
        callee_id = await welcome(callee)
        await welcome(controller)
        await ask(controller, callee_id, 5)
        frame = await callee.recv()
        await callee.send_raw(
            f'{{"event": "$ack", "id": {frame["ack"]}, "error": {{"message": "not now"}}}}'
        )
        reply = await controller.recv()
        assert reply["data"] == {"error": "rejected", "message": "not now"}


@pytest.mark.parametrize("server", SERVERS)
async def test_call_times_out_with_a_timeout_error(server: str) -> None:
    async with (
        run_server(make_app(), server) as address,
        connect(address, NAMESPACE) as callee,
        connect(address, NAMESPACE) as controller,
    ):
        callee_id = await welcome(callee)
        await welcome(controller)
        began = time.monotonic()
        await ask(controller, callee_id, 0.3)
        assert (await callee.recv())["event"] == "ask"  # seen, never answered
        assert (await controller.recv())["data"] == {"error": "timeout"}
        assert time.monotonic() - began >= 0.3
        # The late answer is ignored (counted), never answered with an error frame.
        await callee.send("$ack", "too late", id=1)
        assert await callee.nothing_within(0.3)


@pytest.mark.parametrize("server", SERVERS)
async def test_call_fails_at_once_when_the_callee_closes(server: str) -> None:
    async with (
        run_server(make_app(), server) as address,
        connect(address, NAMESPACE) as controller,
    ):
        await welcome(controller)
        async with connect(address, NAMESPACE) as callee:
            callee_id = await welcome(callee)
            began = time.monotonic()
            await ask(controller, callee_id, 30)
            assert (await callee.recv())["event"] == "ask"
        reply = await controller.recv(timeout=10)
        assert reply["data"] == {"error": "closed"}
        assert time.monotonic() - began < 10  # not the call's 30 s timeout


@pytest.mark.parametrize("server", SERVERS)
async def test_unknown_and_malformed_answers_are_counted_not_answered(server: str) -> None:
    app = make_app()
    async with (
        run_server(app, server) as address,
        connect(address, NAMESPACE) as callee,
        connect(address, NAMESPACE) as controller,
    ):
        callee_id = await welcome(callee)
        await welcome(controller)
        for raw in (
            '{"event": "$ack", "id": 12345, "data": 1}',
            '{"event": "$ack", "id": "x", "data": 1}',
            '{"event": "$ack"}',
            '{"event": "$ack", "id": 7, "error": "not an object"}',
        ):
            await callee.send_raw(raw)
        assert await callee.nothing_within(0.3)
        gateway = app.server_for(NAMESPACE)

        def unknown() -> int:
            calls = gateway.clients[callee_id]._calls
            return 0 if calls is None else calls.unknown_answers

        assert await server_read(address, unknown) == 4
        # The connection works as before: a real call is still answered.
        await ask(controller, callee_id, 5)
        frame = await callee.recv()
        await callee.send("$ack", "fine", id=frame["ack"])
        assert (await controller.recv())["data"] == {"data": "fine"}


@pytest.mark.parametrize("server", SERVERS)
async def test_a_handler_awaiting_a_call_to_its_own_client_fails_at_once(server: str) -> None:
    async with run_server(make_app(), server) as address, connect(address, NAMESPACE) as client:
        await welcome(client)
        began = time.monotonic()
        reply = await client.request("call_self", None, id=1)
        assert reply["data"] == {"error": "CallDeadlockError", "timeout": False}
        assert time.monotonic() - began < 5  # not the call's 30 s timeout
        assert await client.nothing_within(0.2)  # no call frame was sent


async def test_pending_calls_per_connection_are_bounded() -> None:
    """The 257th call in flight on one connection fails at once; the others still settle."""
    import anyio

    from gatewayasgi import CallLimitError
    from gatewayasgi.protocol.json import JSON
    from gatewayasgi.runtime.calls import PendingCalls

    class Fake:
        id = "c_" + "0" * 32
        closed = False
        protocol = JSON
        sent: list[str] = []

        async def send_payload(self, frame: str) -> None:
            self.sent.append(frame)

    calls, client = PendingCalls(), Fake()
    outcomes: list[Any] = []

    async def one() -> None:
        try:
            outcomes.append(await calls.call(client, "e", None, 5))  # type: ignore[arg-type]
        except Exception as exc:
            outcomes.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for _ in range(MAX_PENDING_CALLS):
                tasks.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            assert len(calls) == MAX_PENDING_CALLS
            with pytest.raises(CallLimitError):
                await calls.call(client, "e", None, 5)  # type: ignore[arg-type]
            for number in range(1, MAX_PENDING_CALLS + 1):
                assert calls.answer(number, number, None)
    assert sorted(outcomes) == list(range(1, MAX_PENDING_CALLS + 1))
    assert len(calls) == 0
