"""A history split into partitions (``Recovery(partitions=4)``) on a real Redis Cluster,
two hypercorn workers (``tests.cluster_redis.app``'s ``/parts``).

Each partition is a stream of its own hash tag (``gatewayasgi:{history:/parts#<p>}``), so
the cluster spreads the four over its masters. A member on worker A is in three rooms
of three partitions; a sender on worker B emits ``mixed`` rounds (a frame to each room
alone, one to the three rooms at once, one to everyone, one to the member alone):

* the member is cut mid-burst and resumes on B: every frame once, each target's in order;
* the streams live on more than one master, each holding its share (the commands each
  master ran for a burst are printed);
* the master of a room's partition is SIGKILLed mid-burst (its replica takes over):
  every frame once and in order, or ``$session`` with ``recovered: false`` and a reason;
  never a silent loss or a second copy. (Until the promotion the other masters answer
  ``CLUSTERDOWN`` too, with Redis's default ``cluster-require-full-coverage yes``: every
  partition waits and every reader reconnects, not only the dead master's.)

The cluster is the session's (``tests.redis_cluster``; made three masters with slots
again first, if a reshard before left two), the workers the module's. Every wait has a
timeout.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from gatewayasgi.stores._redis_partitions import partition_of_name
from tests.apps.recovery_app import PARTITIONS
from tests.cluster.nodes import eventually
from tests.cluster_redis.test_cluster_redis import QUIET, WAIT, Workers, two_workers
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.test_partitions_redis import rooms_in_partitions
from tests.recovery.wire import Session
from tests.redis_cluster import ClusterServer, RedisCluster

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PATH = "/parts"
ROOMS = rooms_in_partitions(1, 2, 3)
FENCE_ROOM = rooms_in_partitions(0)[0]
"""A room of the shared partition: with ``ROOMS``, one room in each partition."""
TARGETS = sorted([*ROOMS, "rooms", "all", "me"])
"""The ``to`` of a ``mixed`` round's frames the member gets."""
Frame = dict[str, Any]


def stream_key(part: int) -> str:
    return f"gatewayasgi:{{history:{PATH}#{part}}}"


def partition_of(room: str) -> int:
    return partition_of_name(room, PARTITIONS)


