"""Interest routing end to end: hypercorn worker processes sharing one redis-server.

Nodes A, B and C route by interest with the default budget; node D has a small
subscribe budget (50 a second, 10 at once) and no linger. Each test checks deliveries
exactly once with fences (``peers.Fences``) and reads the nodes' routing counters
(``stats``) to assert what each node received. Every wait has a timeout.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from gatewayasgi.backplane.routing import client_channel
from gatewayasgi.emitter import RedisEmitter
from tests import workers
from tests.redis_server import RedisServer, running_redis_server
from tests.routing.peers import WAIT, Fences, Peer, peers, texts
from tests.workers import Node, stop_node

pytestmark = pytest.mark.anyio

NAMESPACE = "/route"
APP = "tests.routing.app:app"
SECRET = "routing tests share this secret"


def start_node(name: str, redis_url: str, workdir: Path, **env: str) -> Node:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return workers.start_node(name, redis_url, workdir, APP, NAMESPACE)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def command_calls(redis: RedisServer, name: str) -> int:
    """How many times Redis ran ``name`` (INFO commandstats)."""
    info = redis.command("INFO", "commandstats")
    text = info.decode() if isinstance(info, bytes) else str(info)
    found = re.search(rf"cmdstat_{name}:calls=(\d+)", text)
    return int(found.group(1)) if found else 0


@dataclass
class Cluster:
    redis: RedisServer
    a: Node
    b: Node
    c: Node
    d: Node


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("routing")
    with running_redis_server(workdir) as redis:
        nodes: list[Node] = []
        try:
            for name in ("A", "B", "C"):
                nodes.append(start_node(name, redis.url, workdir))
            budget = {
                "GATEWAYASGI_TEST_SUBSCRIBE_RATE": "50",
                "GATEWAYASGI_TEST_SUBSCRIBE_BURST": "10",
                "GATEWAYASGI_TEST_LINGER": "0",
            }
            nodes.append(start_node("D", redis.url, workdir, **budget))
            yield Cluster(redis, *nodes)
        finally:
            for node in nodes:
                stop_node(node)


async def subscribed(redis: RedisServer, channel: str) -> None:
    """Wait until some node is subscribed to ``channel``."""
    with anyio.fail_after(WAIT):
        while redis.pubsub_subscribers(channel) == 0:
            await anyio.sleep(0.02)


async def stats(peer: Peer) -> dict[str, Any]:
    counts: dict[str, Any] = await peer.call("stats")
    assert counts["node"] == peer.node
    return counts


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after if key != "node"}


async def test_rooms_direct_messages_broadcasts_and_excludes_exactly_once(
    cluster: Cluster,
) -> None:
    a, b, c = cluster.a.url, cluster.b.url, cluster.c.url
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(a, a, b, b, c) as everyone,
    ):
        a1, a2, b1, b2, c1 = everyone
        assert [p.node for p in everyone] == ["A", "A", "B", "B", "C"]
        fences = Fences(emitter, everyone)
        await a1.call("join", {"rooms": ["r1", "r2"]})
        await b1.call("join", {"rooms": ["r1"]})
        await b2.call("join", {"rooms": ["r2"]})
        await fences.collect()
        c_before = await stats(c1)

        async def check(expected: dict[Peer, list[str]]) -> None:
            got = await fences.collect()
            for peer in everyone:
                assert texts(got[peer.id]) == expected.get(peer, []), (peer.node, got)

        await a2.call("emit", {"to": ["r1"], "text": "r1"})
        await check({a1: ["r1"], b1: ["r1"]})
        # Two rooms: one copy per room channel; a1 (in both) gets it once.
        await a2.call("emit", {"to": ["r1", "r2"], "text": "both"})
        await check({a1: ["both"], b1: ["both"], b2: ["both"]})
        await c1.call("emit", {"to": ["r1", "r2"], "except": [b1.id], "text": "not b1"})
        await check({a1: ["not b1"], b2: ["not b1"]})
        await c1.call("emit", {"to": ["r1", "r2"], "except": ["r1"], "text": "r2 not r1"})
        await check({b2: ["r2 not r1"]})
        await c1.call("emit", {"to": ["r1", b2.id], "text": "room and client"})
        await check({a1: ["room and client"], b1: ["room and client"], b2: ["room and client"]})
        await b1.call("emit", {"to": [c1.id], "text": "direct"})
        await a1.call("emit", {"to": [a2.id], "text": "direct here"})
        await check({c1: ["direct"], a2: ["direct here"]})
        await c1.call("emit", {"except": ["r1"], "text": "all but r1"})
        await check({a2: ["all but r1"], b2: ["all but r1"], c1: ["all but r1"]})
        await a1.call("emit", {"text": "everybody"})
        await check({peer: ["everybody"] for peer in everyone})
        # More rooms than max_split (8): one order on the namespace channel.
        many = ["r1", "r2", *[f"empty-{n}" for n in range(8)]]
        await c1.call("emit", {"to": many, "text": "many"})
        await check({a1: ["many"], b1: ["many"], b2: ["many"]})
        # The Emitter routes the same way.
        await emitter.to("r2").emit("msg", {"text": "emitted"})
        await emitter.to("r1", "r2").except_(a1.id).emit("msg", {"text": "emitted both"})
        await emitter.to(c1.id).emit("msg", {"text": "emitted direct"})
        await check(
            {a1: ["emitted"], b2: ["emitted", "emitted both"], b1: ["emitted both"]}
            | {c1: ["emitted direct"]}
        )

        # C has no member of r1 or r2: it received none of their orders on their
        # channels, only the two addressed to c1, and on the namespace channel the
        # broadcast, the many-room order, A's two-room order (three other nodes are too
        # few to split an order over two channels: one copy for all costs less) and the
        # fences; its own "all but r1" came back as an echo.
        counts = delta(await stats(c1), c_before)
        assert counts["received_room"] == 0, counts
        assert counts["received_client"] == 2, counts
        assert counts["received_broadcast"] == 3 + 9, counts
        assert counts["echoes"] >= 1, counts
        assert counts["duplicates"] == 0, counts


async def test_a_node_without_members_of_a_room_receives_none_of_its_orders(
    cluster: Cluster,
) -> None:
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(cluster.a.url, cluster.b.url, cluster.c.url) as everyone,
    ):
        a1, b1, c1 = everyone
        fences = Fences(emitter, everyone)
        await a1.call("join", {"rooms": ["only-a"]})
        await fences.collect()
        before = {peer.node: await stats(peer) for peer in everyone}
        for n in range(50):
            await b1.call("emit", {"to": ["only-a"], "text": n})
            await emitter.to("only-a").emit("msg", {"text": -n})
        got = await fences.collect()
        assert len(got[a1.id]) == 100 and got[b1.id] == got[c1.id] == []
        after = {peer.node: delta(await stats(peer), before[peer.node]) for peer in everyone}
        assert after["A"]["received_room"] == 100 and after["A"]["dropped"] == 0
        for node in ("B", "C"):
            assert after[node]["received"] == 1, after  # the fence, nothing else
            assert after[node]["received_room"] == 0, after


async def test_a_frame_emitted_right_after_a_join_arrives(cluster: Cluster) -> None:
    """The join edge, locally and through the cluster, on fresh and on reused rooms."""
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(cluster.a.url, cluster.b.url, cluster.d.url) as everyone,
    ):
        a1, b1, d1 = everyone
        fences = Fences(emitter, everyone)
        # A client's own join: fresh rooms, then one room over and over (D has no
        # linger: each leave unsubscribes, each join subscribes again).
        for member, rooms in ((b1, [f"fresh-{n}" for n in range(60)]), (d1, ["again"] * 40)):
            for n, room in enumerate(rooms):
                await member.call("join", {"rooms": [room]})
                await a1.call("emit", {"to": [room], "text": n})
                # Leave only once it arrived: a leave that overtakes a frame still in
                # flight from Redis drops it, in any routing (the edge under test is
                # the join's).
                await member.until(lambda m=member, n=n: n in texts(m.pushes))
                await member.call("leave", {"rooms": [room]})
            got = await fences.collect()
            assert texts(got[member.id]) == list(range(len(rooms)))
        # Joins made by another node (server.in_(id).join(room)), then an emit at once.
        for n in range(40):
            await a1.call("join_then_emit", {"who": b1.id, "room": f"pulled-{n}", "text": n})
            await a1.call("join_then_emit", {"who": d1.id, "room": f"pulled-d{n}", "text": n})
        got = await fences.collect()
        assert texts(got[b1.id]) == list(range(40))
        assert texts(got[d1.id]) == list(range(40))


def test_rooms_map_to_channels_and_back(cluster: Cluster) -> None:
    """The room channel exists on Redis while a node has members (sanity of names)."""
    assert cluster.redis.pubsub_subscribers("gatewayasgi:/route") == 4


async def test_the_subscribe_budget_and_the_linger(cluster: Cluster) -> None:
    async with peers(cluster.c.url, cluster.d.url) as (c1, d1):
        for peer in (c1, d1):  # their own channels, subscribed in the background
            await subscribed(cluster.redis, client_channel(NAMESPACE, peer.id))
        # D subscribes at most 50 channels a second (10 at once): 100 fresh rooms take
        # about (100 - 10) / 50 = 1.8 s, and one SUBSCRIBE each.
        subscribes = command_calls(cluster.redis, "subscribe")
        began = time.monotonic()
        await d1.call("join", {"rooms": [f"budget-{n}" for n in range(100)]}, within=20.0)
        elapsed = time.monotonic() - began
        assert elapsed >= 1.5, elapsed
        assert command_calls(cluster.redis, "subscribe") - subscribes == 100
        counts = await stats(d1)
        assert counts["throttled"] >= 80, counts
        assert cluster.redis.pubsub_subscribers("gatewayasgi:room:/route:budget-7") == 1
        # C lingers 2 s: joining and leaving 5 rooms 400 times costs 5 SUBSCRIBEs.
        subscribes = command_calls(cluster.redis, "subscribe")
        before = await stats(c1)
        seconds = await c1.call("churn", {"rooms": [f"churn-{n}" for n in range(5)], "times": 400})
        assert command_calls(cluster.redis, "subscribe") - subscribes == 5
        counts = delta(await stats(c1), before)
        assert (counts["subscribes"], counts["unsubscribes"]) == (5, 0), counts
        assert seconds < 5.0
        assert (await stats(c1))["lingering"] >= 5


async def test_signed_nodes_route_by_interest(tmp_path: Path) -> None:
    """With ``secret=``, room and client channels are signed and checked like the rest."""
    with running_redis_server(tmp_path) as redis:
        secret = {"GATEWAYASGI_TEST_SECRET": SECRET}
        nodes = [start_node(name, redis.url, tmp_path, **secret) for name in ("S1", "S2")]
        try:
            async with (
                RedisEmitter(redis.url, namespace=NAMESPACE, secret=SECRET) as emitter,
                RedisEmitter(redis.url, namespace=NAMESPACE) as unsigned,
                peers(nodes[0].url, nodes[1].url) as everyone,
            ):
                s1, s2 = everyone
                fences = Fences(emitter, everyone)
                await s2.call("join", {"rooms": ["signed"]})
                await s1.call("emit", {"to": ["signed"], "text": "room"})
                await s1.call("emit", {"to": [s2.id], "text": "direct"})
                await emitter.to("signed").emit("msg", {"text": "emitted"})
                await unsigned.to("signed").emit("msg", {"text": "forged"})
                await unsigned.to(s2.id).emit("msg", {"text": "forged"})
                got = await fences.collect()
                assert texts(got[s2.id]) == ["room", "direct", "emitted"]
                assert got[s1.id] == []
        finally:
            for node in nodes:
                stop_node(node)


async def test_namespace_routing_is_still_selectable(tmp_path: Path) -> None:
    """``routing="namespace"``: every order on the namespace channel, read by every node."""
    with running_redis_server(tmp_path) as redis:
        mode = {"GATEWAYASGI_TEST_ROUTING": "namespace"}
        nodes = [start_node(name, redis.url, tmp_path, **mode) for name in ("N1", "N2", "N3")]
        try:
            async with (
                RedisEmitter(redis.url, namespace=NAMESPACE, routing="namespace") as emitter,
                peers(*(node.url for node in nodes)) as everyone,
            ):
                n1, n2, n3 = everyone
                fences = Fences(emitter, everyone)
                await n2.call("join", {"rooms": ["r", "s"]})
                await fences.collect()
                before = await stats(n3)
                await n1.call("emit", {"to": ["r", "s"], "text": "both"})
                await n1.call("emit", {"to": [n2.id], "text": "direct"})
                await emitter.to("r").emit("msg", {"text": "emitted"})
                got = await fences.collect()
                assert texts(got[n2.id]) == ["both", "direct", "emitted"]
                assert got[n1.id] == got[n3.id] == []
                counts = delta(await stats(n3), before)
                # n3 has no member of r or s and is not n2: it received and dropped all three.
                assert counts["received_broadcast"] == 3 + 1 and counts["dropped"] == 3, counts
                assert counts["subscribes"] == 0 and counts["received_room"] == 0, counts
                assert redis.pubsub_subscribers("gatewayasgi:room:/route:r") == 0
        finally:
            for node in nodes:
                stop_node(node)


async def test_a_steady_member_loses_nothing_while_others_churn(cluster: Cluster) -> None:
    """On D (no linger, small budget) one client joins and leaves the steady member's
    room and fresh ones over and over while another node emits to the room."""
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(cluster.a.url, cluster.d.url, cluster.d.url) as everyone,
    ):
        sender, steady, churner = everyone
        fences = Fences(emitter, everyone)
        await steady.call("join", {"rooms": ["steady"]})

        async def churn() -> None:
            for n in range(100):
                await churner.call("join", {"rooms": ["steady", f"churn-d{n % 7}"]})
                await churner.call("leave", {"rooms": ["steady", f"churn-d{n % 7}"]})

        async def emit() -> None:
            for n in range(150):
                await sender.call("emit", {"to": ["steady"], "text": n})

        async with anyio.create_task_group() as tg:
            tg.start_soon(churn)
            tg.start_soon(emit)
        got = await fences.collect()
        assert texts(got[steady.id]) == list(range(150))
        assert got[sender.id] == []
