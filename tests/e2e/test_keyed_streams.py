"""Keyed streams: they outlive the connection that started them, and a client re-attaches
by key (a page reload) to the kept items, the live ones and the end."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.client import GatewayClient
from tests.servers import SERVERS, TIMEOUT, connect, run_server, server_read, server_until

pytestmark = pytest.mark.anyio


def gateway(allow: bool = True) -> type:
    @WebSocketGateway("/agent")
    class Agent:
        def __init__(self) -> None:
            self.closed: list[str] = []
            self.release = anyio.Event()
            self.asked: list[str] = []

        def can_attach(self, client: Any, key: str) -> bool:
            self.asked.append(key)
            return allow and key.startswith("chat-")

        @SubscribeMessage("run")
        async def run(self, n: int = MessageBody("n"), tag: str = MessageBody("tag")) -> Any:
            try:
                for i in range(n):
                    yield f"{tag}-{i}"
                    await anyio.sleep(0.02)
                yield StreamEnd({"done": tag})
            finally:
                self.closed.append(tag)

        @SubscribeMessage("unruly")
        async def unruly(self, n: int = MessageBody("n")) -> Any:
            try:
                for i in range(n):
                    yield i
                yield StreamEnd(object())  # no wire form
            finally:
                raise RuntimeError("a finally that raises")

        @SubscribeMessage("ping")
        async def ping(self, client: Any = ConnectedSocket()) -> Any:
            return "pong"

    return Agent


async def _collect(ws: Any, frame_id: int) -> tuple[list[Any], dict[str, Any]]:
    """The items of the stream answering ``frame_id`` (with their seq), and its end."""
    items: list[Any] = []
    with anyio.fail_after(TIMEOUT):
        while True:
            frame = await ws.recv()
            if frame.get("id") != frame_id:
                continue
            if "seq" in frame:
                items.append((frame["seq"], frame["data"]))
            else:
                return items, frame


@pytest.mark.parametrize("server", SERVERS)
async def test_a_keyed_stream_outlives_its_connection_and_a_reload_gets_all_of_it(
    server: str,
) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    agent = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        async with connect(address, "/agent") as first:
            await first.send("run", {"n": 30, "tag": "a"}, id=1, key="chat-1")
            frame = await first.recv()
            assert frame == {"event": "run", "data": "a-0", "id": 1, "seq": 1}
        # the connection is gone; the stream runs on: nothing closed it
        await anyio.sleep(0.1)
        assert await server_read(address, lambda: list(agent.closed)) == []
        async with connect(address, "/agent") as reload:
            await reload.send("$attach", None, id=9, key="chat-1")
            items, end = await _collect(reload, 9)
        assert items == [(i + 1, f"a-{i}") for i in range(30)]  # once each, in order
        assert end == {"event": "run", "data": {"done": "a"}, "id": 9, "end": True}
        assert "chat-1" in await server_read(address, lambda: list(agent.asked))
        # within the grace period, a finished stream is still replayed whole; from a
        # position, only what comes after it
        async with connect(address, "/agent") as late:
            await late.send("$attach", None, id=3, key="chat-1", after=27)
            items, end = await _collect(late, 3)
        assert items == [(28, "a-27"), (29, "a-28"), (30, "a-29")]
        assert end["end"] is True


@pytest.mark.parametrize("server", SERVERS)
async def test_attaching_is_the_gateways_decision_and_unknown_keys_are_missing(
    server: str,
) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    async with run_server(app, server) as address, connect(address, "/agent") as ws:
        await ws.send("$attach", None, id=1, key="chat-none")
        assert await ws.recv() == {
            "event": "$attach",
            "data": None,
            "id": 1,
            "end": True,
            "missing": True,
        }
        await ws.send("$attach", None, id=2, key="secret-1")  # can_attach says no
        assert await ws.recv() == {
            "event": "error",
            "data": {"message": "Attaching to this stream is not allowed"},
            "id": 2,
        }
        await ws.send("$attach", None, id=3, key="x" * 257)
        assert (await ws.recv())["data"]["message"].startswith("Stream key must be")
        assert await ws.request("ping", None, id=4) == {"event": "ping", "data": "pong", "id": 4}


@pytest.mark.parametrize("server", SERVERS)
async def test_without_can_attach_nobody_attaches_or_supersedes(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway(allow=False)])
    async with run_server(app, server) as address, connect(address, "/agent") as ws:
        await ws.send("run", {"n": 50, "tag": "mine"}, id=1, key="chat-9")
        await ws.send("$attach", None, id=2, key="chat-9")
        await ws.send("run", {"n": 5, "tag": "theirs"}, id=3, key="chat-9")
        errors = {}
        with anyio.fail_after(TIMEOUT):
            while len(errors) < 2:
                frame = await ws.recv()
                if frame["event"] == "error":
                    errors[frame["id"]] = frame["data"]["message"]
        assert errors == {
            2: "Attaching to this stream is not allowed",
            3: "A stream with this key is running already",
        }


@pytest.mark.parametrize("server", SERVERS)
async def test_a_cancel_or_a_superseding_request_closes_a_keyed_stream(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    agent = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        async with connect(address, "/agent") as ws:
            await ws.send("run", {"n": 500, "tag": "old"}, id=1, key="chat-2")
            assert (await ws.recv())["seq"] == 1
            await ws.send("run", {"n": 2, "tag": "new"}, id=2, key="chat-2")
            await server_until(address, lambda: agent.closed == ["old"])
            await ws.send("$attach", None, id=4, key="chat-2")
            items, end = await _collect(ws, 4)
            assert [data for _, data in items] == ["new-0", "new-1"]
            assert end == {"event": "run", "data": {"done": "new"}, "id": 4, "end": True}
            # an attached client cancels it by its own request's id
            await ws.send("run", {"n": 500, "tag": "third"}, id=5, key="chat-3")
            async with connect(address, "/agent") as other:
                await other.send("$attach", None, id=7, key="chat-3")
                assert (await other.recv())["id"] == 7
                await other.send("$cancel", None, id=7)
                await server_until(address, lambda: "third" in agent.closed)
                with anyio.fail_after(TIMEOUT):
                    while not (frame := await other.recv()).get("end"):
                        pass
                assert frame["cancelled"] is True


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_the_python_client_starts_a_keyed_stream_and_reattaches(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    async with run_server(app, server) as address:
        url = f"ws://{address}/agent"
        async with GatewayClient(url) as first:
            reading = first.stream("run", {"n": 20, "tag": "p"}, key="chat-p").__aiter__()
            assert [await reading.__anext__() for _ in range(3)] == ["p-0", "p-1", "p-2"]
        # the client closed (a reload): the keyed stream ran on
        async with GatewayClient(url) as second:
            attached = second.attach_stream("chat-p", timeout=TIMEOUT)
            items = [item async for item in attached]
            assert items == [f"p-{i}" for i in range(20)]
            assert attached.result == {"done": "p"}
            missing = second.attach_stream("chat-nothing", timeout=TIMEOUT)
            assert [item async for item in missing] == []
            assert missing.missing
        await reading.aclose()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_keyed_stream_that_fails_to_end_harms_nothing_shared(server: str) -> None:
    """Its generator raises when closed and its end cannot be encoded: the keyed streams'
    task group (the lifespan's) goes on, and so do the next keyed stream and the client."""
    app = GatewayMiddleware(gateways=[gateway()])
    async with run_server(app, server) as address, connect(address, "/agent") as ws:
        for round_ in range(2):
            await ws.send("unruly", {"n": 2}, id=10 + round_, key=f"chat-u{round_}")
            items, end = await _collect(ws, 10 + round_)
            assert [data for _, data in items] == [0, 1]
            assert end["data"] == {"message": "Internal server error"}  # a bounded error
        await ws.send("run", {"n": 2, "tag": "after"}, id=20, key="chat-after")
        items, end = await _collect(ws, 20)
        assert [data for _, data in items] == ["after-0", "after-1"]
        assert end["end"] is True
