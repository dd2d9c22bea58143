"""Streams on gateways with recovery: they belong to the session, not to the socket.

A client whose connection is cut in the middle of a stream resumes its session and gets
the items it missed once and in order, then the live rest, then the end; a ``$cancel``
sent on the resumed connection closes the generator; the session's end closes it too.
The client is ``websockets`` driven by hand (``tests.recovery.wire``): the wire itself.
"""

from __future__ import annotations

import json
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
from gatewayasgi.gateway.streams import StreamEnd
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.wire import Session
from tests.servers import TIMEOUT, run_server, server_read

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn", "hypercorn-trio"]


def make_app(window: float = 30.0) -> tuple[Any, Any]:
    @WebSocketGateway("/chat", recovery=Recovery(window=window))
    class Chat:
        def __init__(self) -> None:
            self.closed: list[tuple[int, str]] = []
            self.made: dict[int, int] = {}

        @SubscribeMessage("count")
        async def count(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            n = data["n"]
            how = "running"
            try:
                for i in range(data["count"]):
                    await anyio.sleep(data.get("delay", 0.0))
                    if i == data.get("emit_at"):
                        await client.emit("aside", i)  # a direct emit between items
                    self.made[n] = i + 1
                    yield i
                how = "finished"
                yield StreamEnd({"total": data["count"]})
            except BaseException:
                if how != "finished":
                    how = "closed"
                raise
            finally:
                self.closed.append((n, how))

        @SubscribeMessage("ping")
        async def ping(self) -> Any:
            return "pong"

    return GatewayMiddleware(gateways=[Chat]), Chat


async def read_until_end(session: Session, frame_id: int) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await session.recv()
        if frame.get("id") == frame_id or frame.get("event") == "aside":
            frames.append(frame)
            if frame.get("end") or frame.get("event") == "error":
                return frames


async def send(session: Session, event: str, data: Any, frame_id: int) -> None:
    await session.ws.send(json.dumps({"event": event, "data": data, "id": frame_id}))


@pytest.mark.parametrize("server", SERVERS)
async def test_a_stream_goes_on_across_a_cut_and_the_client_gets_every_item_once(
    server: str,
) -> None:
    app, gateway = make_app()
    chat = app.get(gateway)
    async with run_server(app, server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            session = Session(proxy.address)
            await session.open()
            request = {"n": 1, "count": 40, "delay": 0.01, "emit_at": 25}
            await send(session, "count", request, 7)
            seen = []
            while len(seen) < 5:
                frame = await session.recv()
                if frame.get("id") == 7:
                    assert "offset" in frame, frame  # recoverable: it carries an offset
                    seen.append(frame)
            proxy.cut()
            await anyio.sleep(0.15)  # the generator goes on meanwhile
            resumed = await session.open(resume=True)
            assert resumed["recovered"] is True, resumed
            rest = await read_until_end(session, 7)
        items = [f["data"] for f in seen + rest if f.get("id") == 7 and not f.get("end")]
        assert items == list(range(40))  # once each, in order
        seqs = [f["seq"] for f in seen + rest if f.get("id") == 7 and not f.get("end")]
        assert seqs == list(range(1, 41))
        end = rest[-1]
        assert end["end"] is True and end["data"] == {"total": 40} and "cancelled" not in end
        # The direct emit keeps its place between the items the handler made around it.
        order = [("aside" if f["event"] == "aside" else f["data"]) for f in seen + rest]
        assert order.index("aside") == order.index(25) - 1 == order.index(24) + 1
        with anyio.fail_after(TIMEOUT):
            while not await server_read(address, list, chat.closed):
                await anyio.sleep(0.02)
        assert await server_read(address, list, chat.closed) == [(1, "finished")]


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_cancel_on_the_resumed_connection_closes_the_generator(server: str) -> None:
    app, gateway = make_app()
    chat = app.get(gateway)
    async with run_server(app, server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            session = Session(proxy.address)
            await session.open()
            await send(session, "count", {"n": 2, "count": 10_000, "delay": 0.01}, 3)
            while (await session.recv()).get("id") != 3:
                pass
            proxy.cut()
            await session.open(resume=True)
            await send(session, "$cancel", None, 3)
            frames = await read_until_end(session, 3)
            assert frames[-1]["end"] is True and frames[-1]["cancelled"] is True
            # The connection still answers.
            assert await session.request("ping", None, frame_id=9) == "pong"
        with anyio.fail_after(TIMEOUT):
            while not await server_read(address, list, chat.closed):
                await anyio.sleep(0.02)
        assert await server_read(address, list, chat.closed) == [(2, "closed")]


async def test_the_sessions_end_closes_its_streams() -> None:
    app, gateway = make_app(window=0.5)
    chat = app.get(gateway)
    async with run_server(app, "hypercorn") as address:
        proxy = CutProxy(address)
        async with proxy.running():
            session = Session(proxy.address)
            await session.open()
            await send(session, "count", {"n": 3, "count": 10_000, "delay": 0.01}, 4)
            while (await session.recv()).get("id") != 4:
                pass
            proxy.cut()
            with anyio.fail_after(TIMEOUT):  # the window passes; the sweep ends it
                while not chat.closed:
                    await anyio.sleep(0.05)
    assert chat.closed == [(3, "closed")]
    assert chat.made[3] < 10_000


async def test_a_stream_waits_for_a_client_that_is_away_past_a_bound() -> None:
    """While nobody reads, a stream produces at most the outbox's bytes, then waits."""

    @WebSocketGateway("/chat", recovery=Recovery(window=30))
    class Big:
        def __init__(self) -> None:
            self.made = 0

        @SubscribeMessage("big")
        async def big(self) -> Any:
            for _ in range(1000):
                await anyio.sleep(0.002)  # 500 items/s unless it waits
                self.made += 1
                yield "x" * 1000

    app = GatewayMiddleware(gateways=[Big], outbox_max_bytes=64 * 1024)
    big = app.get(Big)
    async with run_server(app, "hypercorn") as address:
        proxy = CutProxy(address)
        async with proxy.running():
            session = Session(proxy.address)
            await session.open()
            await send(session, "big", None, 1)
            for _ in range(5):
                while (await session.recv()).get("id") != 1:
                    pass
            proxy.cut()
            at_cut = big.made
            await anyio.sleep(1.0)
            # 64 KiB while away is about 65 items (without the bound: about 500 more).
            assert big.made - at_cut < 150, (at_cut, big.made)
            await session.open(resume=True)
            frames = await read_until_end(session, 1)
    assert frames[-1].get("end") is True
    assert big.made == 1000
    items = [f for f in frames if not f.get("end")]
    assert [f["seq"] for f in items] == list(range(6, 1001))


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_bad_streams_end_with_bounded_errors_and_the_session_stays_healthy(
    server: str,
) -> None:
    @WebSocketGateway("/chat", recovery=Recovery(window=30))
    class Bad:
        @SubscribeMessage("raises")
        async def raises(self) -> Any:
            yield 1
            raise RuntimeError("x" * 100_000)

        @SubscribeMessage("huge")
        async def huge(self) -> Any:
            yield "x" * 200_000  # larger than the outbox allows

        @SubscribeMessage("never")
        async def never(self) -> Any:
            await anyio.sleep_forever()
            yield None

        @SubscribeMessage("ping")
        async def ping(self) -> Any:
            return "pong"

    app = GatewayMiddleware(gateways=[Bad], outbox_max_bytes=128 * 1024, max_streams=2)
    async with run_server(app, server) as address:
        session = Session(address)
        await session.open()
        await send(session, "raises", None, 1)
        frames = await read_until_end(session, 1)
        assert frames[0]["data"] == 1 and frames[-1]["event"] == "error"
        assert frames[-1]["data"] == {"message": "Internal server error"}
        assert len(json.dumps(frames[-1])) < 4096 and "offset" in frames[-1]
        await send(session, "huge", None, 2)
        frames = await read_until_end(session, 2)
        assert frames[-1]["event"] == "error" and "larger than" in frames[-1]["data"]["message"]
        # Two streams that never yield hold the limit; a third is refused, others answer.
        await send(session, "never", None, 3)
        await send(session, "never", None, 4)
        await send(session, "never", None, 5)
        frames = await read_until_end(session, 5)
        assert frames[-1]["event"] == "error" and "2" in frames[-1]["data"]["message"]
        assert await session.request("ping", None, frame_id=6) == "pong"
        await send(session, "$cancel", None, 3)
        assert (await read_until_end(session, 3))[-1]["cancelled"] is True
        await send(session, "never", None, 7)  # a place is free again
        await send(session, "$cancel", None, 7)
        assert (await read_until_end(session, 7))[-1]["cancelled"] is True
