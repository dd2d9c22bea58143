"""A history split into partitions (``Recovery(partitions=4)``), across two worker
processes on one real redis-server.

``tests.apps.recovery_app``'s ``/parts`` gateway: a member on worker A (through a proxy
that cuts its connection) is in three rooms that live in three partitions; a sender on
worker B emits, round after round, a frame to each room alone, one to all three rooms
at once, one to everyone and one to the member alone. The member is cut mid-burst and
resumes on B: every frame once, each room's (and the member's own) in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from gatewayasgi import Recovery
from gatewayasgi.client import GatewayClient
from gatewayasgi.emitter import RedisEmitter
from gatewayasgi.stores._redis_partitions import partition_of_name
from tests.apps.recovery_app import PARTITIONS
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.test_e2e_redis import Workers, _workers
from tests.recovery.wire import Session

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.apps.recovery_app:app"
PATH = "/parts"
TIMEOUT = 20.0


def rooms_in_partitions(*partitions: int) -> list[str]:
    """A room name in each of ``partitions`` (none in the shared partition 0)."""
    found: dict[int, str] = {}
    for n in range(1000):
        name = f"room-{n}"
        part = partition_of_name(name, PARTITIONS)
        if part in partitions and part not in found:
            found[part] = name
    return [found[part] for part in partitions]


ROOMS = rooms_in_partitions(1, 2, 3)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    yield from _workers(tmp_path, persistent=True, path=PATH)


async def _open(session: Session, resume: bool = False) -> dict[str, Any]:
    with anyio.fail_after(TIMEOUT):
        return await session.open(resume=resume)


def _check(received: list[dict[str, Any]], rounds: int) -> None:
    """Every frame of ``rounds`` rounds once; each target's in order."""
    by_target: dict[str, list[int]] = {}
    for item in received:
        by_target.setdefault(item["to"], []).append(item["n"])
    assert sorted(by_target) == sorted([*ROOMS, "rooms", "all", "me"])
    for target, numbers in by_target.items():
        assert numbers == list(range(rounds)), target


async def test_a_member_of_rooms_in_three_partitions_resumes_on_another_worker(
    workers: Workers,
) -> None:
    rounds = 150
    a, b = Workers.address(workers.a), Workers.address(workers.b)
    proxy = CutProxy(a)
    async with proxy.running():
        member, sender = Session(proxy.address, PATH), Session(b, PATH)
        await _open(sender)
        # Frames from before the member's session began: never replayed to it (the
        # session's start is a position in every partition, past 64 bits).
        await sender.request("mixed", {"rooms": ROOMS, "count": 2})
        first = await _open(member)
        for room in ROOMS:
            await member.request("join", room)
        # Frames to a room the member is not in yet, alone and with one of its rooms'
        # neighbours: never replayed to it, though its resume starts before them.
        await sender.request("mixed", {"rooms": ["late"], "count": 2})
        assert await member.request("join", "late", 2) == {"joined": "late", "node": "A"}
        assert sorted((await member.request("node", None, 3))["rooms"]) == sorted([*ROOMS, "late"])
        # Both workers deliver every partition: a live round trip first.
        await sender.request("say", {"room": ROOMS[0], "n": "hello"})
        while (await member.recv())["event"] != "said":
            pass
        await sender.ws.send(
            json.dumps(
                {
                    "event": "mixed",
                    "data": {"rooms": ROOMS, "count": rounds, "client": first["id"]},
                    "id": 9,
                }
            )
        )
        received: list[dict[str, Any]] = []
        while len(received) < 40:
            frame = await member.recv()
            if frame["event"] == "mixed":
                received.append(frame["data"])
        proxy.target = b
        assert proxy.cut() == 1
        assert await sender.reply(9) == "done"
        # The position names the partitions the member got frames from.
        assert {key for key in member.positions} <= {"0", "1", "2", "3"}
        assert "~" in member.offset
        resumed = await _open(member, resume=True)
        assert resumed["recovered"] is True, resumed
        assert resumed["id"] == first["id"]
        per_round = len(ROOMS) + 3
        with anyio.fail_after(TIMEOUT):
            while len(received) < rounds * per_round:
                frame = await member.recv()
                if frame["event"] == "mixed":
                    received.append(frame["data"])
        _check(received, rounds)
        assert await member.request("node", None, 7) == {
            "node": "B",
            "id": first["id"],
            "rooms": sorted([*ROOMS, "late"]),
        }
        with anyio.move_on_after(0.3):
            extra = await member.recv()
            pytest.fail(f"a frame arrived twice, or from before the join: {extra}")

    # The history is four streams, each holding its share.
    client = redis.Redis.from_url(workers.redis.url)
    try:
        lengths = [client.xlen(f"gatewayasgi:history:{PATH}#{part}") for part in range(4)]
    finally:
        client.close()
    assert all(length > 0 for length in lengths), lengths
    # Partition 0 holds the frames to all rooms at once and to everyone (and the member's
    # own, if its id falls there); each room's partition its own frames.
    assert lengths[0] >= 2 * rounds


