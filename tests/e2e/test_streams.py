"""Streams: generator handlers on real servers, read raw and with the Python client."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)
from gatewayasgi.client import CallError, GatewayClient
from tests.servers import SERVERS, TIMEOUT, connect, run_server, server_read, server_until

pytestmark = pytest.mark.anyio


class Prompt(BaseModel):
    text: str
    n: int = 3


def gateway() -> type:
    @WebSocketGateway("/ai")
    class Assistant:
        def __init__(self) -> None:
            self.closed: list[str] = []
            self.produced = 0
            self.gate = anyio.Event()

        @SubscribeMessage("prompt")
        async def prompt(self, body: Prompt = MessageBody()) -> Any:
            for i in range(body.n):
                yield {"type": "text-delta", "delta": f"{body.text}-{i}"}
            yield StreamEnd({"tokens": body.n})

        @SubscribeMessage("slow")
        async def slow(self, tag: str = MessageBody()) -> Any:
            try:
                for i in range(1000):
                    yield i
                    await anyio.sleep(0.05)
            finally:
                self.closed.append(tag)

        @SubscribeMessage("flood")
        async def flood(self, size: int = MessageBody()) -> Any:
            try:
                while True:
                    self.produced += 1
                    yield "x" * size
            finally:
                self.closed.append("flood")

        @SubscribeMessage("boom")
        async def boom(self, kind: str = MessageBody()) -> Any:
            yield 1
            if kind == "ws":
                raise WsException("no more tokens", left=0)
            raise RuntimeError("model crashed")

        @SubscribeMessage("numbers")
        def numbers(self, n: int = MessageBody()) -> Any:  # a def generator
            yield from range(n)

        @SubscribeMessage("ping")
        async def ping(self, client: Any = ConnectedSocket()) -> Any:
            return "pong"

    return Assistant


@pytest.mark.parametrize("server", SERVERS)
async def test_items_then_one_end_frame_carrying_the_stream_end_value(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    async with run_server(app, server) as address, connect(address, "/ai") as ws:
        await ws.send("prompt", {"text": "hi", "n": 3}, id=7)
        frames = [await ws.recv() for _ in range(4)]
    assert frames == [
        {"event": "prompt", "data": {"type": "text-delta", "delta": "hi-0"}, "id": 7, "seq": 1},
        {"event": "prompt", "data": {"type": "text-delta", "delta": "hi-1"}, "id": 7, "seq": 2},
        {"event": "prompt", "data": {"type": "text-delta", "delta": "hi-2"}, "id": 7, "seq": 3},
        {"event": "prompt", "data": {"tokens": 3}, "id": 7, "end": True},
    ]


@pytest.mark.parametrize("server", SERVERS)
async def test_the_connection_handles_other_frames_while_streams_run(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address, connect(address, "/ai") as ws:
        await ws.send("slow", "a", id=1)
        await ws.send("slow", "b", id=2)
        await ws.send("ping", None, id=3)
        seen: dict[Any, list[Any]] = {}
        while 3 not in seen:
            frame = await ws.recv()
            seen.setdefault(frame["id"], []).append(frame)
        # the reply came while both streams were running: neither has ended
        assert seen[3] == [{"event": "ping", "data": "pong", "id": 3}]
        assert not any(f.get("end") for f in seen.get(1, []) + seen.get(2, []))
        # $cancel ends one: its generator is closed, the other goes on
        await ws.send("$cancel", None, id=1)
        with anyio.fail_after(TIMEOUT):
            while True:
                frame = await ws.recv()
                if frame["id"] == 1 and frame.get("end"):
                    break
        assert frame == {"event": "slow", "data": None, "id": 1, "end": True, "cancelled": True}
        await server_until(address, lambda: chat.closed == ["a"])
        frame = await ws.recv()
        assert frame["id"] == 2 and "seq" in frame
        # unknown and repeated cancels are ignored: the connection goes on
        for _ in range(50):
            await ws.send("$cancel", None, id=999)
        await ws.send("$cancel", None, id=1)
        await ws.send("ping", None, id=4)
        with anyio.fail_after(TIMEOUT):
            while (frame := await ws.recv())["id"] != 4:
                assert frame["id"] == 2 and "seq" in frame, frame
        assert frame == {"event": "ping", "data": "pong", "id": 4}


@pytest.mark.parametrize("server", SERVERS)
async def test_a_disconnect_closes_its_streams(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        async with connect(address, "/ai") as ws:
            await ws.send("slow", "gone", id=1)
            assert (await ws.recv())["seq"] == 1
        await server_until(address, lambda: chat.closed == ["gone"])


@pytest.mark.parametrize("server", SERVERS)
async def test_limits_and_bad_requests_get_bounded_error_frames(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()], max_streams=2)
    async with run_server(app, server) as address, connect(address, "/ai") as ws:
        await ws.send("prompt", {"txt": "x"}, id=5)  # invalid payload: before any item
        await ws.send("prompt", {"text": "x"})  # no id
        await ws.send("slow", "1", id=1)
        await ws.send("slow", "2", id=2)
        await ws.send("slow", "3", id=3)
        await ws.send("slow", "4", id=2)  # an id that runs already
        errors = {}
        with anyio.fail_after(TIMEOUT):
            while len(errors) < 4:
                frame = await ws.recv()
                if frame["event"] == "error":
                    errors[frame.get("id")] = frame["data"]["message"]
        assert errors[3] == "Too many streams: at most 2 at once per connection"
        assert errors[2] == "A stream with this id is running already"
        assert errors[None] == "A stream request needs an id"
        assert errors[5] == "Invalid payload for WebSocket event 'prompt'"


@pytest.mark.parametrize("server", SERVERS)
async def test_a_failing_generator_ends_its_stream_with_an_error_frame_only(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    async with run_server(app, server) as address, connect(address, "/ai") as ws:
        await ws.send("boom", "ws", id=1)
        assert (await ws.recv())["seq"] == 1
        assert await ws.recv() == {
            "event": "error",
            "data": {"message": "no more tokens", "left": 0},
            "id": 1,
        }
        await ws.send("boom", "crash", id=2)
        assert (await ws.recv())["seq"] == 1
        assert await ws.recv() == {
            "event": "error",
            "data": {"message": "Internal server error"},
            "id": 2,
        }
        # the connection stays open
        assert await ws.request("ping", None, id=3) == {"event": "ping", "data": "pong", "id": 3}


@pytest.mark.parametrize("server", SERVERS)
async def test_the_python_client_reads_a_stream_and_cancels_by_leaving_the_loop(
    server: str,
) -> None:
    app = GatewayMiddleware(gateways=[gateway()])
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        async with GatewayClient(f"ws://{address}/ai") as client:
            stream = client.stream("prompt", {"text": "t", "n": 4}, timeout=TIMEOUT)
            items = [item["delta"] async for item in stream]
            assert items == ["t-0", "t-1", "t-2", "t-3"]
            assert stream.result == {"tokens": 4}
            assert [n async for n in client.stream("numbers", 5)] == [0, 1, 2, 3, 4]
            async for n in client.stream("slow", "left", timeout=TIMEOUT):
                if n == 2:
                    break
            await server_until(address, lambda: chat.closed == ["left"])
            with pytest.raises(CallError, match="Internal server error"):
                async for _ in client.stream("boom", "crash", timeout=TIMEOUT):
                    pass
            assert await client.call("ping") == "pong"


def _stalled_reader(address: str, path: str, frame: bytes) -> socket.socket:
    """A raw WebSocket client with a small receive buffer that never reads after the
    handshake: the server's writes back up (loopback would otherwise buffer MiBs)."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0], response
    mask = b"\x00\x00\x00\x00"
    header = (
        bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(frame))
        if len(frame) > 125
        else bytes([0x81, 0x80 | len(frame)])
    )
    sock.sendall(header + mask + frame)
    return sock


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_stream_never_outruns_a_stalled_reader(server: str) -> None:
    """A reader that stops: the generator waits (it is not closed 1013 and what it made
    stays bounded) until the stream timeout closes it."""
    app = GatewayMiddleware(gateways=[gateway()], stream_timeout=2.0)
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        request = json.dumps({"event": "flood", "data": 10_000, "id": 1}).encode()
        sock = await asyncio.to_thread(_stalled_reader, address, "/ai", request)
        try:
            await anyio.sleep(1.0)
            produced = await server_read(address, lambda: chat.produced)
            # ~1 MiB of outbox, half of it before the generator waits, plus what the
            # socket buffers took: far fewer than an unbounded producer's ~100,000+.
            assert 0 < produced < 2_000, produced
            await server_until(address, lambda: chat.closed == ["flood"], timeout=TIMEOUT)
            assert await server_read(address, lambda: chat.produced) < 2_000
        finally:
            sock.close()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_an_item_larger_than_the_outbox_ends_its_stream(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway()], outbox_max_bytes=64 * 1024)
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address, connect(address, "/ai") as ws:
        await ws.send("flood", 100_000, id=1)
        frame = await ws.recv()
        assert frame == {
            "event": "error",
            "data": {"message": "Stream item larger than the connection's outbox allows"},
            "id": 1,
        }
        await server_until(address, lambda: chat.closed == ["flood"])
        assert await ws.request("ping", None, id=2) == {"event": "ping", "data": "pong", "id": 2}
