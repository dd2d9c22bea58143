"""Interest routing on a real Redis Cluster, three hypercorn workers (A, B, C).

The workers serve ``tests.cluster_redis.three_app`` (``RedisBroker(..., cluster=True,
secret=...)``, interest routing); C lets an emptied room's channel go at once (no
linger), so its joins and leaves subscribe and unsubscribe shard channels for real.
They are started once for the module on the session's cluster (``tests.redis_cluster``).

Sharded pub/sub keeps order per channel only (each channel lives on the shard that owns
its slot, read on its own connection), so a fence here is one frame on every channel a
client can be reached by: the namespace channel, its own client channel and each of its
rooms' channels, all published after the frames under test; a client's frames are in
once it got the fence of each of its channels. A quiet period after the fences shows
nothing came twice (a late copy of a split order, on a channel of a room the client is
not in). Every wait has a timeout.

``GATEWAYASGI_TEST_ROUTING=namespace`` (in the environment of pytest) starts the workers
and the emitter in namespace routing: the counters of the worker without members then
show every order of the room, and that test fails.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets

from gatewayasgi.emitter import RedisEmitter
from tests import workers
from tests.cluster.nodes import Peer, eventually
from tests.cluster_redis.three_app import NAMESPACE, SECRET, URL_VARIABLE
from tests.redis_cluster import RedisCluster
from tests.workers import Node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

APP = "tests.cluster_redis.three_app:app"
ROUTING = os.environ.get("GATEWAYASGI_TEST_ROUTING", "interest")
WAIT = 15.0
QUIET = 0.4
"""How long to listen for a frame that must not come (a second copy)."""
Frame = dict[str, Any]


@dataclass
class Workers:
    redis: RedisCluster
    a: Node
    b: Node
    c: Node

    def urls(self, *names: str) -> list[str]:
        nodes = {"A": self.a, "B": self.b, "C": self.c}
        return [nodes[name].url for name in names]


class Client(Peer):
    """A ``Peer`` (it answers calls unless silent) that is its own key in a dict."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__


@asynccontextmanager
async def peers(*urls: str, silent: tuple[int, ...] = ()) -> AsyncIterator[list[Client]]:
    """One client per URL (those at the ``silent`` positions never answer calls)."""
    async with anyio.create_task_group() as tg:
        connected: list[Client] = []
        try:
            for index, url in enumerate(urls):
                ws = await websockets.connect(url, open_timeout=WAIT)
                peer = Client(ws, silent=index in silent)
                connected.append(peer)
                tg.start_soon(peer.read)
                await peer.welcome()
            yield connected
        finally:
            with anyio.move_on_after(WAIT, shield=True):
                for peer in connected:
                    await peer.ws.close()
            tg.cancel_scope.cancel()


