"""Room streams (``server.to(room).stream``) on real servers: every member of the room
gets the same frames in order (JSON and MessagePack), an outsider gets none, a failing
source ends the stream with a bounded error member, a cancelled caller with a cancelled
end, and a member that cut its connection on a gateway with recovery gets the items it
missed once and in order when it resumes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import ormsgpack
import pytest
import websockets

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.protocol.msgpack import SUBPROTOCOL, MessagePack
from tests.recovery.wire import Session
from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio

REAL = ["hypercorn", "uvicorn"]


def _app(recovery: Recovery | None = None) -> tuple[GatewayMiddleware, type]:
    @WebSocketGateway("/runs", recovery=recovery)
    class Runs:
        @SubscribeMessage("join")
        async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            await self.server.join(client, room)
            return "joined"

    return GatewayMiddleware(gateways=[Runs], protocols=[MessagePack()]), Runs


async def _steps(n: int, end: Any = None) -> AsyncIterator[Any]:
    for i in range(1, n + 1):
        yield {"step": i}
    yield StreamEnd(end)


class MsgpackClient:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def recv(self) -> Any:
        with anyio.fail_after(TIMEOUT):
            return ormsgpack.unpackb(await self.ws.recv())


async def _join(client: Any, room: str) -> None:
    reply = await client.request("join", room, id=1)
    assert reply == {"event": "join", "data": "joined", "id": 1}


@pytest.mark.parametrize("server", REAL)
async def test_every_member_gets_the_same_frames_in_order_and_an_outsider_none(
    server: str,
) -> None:
    app, gateway = _app()
    async with run_server(app, server) as address:
        runs = app.get(gateway)
        async with (
            connect(address, "/runs") as member,
            connect(address, "/runs") as outsider,
            websockets.connect(
                f"ws://{address}/runs", subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT
            ) as raw,
        ):
            packed = MsgpackClient(raw)
            await _join(member, "run")
            await raw.send(ormsgpack.packb({"event": "join", "data": "run", "id": 1}))
            assert (await packed.recv())["data"] == "joined"
            await _join(outsider, "elsewhere")

            with anyio.fail_after(TIMEOUT):
                result = await runs.server.to_room("run").stream("progress", _steps(3, {"n": 3}))
            assert (result.items, result.cancelled, result.error) == (3, False, None)
            assert isinstance(result.id, str) and 8 <= len(result.id) <= 16
            expected = [
                {"event": "progress", "data": {"step": i}, "stream": result.id, "seq": i}
                for i in (1, 2, 3)
            ]
            expected.append(
                {"event": "progress", "data": {"n": 3}, "stream": result.id, "end": True}
            )
            assert [await member.recv() for _ in expected] == expected
            assert [await packed.recv() for _ in expected] == expected
            assert await outsider.nothing_within(0.3)

            # A second stream gets another id; a chosen id is kept; a list is a source.
            again = await runs.server.to_room("run").stream("progress", ["a"], stream_id="mine")
            assert again.id == "mine"
            assert await member.recv() == {
                "event": "progress",
                "data": "a",
                "stream": "mine",
                "seq": 1,
            }
            assert await member.recv() == {
                "event": "progress",
                "data": None,
                "stream": "mine",
                "end": True,
            }


@pytest.mark.parametrize("server", REAL)
async def test_a_failing_source_ends_with_a_bounded_error_and_nothing_raises(
    server: str,
) -> None:
    app, gateway = _app()
    closed: list[str] = []

    async def failing(exc: Exception) -> AsyncIterator[int]:
        try:
            yield 1
            raise exc
        finally:
            closed.append(type(exc).__name__)

    def numbers() -> Iterator[int]:  # a def generator: taken in the thread pool
        yield from (10, 20)

    async with run_server(app, server) as address:
        room = app.get(gateway).server.to_room("run")
        async with connect(address, "/runs") as member:
            await _join(member, "run")

            async def ends_with(source: Any) -> tuple[Any, dict[str, Any]]:
                with anyio.fail_after(TIMEOUT):
                    result = await room.stream("step", source)
                frames = [await member.recv() for _ in range(result.items + 1)]
                assert [f.get("seq") for f in frames[:-1]] == list(range(1, result.items + 1))
                assert frames[-1]["end"] is True and frames[-1]["stream"] == result.id
                return result, frames[-1]

            result, end = await ends_with(failing(RuntimeError("model crashed")))
            assert isinstance(result.error, RuntimeError)
            assert end["error"] == {"message": "Internal server error"}
            assert end["data"] is None

            result, end = await ends_with(failing(WsException("no more tokens", left=0)))
            assert isinstance(result.error, WsException)
            assert end["error"] == {"message": "no more tokens", "left": 0}

            result, end = await ends_with(failing(WsException("x" * 100_000, blob="y" * 100_000)))
            assert end["error"] == {"message": "x" * 512, "truncated": True}
            assert closed == ["RuntimeError", "WsException", "WsException"]

            result, end = await ends_with(numbers())
            assert (result.items, result.error, end["data"]) == (2, None, None)

            # An item with no wire form ends the stream too, after the items before it.
            result, end = await ends_with(iter([1, object()]))
            assert result.items == 1 and isinstance(result.error, TypeError)
            assert end["error"] == {"message": "Internal server error"}


async def test_a_cancelled_caller_closes_the_source_and_ends_the_stream_cancelled() -> None:
    app, gateway = _app()
    closed = anyio.Event()
    first = anyio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            yield 1
            first.set()
            await anyio.sleep_forever()
            yield 2
        finally:
            closed.set()

    async with run_server(app, "hypercorn") as address:
        room = app.get(gateway).server.to_room("run")
        async with connect(address, "/runs") as member:
            await _join(member, "run")
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(room.stream, "step", endless())
                    await first.wait()
                    tasks.cancel_scope.cancel()
                await closed.wait()
            item = await member.recv()
            assert item["seq"] == 1
            assert await member.recv() == {
                "event": "step",
                "data": None,
                "stream": item["stream"],
                "end": True,
                "cancelled": True,
            }


@pytest.mark.parametrize("server", REAL)
async def test_a_member_that_cut_its_connection_resumes_and_gets_the_missed_items_once(
    server: str,
) -> None:
    app, gateway = _app(Recovery(window=30))
    gate = anyio.Event()

    async def gated() -> AsyncIterator[Any]:
        for i in (1, 2, 3):
            yield i
        await gate.wait()
        for i in (4, 5, 6):
            yield i
        yield StreamEnd("done")

    async with run_server(app, server) as address:
        room = app.get(gateway).server.to_room("run")
        member = Session(address, "/runs")
        await member.open()
        assert await member.request("join", "run") == "joined"
        async with connect(address, "/runs") as other:  # a member that stays
            await other.recv()  # its $session
            await _join(other, "run")
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tasks:
                    results: list[Any] = []

                    async def run() -> None:
                        results.append(await room.stream("step", gated()))

                    tasks.start_soon(run)
                    before = [await member.recv() for _ in range(3)]
                    assert [f["data"] for f in before] == [1, 2, 3]
                    assert all("offset" in f for f in before)
                    member.cut()
                    gate.set()
            (result,) = results
            assert result.items == 6
            # The member that stayed got all of it, live.
            stayed = [await other.recv() for _ in range(7)]
            assert [f.get("seq") for f in stayed] == [1, 2, 3, 4, 5, 6, None]
            assert stayed[-1]["end"] is True and stayed[-1]["data"] == "done"

            resumed = await member.open(resume=True)
            assert resumed["recovered"] is True, resumed
            missed = [await member.recv() for _ in range(4)]
            assert [(f["data"], f.get("seq")) for f in missed[:3]] == [(4, 4), (5, 5), (6, 6)]
            assert {f["stream"] for f in missed} == {result.id}
            end = missed[-1]
            assert (end["end"], end["data"]) == (True, "done")
            # Once: nothing more (no item twice, not the first three again).
            with anyio.move_on_after(0.3) as quiet:
                extra = json.loads(await member.ws.recv())
                pytest.fail(f"a frame after the end: {extra}")
            assert quiet.cancelled_caught
            await member.ws.close()
