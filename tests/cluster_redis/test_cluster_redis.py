"""End to end on a real Redis Cluster: two hypercorn workers share it as one gateway.

Three masters and three replicas (``tests.redis_cluster``); the workers serve
``tests.cluster_redis.app`` (``RedisBroker(..., cluster=True, secret=...)``). Clients on
different workers exchange room messages, direct messages and broadcasts, see each
other's presence and answer room calls; a ``RedisEmitter`` reaches them; a client cut
from one worker resumes on the other with every missed frame. Then the cluster is
upset in the middle of traffic: a forged message on a shard channel, a master SIGKILLed
(its replica takes over), slots resharded. Every wait has a timeout.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.crc import key_slot

from gatewayasgi.backplane.envelope import Envelope, channel_for, pack
from gatewayasgi.backplane.routing import client_channel, room_channel
from gatewayasgi.emitter import RedisEmitter
from gatewayasgi.protocol.json import JSON
from tests.cluster.nodes import Peer, eventually, peers
from tests.cluster_redis.app import SECRET, URL_VARIABLE
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.wire import Session
from tests.redis_cluster import RedisCluster
from tests.workers import Node, start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.cluster_redis.app:app"
WAIT = 15.0
QUIET = 0.4
"""How long to listen for a frame that must not come (a second copy, a forgery)."""
HISTORY_KEY = "gatewayasgi:{history:/recover}"


@dataclass
class Workers:
    redis: RedisCluster
    a: Node
    b: Node

    def url(self, node: Node, path: str) -> str:
        return f"ws://{node.address}{path}"


def start_workers(redis: RedisCluster, workdir: Path, names: tuple[str, ...]) -> list[Node]:
    os.environ[URL_VARIABLE] = redis.url
    nodes: list[Node] = []
    try:
        for name in names:
            # GATEWAYASGI_TEST_REDIS_URL: a single node, for the imported apps never served.
            nodes.append(start_node(name, redis.url.split(",")[0], workdir, APP))
    except BaseException:
        for node in nodes:
            stop_node(node)
        raise
    finally:
        os.environ.pop(URL_VARIABLE, None)
    return nodes


@contextmanager
def two_workers(redis: RedisCluster, workdir: Path) -> Iterator[Workers]:
    """Workers A and B serving the cluster app on ``redis``, stopped after."""
    nodes = start_workers(redis, workdir, ("A", "B"))
    try:
        yield Workers(redis, *nodes)
    finally:
        for node in nodes:
            stop_node(node)


@pytest.fixture(scope="module")
def workers(
    redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    with two_workers(redis_cluster, tmp_path_factory.mktemp("cluster-workers")) as both:
        yield both


def emitter(redis: RedisCluster, namespace: str, **options: Any) -> RedisEmitter:
    return RedisEmitter(redis.url, namespace, cluster=True, secret=SECRET, **options)


async def warm_up(sender: Peer, receivers: list[Peer], room: str) -> None:
    """Send to ``room`` until every receiver heard it (the workers have met), then forget."""

    async def heard() -> bool:
        await sender.request("room", {"room": room, "text": "warm-up"})
        await anyio.sleep(0.1)
        return all(
            any(f["data"].get("text") == "warm-up" for f in r.pushes if f["event"] == "room")
            for r in receivers
        )

    await eventually(heard, WAIT)
    await anyio.sleep(QUIET)
    for peer in [sender, *receivers]:
        peer.pushes.clear()


def gaps(peer: Peer) -> list[Any]:
    """The data of each ``$gap`` frame ``peer`` received."""
    return [frame["data"] for frame in peer.pushes if frame["event"] == "$gap"]


def texts(peer: Peer, event: str) -> list[str]:
    return [frame["data"]["text"] for frame in peer.pushes if frame["event"] == event]


async def once_each(peers_and_events: list[tuple[Peer, str]], text: str) -> None:
    """Every listed peer gets exactly one ``event`` with ``text``: wait, then listen on."""
    for peer, event in peers_and_events:
        await peer.until(lambda p=peer, e=event: text in texts(p, e), WAIT)
    await anyio.sleep(QUIET)
    for peer, event in peers_and_events:
        assert texts(peer, event).count(text) == 1, (peer.node, texts(peer, event))


# -- delivery across workers ------------------------------------------------------------


async def test_rooms_direct_messages_broadcasts_and_the_emitter_cross_workers(
    workers: Workers,
) -> None:
    a, b = workers.url(workers.a, "/scale"), workers.url(workers.b, "/scale")
    async with peers(a, b, b) as (alice, bob, carol):
        assert [p.node for p in (alice, bob, carol)] == ["A", "B", "B"]
        for peer in (alice, bob):
            await peer.request("join", {"room": "r1"})
        await warm_up(alice, [bob], "r1")

        await alice.request("room", {"room": "r1", "text": "hello"})
        await once_each([(alice, "room"), (bob, "room")], "hello")
        assert texts(carol, "room") == []

        await bob.request("direct", {"to": alice.id, "text": "dm"})
        await once_each([(alice, "direct")], "dm")
        assert texts(carol, "direct") == [] and texts(bob, "direct") == []

        await carol.request("broadcast", {"text": "all"})
        await once_each([(alice, "broadcast"), (bob, "broadcast"), (carol, "broadcast")], "all")

        async with emitter(workers.redis, "/scale") as outside:
            await outside.to("r1").emit("room", {"text": "from outside"})
            await once_each([(alice, "room"), (bob, "room")], "from outside")
            assert "from outside" not in texts(carol, "room")
            await outside.emit("broadcast", {"text": "to everyone"})
            await once_each(
                [(alice, "broadcast"), (bob, "broadcast"), (carol, "broadcast")], "to everyone"
            )
            assert outside.broker.stats.published == 2


async def test_presence_and_room_calls_reach_both_workers(workers: Workers) -> None:
    a, b = workers.url(workers.a, "/cluster"), workers.url(workers.b, "/cluster")
    async with peers(a, b, b, a, silent=(2,)) as (a1, b1, quiet, controller):
        for peer in (a1, b1, quiet):
            await peer.request("join", {"room": "lobby"})
        expected = sorted(p.id for p in (a1, b1, quiet))

        async def everyone() -> bool:
            found = await controller.request("presence", {"room": "lobby"})
            return bool(found["ids"] == expected)

        await eventually(everyone, WAIT)
        found = await b1.request("presence", {"room": "lobby"})
        assert found == {"ids": expected, "count": 3, "missing": 0}
        results = await controller.request(
            "call_room", {"room": "lobby", "event": "ping", "data": 7, "timeout": 1.0}
        )
        assert results["answers"] == {
            a1.id: {"echo": 7, "by": a1.id},
            b1.id: {"echo": 7, "by": b1.id},
        }
        assert results["timed_out"] == [quiet.id] and results["missing_nodes"] == 0
        assert [call["event"] for call in quiet.calls] == ["ping"]


async def test_a_cut_client_resumes_on_the_other_worker_with_every_missed_frame(
    workers: Workers,
) -> None:
    proxy = CutProxy(workers.a.address)
    async with proxy.running():
        member, sender = Session(proxy.address, "/recover"), Session(workers.b.address, "/recover")
        with anyio.fail_after(WAIT):
            first = await member.open()
        assert await member.request("join", "r") == {"joined": "r", "node": "A"}
        with anyio.fail_after(WAIT):
            await sender.open()

        async def live() -> bool:
            await sender.request("say", {"room": "r", "n": "hello"})
            with anyio.move_on_after(1.0):
                return bool((await member.recv())["data"] == "hello")
            return False

        await eventually(live, WAIT)
        await anyio.sleep(QUIET)
        await member.request("node", None, 99)  # reads on past any second "hello"

        await sender.ws.send(
            json.dumps({"event": "burst", "data": {"room": "r", "count": 400}, "id": 2})
        )
        received: list[object] = []
        while len(received) < 20:
            frame = await member.recv()
            if frame.get("event") == "said":
                received.append(frame["data"])
        proxy.target = workers.b.address
        assert proxy.cut() == 1  # mid-burst
        assert await sender.reply(2) == "done"
        with anyio.fail_after(WAIT):
            resumed = await member.open(resume=True)
        assert resumed["recovered"] is True and resumed["id"] == first["id"], resumed
        while len(received) < 400:
            received.append((await member.recv())["data"])
        assert received == list(range(400))  # every frame, once, in order
        assert await member.request("node", None, 7) == {
            "node": "B",
            "id": first["id"],
            "rooms": ["r"],
        }
        with anyio.move_on_after(QUIET):
            extra = await member.recv()
            pytest.fail(f"a frame arrived twice: {extra}")


async def test_a_forged_message_on_a_shard_channel_is_dropped(workers: Workers) -> None:
    b = workers.url(workers.b, "/scale")
    async with peers(b) as (victim,):
        channels = shard_channels(workers.redis, "/scale")
        assert channels, "the workers subscribe no shard channel of /scale"
        forged = pack(Envelope("intruder", JSON.encode_emit("broadcast", {"text": "forged"})))
        for channel in channels:
            port = workers.redis.master_of(channel).port
            workers.redis.server(port).command("SPUBLISH", channel, forged)
        await anyio.sleep(QUIET)
        assert texts(victim, "broadcast") == []
        async with emitter(workers.redis, "/scale") as signed:
            await signed.emit("broadcast", {"text": "signed"})
            await once_each([(victim, "broadcast")], "signed")
        assert "forged" not in texts(victim, "broadcast")
        logs = workers.a.log.read_text() + workers.b.log.read_text()
        assert "dropped an unsigned message" in logs


def shard_channels(redis: RedisCluster, needle: str) -> list[str]:
    """The shard channels subscribed anywhere in the cluster whose name has ``needle``."""
    found: set[str] = set()
    for server in redis.alive():
        reply = server.command("PUBSUB", "SHARDCHANNELS")
        assert isinstance(reply, list), reply
        found.update(c.decode() for c in reply if isinstance(c, bytes) and needle in c.decode())
    return sorted(found)


async def test_a_cut_shard_connection_tells_only_the_clients_it_served(
    workers: Workers,
) -> None:
    """Redis closes the workers' connections to one master (``CLIENT KILL TYPE pubsub``
    there): what was published on that master's channels meanwhile is lost. Once they
    are subscribed again, worker A tells its client in a room whose channel lives there
    (``$gap``), and not its client whose channels (room, own id, the namespace's) all
    live on other masters. Then delivery to the room works again."""
    redis = workers.redis
    a, b = workers.url(workers.a, "/scale"), workers.url(workers.b, "/scale")
    async with peers(a, a, b) as (cut, spared, sender):
        masters = redis.masters()

        def owner(channel: str) -> int:
            slot = key_slot(channel.encode())
            return next(m.port for m in masters if any(lo <= slot <= hi for lo, hi in m.slots))

        safe = {owner(channel_for("/scale")), owner(client_channel("/scale", spared.id))}
        # The master with most slots among the others (another module's reshard may have
        # left one with a single slot).
        victim = max(
            (m for m in masters if m.port not in safe),
            key=lambda m: sum(last - first + 1 for first, last in m.slots),
        ).port

        def room_on_victim(wanted: bool) -> str:
            for n in itertools.count():
                room = f"gap-{n}"
                if (owner(room_channel("/scale", room)) == victim) == wanted:
                    return room
            raise AssertionError("unreachable")

        cut_room, spared_room = room_on_victim(True), room_on_victim(False)
        await cut.request("join", {"room": cut_room})
        await spared.request("join", {"room": spared_room})
        await warm_up(sender, [cut], cut_room)
        await warm_up(sender, [spared], spared_room)

        killed = await anyio.to_thread.run_sync(
            redis.server(victim).command, "CLIENT", "KILL", "TYPE", "pubsub"
        )
        # A's connection there holds the cut room's channel (B connects to a master
        # once its layout names it, or a channel of its needs it).
        assert isinstance(killed, int) and killed >= 1, killed
        await cut.until(lambda: bool(gaps(cut)), WAIT)
        await anyio.sleep(2 * QUIET)  # a second $gap, or one to the spared client
        assert gaps(cut) == [{"reason": "backplane"}]
        assert gaps(spared) == []

        # The $gap came once the channel was subscribed again: delivery works.
        await sender.request("room", {"room": cut_room, "text": "after"})
        await once_each([(cut, "room")], "after")
        await sender.request("room", {"room": spared_room, "text": "spared"})
        await once_each([(spared, "room")], "spared")


# -- the cluster upset in the middle of traffic -------------------------------------------


@dataclass
class Traffic:
    """``say`` requests sent to worker B for room ``r`` every few ms; what the member on
    worker A received (with arrival times) and every ``$session`` frame it got."""

    member: Session
    sender: Session
    sent: list[tuple[int, float]]
    received: list[tuple[int, float]]
    sessions: list[dict[str, Any]]
    gaps: list[Any]


async def run_traffic(workers: Workers, upset: Any, *, after: float = 3.0) -> Traffic:
    """Traffic on ``/recover`` while ``upset()`` runs in a thread; ``after`` seconds of
    traffic once it returned."""
    member, sender = Session(workers.a.address, "/recover"), Session(workers.b.address, "/recover")
    with anyio.fail_after(WAIT):
        await member.open()
        await sender.open()
    await member.request("join", "r")
    traffic = Traffic(member, sender, [], [], [], [])

    async def warm() -> bool:
        await sender.request("say", {"room": "r", "n": -1})
        with anyio.move_on_after(1.0):
            return bool((await member.recv())["data"] == -1)
        return False

    await eventually(warm, WAIT)
    await anyio.sleep(QUIET)
    with anyio.move_on_after(0.2):
        while True:
            await member.recv_raw()  # more warm-up copies

    async def send() -> None:
        n = 0
        while True:
            await sender.ws.send(
                json.dumps({"event": "say", "data": {"room": "r", "n": n}, "id": 1000 + n})
            )
            traffic.sent.append((n, time.monotonic()))
            n += 1
            await anyio.sleep(0.01)

    async def receive() -> None:
        while True:
            frame = await member.recv_raw()
            if frame["event"] == "$session":
                traffic.sessions.append(frame["data"])
            elif frame["event"] == "$gap":
                traffic.gaps.append(frame["data"])
            elif frame["event"] == "said":
                traffic.received.append((frame["data"], time.monotonic()))

    async def drain_replies() -> None:
        while True:
            await sender.recv_raw()

    async with anyio.create_task_group() as tg:
        tg.start_soon(send)
        tg.start_soon(receive)
        tg.start_soon(drain_replies)
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(upset)
        await anyio.sleep(after)
        tg.cancel_scope.cancel()
    # Wait until what was sent has arrived (or was declared lost by a $session).
    last = traffic.sent[-1][0]
    with anyio.move_on_after(WAIT):
        while not traffic.received or traffic.received[-1][0] != last:
            frame = await member.recv_raw()
            if frame["event"] == "$session":
                traffic.sessions.append(frame["data"])
            elif frame["event"] == "$gap":
                traffic.gaps.append(frame["data"])
            elif frame["event"] == "said":
                traffic.received.append((frame["data"], time.monotonic()))
    await member.ws.close()
    await sender.ws.close()
    return traffic


@pytest.mark.timeout(180)  # a revive may wait a minute for a whole cluster
async def test_a_master_killed_mid_traffic_fails_over_and_traffic_resumes(
    workers: Workers,
) -> None:
    redis = workers.redis
    victim = redis.master_of(HISTORY_KEY)
    killed: list[Any] = []
    marks: dict[str, float] = {}

    def kill_and_wait() -> None:
        marks["kill"] = time.monotonic()
        killed.append(redis.kill_master(victim))
        redis.wait_failover(victim)
        marks["promoted"] = time.monotonic()

    traffic = await run_traffic(workers, kill_and_wait)
    try:
        numbers = [n for n, _ in traffic.received]
        assert all(x < y for x, y in itertools.pairwise(numbers)), "out of order"
        # A gateway whose history is in Redis catches up from it: nothing to tell.
        assert traffic.gaps == []
        first_after = next(
            at for n, at in traffic.received if n > 0 and _sent_at(traffic, n) > marks["kill"]
        )
        print(
            f"\nfailover: replica promoted {marks['promoted'] - marks['kill']:.2f} s after the "
            f"SIGKILL; traffic flowed again {first_after - marks['kill']:.2f} s after it "
            f"({len(numbers)}/{len(traffic.sent)} frames, $session: {traffic.sessions})"
        )
        if traffic.sessions:
            # Told: frames were lost, said out loud (the history moved to a replica that
            # had not received the newest entries yet).
            assert all(s["recovered"] is False and s.get("reason") for s in traffic.sessions)
        else:
            assert numbers == list(range(len(traffic.sent))), "a frame went missing silently"
        # Pub/sub on the other namespace works too, exactly once, across workers.
        await test_rooms_direct_messages_broadcasts_and_the_emitter_cross_workers(workers)
    finally:
        for server in killed:
            await anyio.to_thread.run_sync(redis.revive, server)


def _sent_at(traffic: Traffic, n: int) -> float:
    return traffic.sent[n][1]


@pytest.mark.timeout(180)  # a revive may wait a minute for a whole cluster
async def test_a_slot_migration_mid_traffic_loses_nothing(workers: Workers) -> None:
    redis = workers.redis
    # Move every slot of the master that holds /recover's history, with the pub/sub
    # channels that hash there, to another master, while frames flow.
    source = redis.master_of(HISTORY_KEY)
    target = next(m for m in redis.masters() if m.port != source.port)
    count = sum(last - first + 1 for first, last in source.slots)

    try:
        traffic = await run_traffic(
            workers, lambda: redis.reshard(source.port, target.port, count), after=1.0
        )
        numbers = [n for n, _ in traffic.received]
        assert traffic.sessions == []
        assert numbers == list(range(len(traffic.sent)))  # every frame, once, in order
        assert redis.master_of(HISTORY_KEY).port == target.port
        await test_rooms_direct_messages_broadcasts_and_the_emitter_cross_workers(workers)
    finally:
        # The emptied master became a replica: give the cluster three masters again, or
        # a later failover test (same session cluster) could not elect a replica.
        await anyio.to_thread.run_sync(redis.three_masters)