def start_worker(name: str, redis: RedisCluster, workdir: Path, **env: str) -> Node:
    saved = {key: os.environ.get(key) for key in [URL_VARIABLE, *env]}
    os.environ.update({URL_VARIABLE: redis.url, **env})
    try:
        # GATEWAYASGI_TEST_REDIS_URL (a single node) is not read by this app.
        return workers.start_node(name, redis.url.split(",")[0], workdir, APP, NAMESPACE)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def three(
    redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    workdir = tmp_path_factory.mktemp("three-workers")
    nodes: list[Node] = []
    try:
        nodes.append(start_worker("A", redis_cluster, workdir))
        nodes.append(start_worker("B", redis_cluster, workdir))
        nodes.append(start_worker("C", redis_cluster, workdir, GATEWAYASGI_TEST_LINGER="0"))
        yield Workers(redis_cluster, *nodes)
    finally:
        for node in nodes:
            stop_node(node)


def emitter(redis: RedisCluster) -> RedisEmitter:
    return RedisEmitter(redis.url, NAMESPACE, cluster=True, secret=SECRET, routing=ROUTING)


async def stats(peer: Peer) -> dict[str, Any]:
    counts: dict[str, Any] = await peer.request("stats")
    assert counts["node"] == peer.node, counts
    return counts


def delta(after: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after if isinstance(after[key], int)}


async def met(everyone: list[Peer]) -> None:
    """Wait until each worker knows the other two live (heartbeats): cluster joins,
    presence and room calls wait for the nodes they know."""

    async def known() -> bool:
        return all([(await stats(peer))["peers"] == 2 for peer in everyone])

    await eventually(known, WAIT)


def texts(frames: list[Frame]) -> list[Any]:
    return [frame["data"]["text"] for frame in frames]


class Fences:
    """Fences on every channel a client can be reached by (see the module docstring)."""

    def __init__(self, emitter: RedisEmitter, everyone: list[Peer]) -> None:
        self.emitter = emitter
        self.everyone = everyone
        self.count = 0

    async def collect(self, rooms: Mapping[Peer, Iterable[str]]) -> dict[Peer, list[Frame]]:
        """Every push each client got before its fences (which are taken out), after a
        quiet period; ``rooms``: the rooms each client is in now."""
        self.count += 1
        tag = self.count
        member_of = {peer: set(rooms.get(peer, ())) for peer in self.everyone}
        await self.emitter.emit("fence", {"tag": tag, "via": "*"})
        for room in sorted(set().union(*member_of.values())):
            await self.emitter.to(room).emit("fence", {"tag": tag, "via": room})
        for peer in self.everyone:
            await self.emitter.to(peer.id).emit("fence", {"tag": tag, "via": peer.id})
        expected = {peer: {"*", peer.id, *member_of[peer]} for peer in self.everyone}

        def fenced(peer: Peer) -> bool:
            vias = {f["data"]["via"] for f in peer.pushes if is_fence(f, tag)}
            return expected[peer] <= vias

        for peer in self.everyone:
            await peer.until(lambda p=peer: fenced(p), WAIT)
        await anyio.sleep(QUIET)
        got: dict[Peer, list[Frame]] = {}
        for peer in self.everyone:
            frames, peer.pushes[:] = list(peer.pushes), []
            wanted = set(expected[peer])
            kept = []
            for frame in frames:
                if is_fence(frame, tag) and frame["data"]["via"] in wanted:
                    wanted.discard(frame["data"]["via"])  # one of each; a second stays
                else:
                    kept.append(frame)
            got[peer] = kept
        return got


def is_fence(frame: Frame, tag: int) -> bool:
    return frame["event"] == "fence" and frame["data"]["tag"] == tag


def expect(got: Mapping[Peer, list[Frame]], names: Mapping[Peer, str], **wanted: list[Any]) -> None:
    """Each client got exactly the ``msg`` texts listed under its name, each once (in any
    order: sharded pub/sub orders each channel, not one channel against another)."""
    for peer, frames in got.items():
        name = names[peer]
        assert [f["event"] for f in frames] == ["msg"] * len(frames), (name, frames)
        assert sorted(map(str, texts(frames))) == sorted(map(str, wanted.get(name, []))), (
            name,
            texts(frames),
        )


# -- delivery ----------------------------------------------------------------------------


async def test_rooms_direct_messages_broadcasts_presence_calls_and_the_emitter(
    three: Workers,
) -> None:
    urls = three.urls("A", "A", "B", "B", "C", "C")
    async with emitter(three.redis) as outside, peers(*urls, silent=(5,)) as everyone:
        a1, a2, b1, b2, c1, c2 = everyone
        assert [p.node for p in everyone] == ["A", "A", "B", "B", "C", "C"]
        names = dict(zip(everyone, ("a1", "a2", "b1", "b2", "c1", "c2"), strict=True))
        rooms = {a1: ["r1", "r2"], b1: ["r1"], b2: ["r2"], c1: ["r1"], c2: ["r1"]}
        for peer, joined in rooms.items():
            await peer.request("join", {"rooms": joined})
        await met(everyone)
        fences = Fences(outside, everyone)
        await fences.collect(rooms)
        before = {peer.node: await stats(peer) for peer in (a1, b1, c1)}

        async def sent(peer: Peer, **data: Any) -> None:
            assert await peer.request("emit", data) == {"sent": True}

        # A room, from a worker with members of it and from one without.
        await sent(a2, to=["r1"], text="r1")
        await sent(c1, to=["r2"], text="r2")
        got = await fences.collect(rooms)
        expect(got, names, a1=["r1", "r2"], b1=["r1"], b2=["r2"], c1=["r1"], c2=["r1"])

        # Two rooms (a1 is in both: once), excludes, a client id, everybody.
        await sent(b2, to=["r1", "r2"], text="both")
        await sent(c2, to=["r1", "r2"], text="both again")
        await sent(a2, to=["r1"], **{"except": [b1.id, "r2"]}, text="r1 not b1 nor r2")
        await sent(b1, to=[a2.id], text="direct")
        await sent(a1, to=[c2.id, "r2"], text="c2 and r2")
        await sent(c1, text="everybody")
        got = await fences.collect(rooms)
        both = ["both", "both again"]
        expect(
            got,
            names,
            a1=[*both, "c2 and r2", "everybody"],
            a2=["direct", "everybody"],
            b1=[*both, "everybody"],
            b2=[*both, "c2 and r2", "everybody"],
            c1=[*both, "r1 not b1 nor r2", "everybody"],
            c2=[*both, "r1 not b1 nor r2", "c2 and r2", "everybody"],
        )

        # The emitter: a room, two rooms (a copy on each channel: A and B, with members
        # of both, deliver the first copy and drop the second), a client id, everybody.
        await outside.to("r1").emit("msg", {"text": "e-r1"})
        await outside.to("r1", "r2").emit("msg", {"text": "e-both"})
        await outside.to("r1", "r2").except_(c1.id).emit("msg", {"text": "e-both not c1"})
        await outside.to(b2.id).emit("msg", {"text": "e-direct"})
        await outside.emit("msg", {"text": "e-all"})
        got = await fences.collect(rooms)
        e_both = ["e-both", "e-both not c1"]
        expect(
            got,
            names,
            a1=["e-r1", *e_both, "e-all"],
            a2=["e-all"],
            b1=["e-r1", *e_both, "e-all"],
            b2=[*e_both, "e-direct", "e-all"],
            c1=["e-r1", "e-both", "e-all"],
            c2=["e-r1", *e_both, "e-all"],
        )
        if ROUTING == "interest":
            after = {
                peer.node: delta(await stats(peer), before[peer.node]) for peer in (a1, b1, c1)
            }
            # Two split orders, each a copy on r1 and one on r2: a second copy on A and
            # on B (members of both rooms there), none on C (r1 only).
            assert [after[node]["duplicates"] for node in "ABC"] == [2, 2, 0], after

        # Presence: each member once, asked from a worker with members and from one with
        # none (c2 never answers calls: it is still a member).
        expected_ids = sorted(p.id for p in (a1, b1, c1, c2))
        for asker in (a2, b1):
            found = await asker.request("presence", {"room": "r1"})
            assert found == {"ids": expected_ids, "count": 4, "missing": 0}, found
        found = await c2.request("presence", {"room": "r2"})
        assert found == {"ids": sorted([a1.id, b2.id]), "count": 2, "missing": 0}, found

        # A room call from a worker: each member is called once; c2 lets it time out.
        results = await b2.request(
            "call_room", {"room": "r1", "event": "ping", "data": 7, "timeout": 1.0}
        )
        assert results == {
            "answers": {p.id: {"echo": 7, "by": p.id} for p in (a1, b1, c1)},
            "errors": {},
            "timed_out": [c2.id],
            "missing_nodes": 0,
        }, results
        await anyio.sleep(QUIET)
        for peer in everyone:
            called = [call["data"] for call in peer.calls if call["event"] == "ping"]
            assert called == ([7] if peer in (a1, b1, c1, c2) else []), (names[peer], called)


# -- a worker without members ------------------------------------------------------------


async def test_a_worker_without_members_of_a_room_receives_none_of_its_orders(
    three: Workers,
) -> None:
    urls = three.urls("A", "B", "C")
    async with emitter(three.redis) as outside, peers(*urls) as everyone:
        a1, b1, c1 = everyone
        names = dict(zip(everyone, ("a1", "b1", "c1"), strict=True))
        rooms = {a1: ["ab-only"], b1: ["ab-only"]}
        for peer, joined in rooms.items():
            await peer.request("join", {"rooms": joined})
        fences = Fences(outside, everyone)
        await fences.collect(rooms)
        before = {peer.node: await stats(peer) for peer in everyone}
        count = 40
        for n in range(count):
            # From C (no member: it publishes on the room's shard channel, unsubscribed
            # there) and from outside.
            await c1.request("emit", {"to": ["ab-only"], "text": n})
            await outside.to("ab-only").emit("msg", {"text": -1 - n})
        got = await fences.collect(rooms)
        in_order = [x for n in range(count) for x in (n, -1 - n)]  # one channel: in order
        assert texts(got[a1]) == texts(got[b1]) == in_order
        expect(got, names, a1=in_order, b1=in_order)
        after = {peer.node: delta(await stats(peer), before[peer.node]) for peer in everyone}
        # C: the broadcast fence and c1's fence, nothing of the room, not even its own
        # orders back.
        counts = after["C"]
        assert counts["received_room"] == 0, counts
        assert counts["received"] == 2, counts
        assert counts["dropped"] == counts["echoes"] == 0, counts
        for node in "AB":
            # The 2 * count orders and the room's fence on the room channel; the
            # broadcast fence and the client's own fence besides.
            counts = after[node]
            assert counts["received_room"] == 2 * count + 1, (node, counts)
            assert counts["received"] == 2 * count + 3, (node, counts)
            assert counts["dropped"] == counts["duplicates"] == 0, (node, counts)


# -- joins and leaves --------------------------------------------------------------------


async def test_a_frame_emitted_right_after_a_join_arrives_under_churn(three: Workers) -> None:
    urls = three.urls("A", "B", "C", "C")
    async with emitter(three.redis) as outside, peers(*urls) as everyone:
        a1, b1, c1, c2 = everyone
        names = dict(zip(everyone, ("a1", "b1", "c1", "c2"), strict=True))
        await met(everyone)
        fences = Fences(outside, everyone)
        before = await stats(c1)

        # A client's own join, then at once an emit from another worker and one from
        # outside: fresh rooms on B; one room over and over on C (no linger there: each
        # leave unsubscribes the shard channel, each join subscribes it again).
        sent: dict[Peer, list[str]] = {b1: [], c1: []}
        for member, joined in ((b1, [f"fresh-{n}" for n in range(20)]), (c1, ["again"] * 20)):
            for n, room in enumerate(joined):
                await member.request("join", {"rooms": [room]})
                await a1.request("emit", {"to": [room], "text": f"w{n}"})
                await outside.to(room).emit("msg", {"text": f"e{n}"})
                sent[member] += [f"w{n}", f"e{n}"]
                # Leave only once both arrived: a leave that overtakes a frame still in
                # flight drops it (the edge under test is the join's).
                await member.until(
                    lambda m=member, n=n: {f"w{n}", f"e{n}"} <= set(texts(m.pushes)), WAIT
                )
                await member.request("leave", {"rooms": [room]})
        got = await fences.collect({})
        assert texts(got[b1]) == sent[b1] and texts(got[c1]) == sent[c1]  # one channel each
        expect(got, names, b1=sent[b1], c1=sent[c1])
        if ROUTING == "interest":
            churned = delta(await stats(c1), before)
            assert churned["subscribes"] >= 20 and churned["unsubscribes"] >= 20, churned

        # Joins made from another worker (server.in_(id).join(room)), then an emit at once.
        pulled: dict[Peer, list[str]] = {b1: [], c1: []}
        for n in range(15):
            for member in (b1, c1):
                room = f"pulled-{names[member]}-{n}"
                await a1.request("join_then_emit", {"who": member.id, "room": room, "text": n})
                pulled[member].append(room)
        got = await fences.collect(pulled)
        expect(got, names, b1=list(range(15)), c1=list(range(15)))
        for member, joined in pulled.items():
            await member.request("leave", {"rooms": joined})

        # A steady member loses nothing while a client of its worker joins and leaves its
        # room and fresh ones over and over (C: each fresh room subscribed, unsubscribed).
        await c2.request("join", {"rooms": ["steady"]})
        total = 60

        async def churn() -> None:
            for n in range(30):
                await c1.request("join", {"rooms": ["steady", f"churn-{n % 7}"]})
                await c1.request("leave", {"rooms": ["steady", f"churn-{n % 7}"]})

        async def emit() -> None:
            for n in range(total):
                await a1.request("emit", {"to": ["steady"], "text": n})

        with anyio.fail_after(WAIT * 2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(churn)
                tg.start_soon(emit)
        got = await fences.collect({c2: ["steady"]})
        assert texts(got[c2]) == list(range(total))
        churner = texts(got[c1])  # whatever came while it was in: each at most once
        assert len(set(churner)) == len(churner) and set(churner) <= set(range(total))
        assert got[a1] == got[b1] == []
