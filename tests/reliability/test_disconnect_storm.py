"""Disconnect storm: broadcasts to a 1,000-member room while half leave and others join.

Real server, real sockets. Frames carry a sequence number so each member's stream
can be checked: members that stay get every frame exactly once, in order; members
that leave get an unbroken prefix; members that join get an unbroken suffix.
Afterwards clients, rooms and tasks are back to their baseline.
"""

from __future__ import annotations

import asyncio
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
    OnGatewayConnection,
    OnGatewayDisconnect,
    SubscribeMessage,
    WebSocketGateway,
)
from tests.reliability import eventually, gateway_errors, open_members
from tests.servers import run_server

pytestmark = pytest.mark.anyio

ROOM = "storm"
BATCH = 100  # connections opened at once


@WebSocketGateway("/storm")
class StormGateway(OnGatewayConnection, OnGatewayDisconnect):
    def __init__(self) -> None:
        self.connected = 0
        self.disconnected = 0

    def on_connection(self, client: Any) -> None:
        self.connected += 1

    async def on_disconnect(self, client: Any) -> None:
        await anyio.sleep(0.001)  # a hook that awaits, racing the broadcasts
        self.disconnected += 1

    @SubscribeMessage("join")
    async def join(self, client=ConnectedSocket()):
        await self.server.join(client, ROOM)
        return client.id


class Member:
    """One client and every tick seq it saw, read by its own task until the end."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.joined = anyio.Event()
        self.seqs: list[int] = []
        self.ended = False

    async def run(self) -> None:
        try:
            await self.ws.send(orjson.dumps({"event": "join"}))
            while True:
                frame = orjson.loads(await self.ws.recv())
                if frame["event"] == "join":
                    self.joined.set()
                elif frame["event"] == "tick":
                    self.seqs.append(frame["data"]["seq"])
                elif frame["event"] == "end":
                    self.ended = True
                    return
        except websockets.exceptions.ConnectionClosed:
            return


async def open_storm(address: str, count: int, tasks: Any) -> list[Member]:
    """Open ``count`` members in batches, each read by its own task in ``tasks``."""

    async def join(ws: Any) -> Member:
        member = Member(ws)
        tasks.start_soon(member.run)
        await member.joined.wait()
        return member

    return await open_members(
        address, "/storm", count, join, batch=BATCH, compression=None, open_timeout=20
    )


async def leave(member: Member, index: int) -> None:
    """Half of the leavers close cleanly, the other half vanish without a close frame."""
    if index % 2:
        await member.ws.close()
    else:
        member.ws.transport.abort()


@pytest.mark.parametrize(("server", "size"), [("uvicorn", 1000), ("hypercorn", 1000)])
async def test_broadcast_during_a_disconnect_storm_delivers_exactly_once(
    server: str, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    """``size`` members; ``size // 2`` leave and ``size // 2`` join while ticks go out."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    app = GatewayMiddleware(None, gateways=[StormGateway])
    gateway = app.server_for(StormGateway)
    hooks: StormGateway = app.get(StormGateway)
    churn = size // 2
    async with run_server(app, server) as address:
        await anyio.sleep(0.1)
        baseline_tasks = len(asyncio.all_tasks())
        with anyio.fail_after(60):
            async with anyio.create_task_group() as readers:
                original = await open_storm(address, size, readers)
                assert len(gateway.rooms.members(ROOM)) == size
                leavers, stayers = original[:churn], original[churn:]
                joiners: list[Member] = []
                storm_over = anyio.Event()

                async def storm() -> None:
                    step = BATCH // 2
                    for start in range(0, churn, step):
                        async with anyio.create_task_group() as wave:
                            for index in range(start, min(start + step, churn)):
                                wave.start_soon(leave, leavers[index], index)
                        joiners.extend(await open_storm(address, min(step, churn - start), readers))
                    storm_over.set()

                async def broadcast() -> int:
                    seq = 0
                    while not storm_over.is_set() or seq < 10:
                        await gateway.to(ROOM).emit("tick", {"seq": seq})
                        seq += 1
                        await anyio.sleep(0.005)
                    return seq

                async with anyio.create_task_group() as churning:
                    churning.start_soon(storm)
                    sent = await broadcast()
                await gateway.to(ROOM).emit("end")

        # Every member that stayed got every tick exactly once, in order.
        for member in stayers:
            assert member.ended
            assert member.seqs == list(range(sent))
        # Leavers got an unbroken prefix; joiners an unbroken run up to the last tick.
        for member in leavers:
            assert member.seqs == list(range(len(member.seqs)))
            assert not member.ended
        for member in joiners:
            assert member.ended
            first = member.seqs[0] if member.seqs else sent
            assert member.seqs == list(range(first, sent))
        assert len(joiners) == churn
        # The storm really overlapped the broadcasts.
        assert any(0 < len(member.seqs) < sent - 10 for member in leavers)
        assert any(member.seqs and member.seqs[0] > 10 for member in joiners)
        assert len(gateway.clients) == size
        assert set(gateway.rooms.members(ROOM)) == set(gateway.clients)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as closing:
                for member in stayers + joiners:
                    closing.start_soon(member.ws.close)
        await eventually(lambda: not gateway.clients, timeout=10)
        assert gateway.rooms.room_count() == 0
        assert hooks.connected == hooks.disconnected == size + churn
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline_tasks, timeout=10)
    assert gateway_errors(caplog) == []