async def test_the_python_client_keeps_a_position_per_partition(workers: Workers) -> None:
    rounds = 60
    a, b = Workers.address(workers.a), Workers.address(workers.b)
    proxy = CutProxy(a)
    async with proxy.running():
        client = GatewayClient(f"ws://{proxy.address}{PATH}", recover=True, reconnect_delay=0.05)
        async with client:
            for room in ROOMS:
                await client.call("join", room, timeout=TIMEOUT)
            sender = Session(b, PATH)
            await _open(sender)
            proxy.target = b
            assert proxy.cut() == 1
            assert (
                await sender.request(
                    "mixed", {"rooms": ROOMS, "count": rounds, "client": client.id}
                )
                == "done"
            )
            with anyio.fail_after(TIMEOUT):
                received = [(await client.receive()).data for _ in range(rounds * (len(ROOMS) + 3))]
                await client.wait_connected()
            assert client.recovered is True, client.session
            _check(received, rounds)
            with anyio.move_on_after(0.3):
                extra = await client.receive()
                pytest.fail(f"a frame arrived twice: {extra}")


async def test_a_forged_position_is_refused(workers: Workers) -> None:
    member = Session(Workers.address(workers.a), PATH)
    session = await _open(member)
    assert all("~" in item for item in session["offset"].split("_"))
    for forged in ("9~1-0", "0~1-0_0~1-0", "1-0", "0~99999999999999-0"):
        member.cut()
        member.offset = forged
        resumed = await _open(member, resume=True)
        assert resumed["recovered"] is False
        assert resumed["reason"] == "invalid", (forged, resumed)
        # A refused resume starts a new session: take it as the next one to forge on.


async def test_a_reply_waits_for_what_its_handler_emitted_to_every_partition(
    workers: Workers,
) -> None:
    """``talk`` emits to the requester's room and to the requester (two partitions), then
    replies: the reply comes after every frame, though each partition has its own reader."""
    session = Session(Workers.address(workers.a), PATH)
    first = await _open(session)
    own = partition_of_name(first["id"], PARTITIONS)
    room = next(room for room in ROOMS if partition_of_name(room, PARTITIONS) != own)
    await session.request("join", room)
    for call in range(10):
        before = await session.talk(room, 3, 100 + call)
        # Each partition's frames in order; all of them before the reply.
        assert [n for event, n in before if event == "said"] == [0, 1, 2], call
        assert [n for event, n in before if event == "aside"] == [0, 1, 2], call


async def test_an_emitter_with_the_same_partitions_feeds_them(workers: Workers) -> None:
    proxy = CutProxy(Workers.address(workers.a))
    async with proxy.running():
        member = Session(proxy.address, PATH)
        first = await _open(member)
        for room in ROOMS:
            await member.request("join", room)
        recovery = Recovery(window=60, partitions=PARTITIONS)
        async with RedisEmitter(workers.redis.url, PATH, recovery=recovery) as emitter:
            await emitter.to(ROOMS[0]).emit("said", "kept")
            assert (await member.recv())["data"] == "kept"
            assert member.positions.keys() == {
                "0",
                str(partition_of_name(first["id"], PARTITIONS)),
                "1",
            }
            proxy.cut()
            for n in range(50):
                for room in ROOMS:
                    await emitter.to(room).emit("said", [room, n])
                await emitter.emit("said", ["all", n])
        resumed = await _open(member, resume=True)
        assert resumed["recovered"] is True and resumed["id"] == first["id"]
        got: dict[str, list[int]] = {}
        with anyio.fail_after(TIMEOUT):
            for _ in range(50 * (len(ROOMS) + 1)):
                target, n = (await member.recv())["data"]
                got.setdefault(target, []).append(n)
        assert got == {target: list(range(50)) for target in [*ROOMS, "all"]}
