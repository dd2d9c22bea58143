"""A client that stops reading never delays the others (issue 3), on real servers.

Backpressure only builds on a real socket: the in-process test client's streams are
unbounded, so every test here runs hypercorn or uvicorn and a ``websockets`` client
that is never read (tiny receive buffer, ``max_queue=1``).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import orjson
import pytest
import websockets
import websockets.exceptions

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from tests.reliability import eventually, gateway_errors, open_members, stalled_client
from tests.servers import run_server, server_read

pytestmark = pytest.mark.anyio

ROOM = "ticker"
PAD = "x" * 4096  # each published frame is a little over 4 KiB
WINDOW = 64  # frames the publisher may run ahead of the slowest healthy member
OUTBOX = 256  # outbox_max_messages: well above WINDOW, far below the frames published


@WebSocketGateway("/fanout")
class FanoutGateway:
    @SubscribeMessage("join")
    async def join(self, client=ConnectedSocket()):
        await self.server.join(client, ROOM)
        return client.id

    @SubscribeMessage("publish")
    async def publish(self, data=MessageBody()):
        await self.server.to(ROOM).emit("tick", data)

    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return data


def fanout_app(**settings: Any) -> GatewayMiddleware:
    # The byte cap is raised so that the message cap (OUTBOX frames of 4 KiB) binds first.
    return GatewayMiddleware(
        None,
        gateways=[FanoutGateway],
        outbox_max_messages=OUTBOX,
        outbox_max_bytes=16 * 1024 * 1024,
        **settings,
    )


CLIENT = {"compression": None, "max_size": None, "open_timeout": 10}  # websockets.connect


async def open_client(address: str) -> Any:
    return await websockets.connect(f"ws://{address}/fanout", **CLIENT)


async def request(ws: Any, event: str, data: Any = None) -> Any:
    await ws.send(orjson.dumps({"event": event, "data": data}))
    with anyio.fail_after(10):
        return orjson.loads(await ws.recv())["data"]


async def join(ws: Any) -> tuple[Any, str]:
    """Join ``ROOM``; the client and the id the gateway gave it."""
    return ws, await request(ws, "join")


async def open_room(address: str, count: int) -> tuple[list[Any], list[str]]:
    """``count`` clients that joined ``ROOM``; the clients and their ids."""
    joined = await open_members(address, "/fanout", count, join, timeout=30, **CLIENT)
    return [ws for ws, _ in joined], [client_id for _, client_id in joined]


async def close_all(clients: list[Any]) -> None:
    with anyio.move_on_after(10):
        async with anyio.create_task_group() as tasks:
            for ws in clients:
                tasks.start_soon(ws.close)


async def publish_paced(publisher: Any, frames: int, members: list[Any], timeout: float) -> None:
    """Publish ``frames`` ticks through the gateway while every healthy member reads them.

    The publisher stays at most ``WINDOW`` frames ahead of the slowest healthy member,
    so only a member that stopped reading can ever fill its outbox.
    """
    received = [0] * len(members)

    async def consume(index: int, ws: Any) -> None:
        for seq in range(frames):
            frame = orjson.loads(await ws.recv())
            assert frame["event"] == "tick"
            assert frame["data"]["seq"] == seq, f"member {index} got frames out of order"
            received[index] = seq + 1

    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tasks:
            for index, ws in enumerate(members):
                tasks.start_soon(consume, index, ws)
            for seq in range(frames):
                while seq - min(received) >= WINDOW:
                    await anyio.sleep(0.001)
                await publisher.send(
                    orjson.dumps({"event": "publish", "data": {"seq": seq, "pad": PAD}})
                )
    assert received == [frames] * len(members)


async def read_until_closed(ws: Any, timeout: float = 15) -> tuple[list[int], int | None]:
    """Every tick seq a client still gets, then the close code the server sent."""
    seqs: list[int] = []
    with anyio.fail_after(timeout):
        try:
            while True:
                seqs.append(orjson.loads(await ws.recv())["data"]["seq"])
        except websockets.exceptions.ConnectionClosed as exc:
            return seqs, exc.rcvd.code if exc.rcvd is not None else None


@pytest.mark.parametrize(
    ("server", "members", "frames"),
    [
        ("hypercorn", 200, 3000),
        ("uvicorn", 200, 3000),
        # Under the trio worker the stalled member's blocked send cannot be cancelled
        # (hypercorn shields it); it must be released from its rooms all the same.
        ("hypercorn-trio", 50, 1000),
    ],
)
async def test_stalled_member_is_closed_with_1013_and_the_room_gets_everything(
    server: str, members: int, frames: int, caplog: pytest.LogCaptureFixture
) -> None:
    """One of ``members`` stops reading; the rest get all ``frames`` 4 KiB ticks in order."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    # A long close_timeout lets the 1013 close frame wait until the stalled reader reads.
    app = fanout_app(close_timeout=30)
    gateway = app.server_for(FanoutGateway)
    async with run_server(app, server) as address:
        healthy, healthy_ids = await open_room(address, members - 1)
        slow = await stalled_client(address, "/fanout")
        try:
            slow_id = await request(slow, "join")
            publisher = await open_client(address)
            # App state is read where the app runs (another thread under hypercorn-trio).
            assert await server_read(address, lambda: len(gateway.rooms.members(ROOM))) == members

            await publish_paced(publisher, frames, healthy, timeout=60)

            # Released from the room and the registry within seconds, while still not reading.
            await eventually(lambda: slow_id not in gateway.clients, timeout=5, address=address)
            room = await server_read(address, lambda: set(gateway.rooms.members(ROOM)))
            assert room == set(healthy_ids)

            seqs, code = await read_until_closed(slow)
            assert code == 1013
            assert seqs == list(range(len(seqs))), "the stalled member's frames were reordered"
            assert len(seqs) < frames

            # The gateway still serves the others normally.
            assert await request(healthy[0], "echo", {"after": True}) == {"after": True}
            await close_all([*healthy, publisher])
            await eventually(lambda: not gateway.clients, timeout=10, address=address)
            assert await server_read(address, gateway.rooms.room_count) == 0
        finally:
            # A server whose send cannot be cancelled (hypercorn-trio) stops only once
            # the stalled peer is gone; without this a failure here hangs its shutdown.
            slow.transport.abort()
    slow_logs = [r for r in caplog.records if "too slow" in r.getMessage()]
    assert len(slow_logs) == 1, "a slow-client close is logged once per connection"
    assert gateway_errors(caplog) == []


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn", "hypercorn-trio"])
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_new"])
async def test_drop_policies_bound_the_stalled_client_and_keep_it_open(
    server: str, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With a drop policy the stalled client loses frames, stays open, blocks nobody."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    frames = 3000
    app = fanout_app(overflow=policy)
    gateway = app.server_for(FanoutGateway)
    async with run_server(app, server) as address:
        healthy, _ = await open_room(address, 2)
        slow = await stalled_client(address, "/fanout")
        slow_id = await request(slow, "join")
        publisher = await open_client(address)

        await publish_paced(publisher, frames, healthy, timeout=30)

        def stalled_state() -> tuple[bool, int]:
            """Whether the stalled client is still a room member; frames its outbox dropped."""
            member = slow_id in gateway.clients and slow_id in gateway.rooms.members(ROOM)
            return member, gateway.clients[slow_id].outbox.dropped if member else 0

        member, dropped = await server_read(address, stalled_state)
        assert member
        assert dropped > 0

        # Read again: what is left arrives in order, bounded; the socket still works.
        seqs = await read_until_quiet(slow)
        assert seqs == sorted(set(seqs)), "frames were duplicated or reordered"
        assert len(seqs) + dropped == frames
        if policy == "drop_new":
            # The newest frames were refused: the oldest run arrived unbroken. (Later
            # frames may follow after a gap where the kernel took a little more.)
            assert seqs[:OUTBOX] == list(range(OUTBOX))
            assert OUTBOX <= len(seqs) < frames
        else:
            # The oldest queued frames were discarded: the newest OUTBOX all arrived.
            assert seqs[-OUTBOX:] == list(range(frames - OUTBOX, frames))
            assert len(seqs) < frames
        assert await request(slow, "echo", "still open") == "still open"
        warnings = [r for r in caplog.records if "dropping frames" in r.getMessage()]
        assert len(warnings) == 1, "drops are logged once per connection, not per frame"
        await close_all([*healthy, slow, publisher])
        await eventually(lambda: not gateway.clients, timeout=10, address=address)
    assert gateway_errors(caplog) == []


async def read_until_quiet(ws: Any, quiet: float = 0.5, timeout: float = 20) -> list[int]:
    """Every tick seq that arrives until none has come for ``quiet`` seconds."""
    seqs: list[int] = []
    with anyio.fail_after(timeout):
        while True:
            with anyio.move_on_after(quiet):
                seqs.append(orjson.loads(await ws.recv())["data"]["seq"])
                continue
            return seqs