@pytest.fixture(scope="module")
def workers(
    redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    redis_cluster.three_masters()
    with two_workers(redis_cluster, tmp_path_factory.mktemp("partition-workers")) as both:
        yield both


async def _open(session: Session, resume: bool = False) -> Frame:
    with anyio.fail_after(WAIT):
        return await session.open(resume=resume)


async def _mixed_frame(member: Session) -> Frame:
    """The next ``mixed`` frame's data (offsets kept, other frames skipped)."""
    while True:
        frame = await member.recv()
        if frame["event"] == "mixed":
            return frame["data"]  # type: ignore[no-any-return]


async def _next(session: Session) -> Frame:
    """The next frame (offsets kept), with no timeout of its own: while a replica takes
    over, nothing may come for a while on a busy machine; the caller's timeout applies."""
    frame: Frame = json.loads(await session.ws.recv())
    if "offset" in frame:
        session.keep(frame["offset"])
    return frame


async def _quiet(session: Session) -> None:
    """Read (keeping offsets) until nothing came for ``QUIET`` seconds."""
    while True:
        with anyio.move_on_after(QUIET):
            await session.recv()
            continue
        return


async def _pair(workers: Workers, member_address: str) -> tuple[Session, Session, Frame]:
    """A member (through ``member_address``) in ``ROOMS`` and a sender on worker B, once a
    round of every kind reached the member (both workers read every partition); then
    quiet. Returns them and the member's first ``$session``."""
    member, sender = Session(member_address, PATH), Session(workers.b.address, PATH)
    first = await _open(member)
    for room in ROOMS:
        assert (await member.request("join", room))["joined"] == room
    await _open(sender)

    async def every_kind() -> bool:
        data = {"rooms": ROOMS, "count": 1, "client": first["id"]}
        assert await sender.request("mixed", data, 50) == "done"
        seen: set[str] = set()
        with anyio.move_on_after(2.0):
            while len(seen) < len(TARGETS):
                seen.add((await _mixed_frame(member))["to"])
        return len(seen) == len(TARGETS)

    await eventually(every_kind, WAIT)
    await _quiet(member)
    return member, sender, first


async def _send_mixed(sender: Session, rounds: int, client: str, frame_id: int) -> None:
    data = {"rooms": ROOMS, "count": rounds, "client": client}
    await sender.ws.send(json.dumps({"event": "mixed", "data": data, "id": frame_id}))


async def _close(*sessions: Session) -> None:
    """Close cleanly (the sessions end: nothing waits for them). What is still unread is
    read first: a client that stopped reading (a sender's copies of the broadcasts) would
    hold the server's close frame behind them until the close timeout."""
    with anyio.move_on_after(WAIT):
        for session in sessions:
            await _quiet(session)
            await session.ws.close()


def _by_target(received: list[Frame]) -> dict[str, list[int]]:
    by_target: dict[str, list[int]] = {target: [] for target in TARGETS}
    for item in received:
        by_target[item["to"]].append(item["n"])
    return by_target


def _ranges(keys: list[tuple[str, int]]) -> dict[str, str]:
    """``(target, n)`` pairs as ``{target: "first..last (count)"}``."""
    found: dict[str, list[int]] = {}
    for target, n in keys:
        found.setdefault(target, []).append(n)
    return {t: f"{min(ns)}..{max(ns)} ({len(ns)})" for t, ns in found.items()}


def _check(received: list[Frame], rounds: int) -> None:
    """Every frame of ``rounds`` rounds once; each target's in order."""
    for target, numbers in _by_target(received).items():
        assert numbers == list(range(rounds)), target


# -- a client cut from worker A resumes on worker B ---------------------------------------


async def test_a_member_of_rooms_in_three_partitions_resumes_on_the_other_worker(
    workers: Workers,
) -> None:
    assert sorted({partition_of(room) for room in ROOMS}) == [1, 2, 3]
    rounds = 150
    proxy = CutProxy(workers.a.address)
    async with proxy.running():
        member, sender, first = await _pair(workers, proxy.address)
        started = time.monotonic()
        await _send_mixed(sender, rounds, first["id"], 9)
        received: list[Frame] = []
        with anyio.fail_after(WAIT):
            while len(received) < 40:
                received.append(await _mixed_frame(member))
        proxy.target = workers.b.address
        assert proxy.cut() == 1  # mid-burst
        with anyio.fail_after(WAIT):
            assert await sender.reply(9) == "done"
        burst = time.monotonic() - started
        assert set(member.positions) <= {"0", "1", "2", "3"}, member.positions
        resumed = await _open(member, resume=True)
        assert resumed["recovered"] is True, resumed
        assert resumed["id"] == first["id"]
        with anyio.fail_after(WAIT):
            while len(received) < rounds * len(TARGETS):
                received.append(await _mixed_frame(member))
        _check(received, rounds)
        node = await member.request("node", None, 7)
        assert node == {"node": "B", "id": first["id"], "rooms": sorted(ROOMS)}
        with anyio.move_on_after(QUIET):
            extra = await member.recv()
            pytest.fail(f"a frame arrived twice: {extra}")
        print(f"\n{rounds} rounds ({rounds * len(TARGETS)} frames) sent in {burst:.2f} s")
        await _close(member, sender)


# -- the partitions' streams on the masters ---------------------------------------------


def command_calls(server: ClusterServer) -> dict[str, int]:
    """``INFO commandstats``: calls per command (those a script makes count too)."""
    reply = server.command("INFO", "commandstats")
    assert isinstance(reply, bytes), reply
    calls: dict[str, int] = {}
    for line in reply.decode().splitlines():
        name, _, fields = line.partition(":")
        if name.startswith("cmdstat_"):
            values = dict(field.split("=", 1) for field in fields.split(","))
            calls[name.removeprefix("cmdstat_")] = int(values["calls"])
    return calls


def master_counts(server: ClusterServer) -> dict[str, int]:
    """What a master ran: the history's commands and its network bytes."""
    calls = command_calls(server)
    info = server.info()
    return {
        "evalsha": calls.get("evalsha", 0) + calls.get("eval", 0),
        "xadd": calls.get("xadd", 0),
        "xread": calls.get("xread", 0),
        "xrange": calls.get("xrange", 0),
        "in": int(info["total_net_input_bytes"]),
        "out": int(info["total_net_output_bytes"]),
    }


def stream_length(redis: RedisCluster, part: int) -> tuple[int, int]:
    """The master (port) that holds partition ``part``'s stream, and the stream's length,
    asked of that master itself (another would answer ``MOVED``)."""
    port = redis.master_of(stream_key(part)).port
    length = redis.server(port).command("XLEN", stream_key(part))
    assert isinstance(length, int), (port, length)
    return port, length


async def test_the_partitions_live_on_different_masters_each_with_its_share(
    workers: Workers,
) -> None:
    redis = workers.redis
    rounds = 300
    member, sender, first = await _pair(workers, workers.a.address)
    masters = sorted(node.port for node in redis.masters() if node.slots)
    before = {port: master_counts(redis.server(port)) for port in masters}
    lengths = {part: stream_length(redis, part) for part in range(PARTITIONS)}
    assert (
        await sender.request("mixed", {"rooms": ROOMS, "count": rounds, "client": first["id"]}, 9)
        == "done"
    )
    received: list[Frame] = []
    with anyio.fail_after(WAIT):
        while len(received) < rounds * len(TARGETS):
            received.append(await _mixed_frame(member))
    _check(received, rounds)
    after = {port: master_counts(redis.server(port)) for port in masters}
    grown = {}
    for part in range(PARTITIONS):
        port, length = stream_length(redis, part)
        assert port == lengths[part][0], "the slots moved during the test"
        grown[part] = length - lengths[part][1]
    owners = {part: port for part, (port, _) in lengths.items()}
    assert len(set(owners.values())) > 1, f"every partition on one master: {owners}"
    # Each partition got its share: its room's frames (the member's own frames go to its
    # id's partition); the shared one the frames to the three rooms at once and to everyone.
    me = partition_of(first["id"])
    for part, count in grown.items():
        expected = rounds * (2 if part == 0 else 1) + (rounds if part == me else 0)
        assert count == expected, (part, grown)
    delta = {port: {k: after[port][k] - before[port][k] for k in after[port]} for port in masters}
    lines = [f"\n{rounds} mixed rounds, {PARTITIONS} partitions on {len(masters)} masters:"]
    for port in masters:
        held = [part for part, owner in owners.items() if owner == port]
        lines.append(f"  master {port} partitions {held}: {delta[port]}")
        # Every entry a master's streams gained was its own XADD (a script's call).
        assert delta[port]["xadd"] >= sum(grown[part] for part in held), (port, delta)
    print("\n".join(lines))
    assert sum(1 for port in masters if delta[port]["xadd"]) > 1, delta
    await _close(member, sender)


# -- a master SIGKILLed mid-burst -----------------------------------------------------------


@pytest.mark.timeout(180)  # a revive may wait a minute for a whole cluster
async def test_the_master_of_a_rooms_partition_killed_mid_burst(workers: Workers) -> None:
    redis = workers.redis
    rounds = 1000
    shared = redis.master_of(stream_key(0)).port
    # A room whose partition lives on another master than the shared partition's, if there
    # is one: the kill moves that partition's stream alone to a replica.
    room = next(
        (r for r in ROOMS if redis.master_of(stream_key(partition_of(r))).port != shared),
        ROOMS[0],
    )
    victim = redis.master_of(stream_key(partition_of(room)))
    member, sender, first = await _pair(workers, workers.a.address)
    assert (await member.request("join", FENCE_ROOM, 2))["joined"] == FENCE_ROOM
    fence_rooms = [*ROOMS, FENCE_ROOM]
    assert sorted(partition_of(r) for r in fence_rooms) == list(range(PARTITIONS))

    events: list[tuple[str, Frame]] = []
    """What the member got, in order: ``("mixed", data)`` and ``("$session", data)``."""
    marks: dict[str, float] = {}
    killed: list[ClusterServer] = []
    flowing = anyio.Event()

    async def read_member() -> None:
        """Every frame until the fence of each partition (one room in each) came."""
        fences: set[str] = set()
        while len(fences) < len(fence_rooms):
            frame = await _next(member)
            if frame["event"] in ("mixed", "$session"):
                events.append((frame["event"], frame["data"]))
                if len(events) == 60:
                    flowing.set()
            elif frame["event"] == "said" and str(frame["data"]).startswith("fence:"):
                fences.add(frame["data"])

    async def read_reply() -> None:
        while (frame := await _next(sender)).get("id") != 9:
            pass
        assert frame["data"] == "done", frame
        marks["done"] = time.monotonic()

    def kill_and_wait() -> None:
        marks["kill"] = time.monotonic()
        killed.append(redis.kill_master(victim))
        redis.wait_failover(victim)
        marks["promoted"] = time.monotonic()

    try:
        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_member)
                started = time.monotonic()
                await _send_mixed(sender, rounds, first["id"], 9)
                async with anyio.create_task_group() as burst:
                    burst.start_soon(read_reply)
                    await flowing.wait()
                    await anyio.to_thread.run_sync(kill_and_wait)
                # After the burst and the promotion: a frame to one room of each
                # partition, after everything of the burst in that partition's stream.
                for index, fence in enumerate(fence_rooms):
                    data = {"room": fence, "n": f"fence:{fence}"}
                    assert await sender.request("say", data, 20 + index) == "ok"
    finally:
        for server in killed:
            await anyio.to_thread.run_sync(redis.revive, server)

    sessions = [item for event, item in events if event == "$session"]
    received = [item for event, item in events if event == "mixed"]
    seen: set[tuple[str, int]] = set()
    silent: list[tuple[str, int]] = []  # a second copy, and no $session before it
    told: list[tuple[str, int]] = []  # a second copy after a $session (recovered: false)
    after_session = False
    for event, item in events:
        if event == "$session":
            after_session = True
            continue
        key = (item["to"], item["n"])
        if key in seen:
            (told if after_session else silent).append(key)
        seen.add(key)
    print(
        f"\nkilled master {victim.port} (partition {partition_of(room)}, room {room}) "
        f"{marks['kill'] - started:.2f} s into a burst of {rounds} rounds; replica promoted "
        f"{marks['promoted'] - marks['kill']:.2f} s later; burst done "
        f"{marks['done'] - marks['kill']:+.2f} s from the kill; "
        f"{len(received)}/{rounds * len(TARGETS)} frames; $session: {sessions}"
    )
    for session in sessions:
        # Told: frames were lost (the replica lacked entries its master had acknowledged).
        assert session["recovered"] is False and session["reason"], session
    assert not silent, f"second copies without a $session: {_ranges(silent)}"
    for target, numbers in _by_target(received).items():
        firsts = list(dict.fromkeys(numbers))
        assert all(x < y for x, y in itertools.pairwise(firsts)), f"{target}: out of order"
    complete = all(set(numbers) == set(range(rounds)) for numbers in _by_target(received).values())
    assert complete or sessions, "frames went missing without a $session"
    # Seen once before readers skipped what they had delivered (a replica promoted by
    # hand, CLUSTER FAILOVER TAKEOVER): a batch of appends (256) came again after the
    # $session. The dead master had applied it and a worker's reader had delivered it;
    # the promoted replica lacked it, and its producer wrote it again (its duplicate
    # check is a key that died with the master).
    assert not told, f"frames delivered a second time after a $session: {_ranges(told)}"
    await _close(member, sender)
