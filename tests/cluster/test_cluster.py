"""Presence and cluster-wide operations across two hypercorn worker processes on Redis.

Clients connect to workers A and B; a client on one worker asks its gateway for
presence, fetches, room moves, disconnects and room calls that must reach the other
worker's clients too. A ``RedisEmitter`` in the test process gives orders as well. The
last test kills a third worker with SIGKILL. Every wait has a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from gatewayasgi.backplane.cluster import PRUNE_INTERVAL
from gatewayasgi.backplane.peers import LIVENESS_TIMEOUT
from gatewayasgi.emitter import RedisEmitter
from gatewayasgi.runtime.operations import REPLY_GRACE
from tests.cluster.app import NAMESPACE
from tests.cluster.nodes import Peer, eventually, peers, start_node
from tests.redis_server import RedisServer, running_redis_server
from tests.workers import Node, stop_node

pytestmark = pytest.mark.anyio

SLACK = 3.0
"""Seconds of scheduling noise allowed on top of a documented bound (a busy 2-core box)."""


@dataclass
class Cluster:
    redis: RedisServer
    a: Node
    b: Node
    workdir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    with running_redis_server(workdir) as redis:
        nodes: list[Node] = []
        try:
            nodes = [start_node(name, redis.url, workdir) for name in ("A", "B")]
            yield Cluster(redis, nodes[0], nodes[1], workdir)
        finally:
            for node in nodes:
                stop_node(node)


async def presence(via: Peer, room: str) -> dict[str, object]:
    result = await via.request("presence", {"room": room})
    assert isinstance(result, dict)
    return result


async def until_members(via: Peer, room: str, members: list[Peer]) -> None:
    """Wait until ``via``'s worker sees exactly ``members`` in ``room`` (workers met)."""
    expected = sorted(peer.id for peer in members)
    await eventually(lambda: _is(presence(via, room), expected))


async def _is(found: object, expected: list[str]) -> bool:
    result = await found  # type: ignore[misc]
    return bool(result["ids"] == expected)


async def test_presence_lists_a_rooms_clients_on_every_worker(cluster: Cluster) -> None:
    a, b = cluster.a.url, cluster.b.url
    async with peers(a, b, b, a) as (a1, b1, b2, a2):
        assert [p.node for p in (a1, b1, b2, a2)] == ["A", "B", "B", "A"]
        for peer in (a1, b1, b2):
            assert (await peer.request("join", {"room": "lobby"}))["room"] == "lobby"
        await until_members(a2, "lobby", [a1, b1, b2])
        for via in (a2, b1):
            found = await presence(via, "lobby")
            assert found == {
                "ids": sorted([a1.id, b1.id, b2.id]),
                "count": 3,
                "missing": 0,
            }
        await b2.ws.close()
        await until_members(a2, "lobby", [a1, b1])
        assert await presence(a2, "nobody-here") == {"ids": [], "count": 0, "missing": 0}


async def test_room_call_gathers_answers_from_both_workers_and_lists_the_silent_client(
    cluster: Cluster,
) -> None:
    a, b = cluster.a.url, cluster.b.url
    async with peers(a, b, b, a, silent=(2,)) as (a1, b1, quiet, controller):
        for peer in (a1, b1, quiet):
            await peer.request("join", {"room": "callers"})
        await until_members(controller, "callers", [a1, b1, quiet])
        began = time.monotonic()
        results = await controller.request(
            "call_room", {"room": "callers", "event": "ping", "data": 7, "timeout": 1.0}
        )
        elapsed = time.monotonic() - began
        assert results == {
            "answers": {
                a1.id: {"echo": 7, "by": a1.id},
                b1.id: {"echo": 7, "by": b1.id},
            },
            "errors": {},
            "timed_out": [quiet.id],
            "missing_nodes": 0,
            "complete": False,
        }
        assert [call["event"] for call in quiet.calls] == ["ping"]  # it was asked
        assert 1.0 <= elapsed < 1.0 + REPLY_GRACE + SLACK
        assert controller.calls == []  # not in the room: not called


async def test_fetch_join_leave_and_disconnect_reach_the_other_worker(cluster: Cluster) -> None:
    a, b = cluster.a.url, cluster.b.url
    async with peers(a, b, b, a) as (a1, b1, b2, controller):
        for peer in (a1, b1):
            await peer.request("join", {"room": "src"})
        await until_members(controller, "src", [a1, b1])
        assert await b2.request("fetch", {"room": "src"}) == sorted([a1.id, b1.id])

        await controller.request("move", {"room": "src", "to": "dst", "how": "join"})
        expected = sorted([a1.id, b1.id])
        await eventually(lambda: _fetched(b2, "dst", expected))
        await controller.request("say", {"room": "dst", "text": "moved"})
        await a1.until(lambda: a1.heard("said") == ["moved"])
        await b1.until(lambda: b1.heard("said") == ["moved"])

        await controller.request("move", {"room": "src", "to": "dst", "how": "leave"})
        await eventually(lambda: _fetched(b2, "dst", []))

        await controller.request("kick", {"target": b2.id, "code": 4001})
        await b2.until(lambda: b2.closed)
        assert b2.close_code == 4001
        await controller.request("kick", {"target": "src", "code": 4000})
        await a1.until(lambda: a1.closed)
        await b1.until(lambda: b1.closed)
        assert (a1.close_code, b1.close_code) == (4000, 4000)
        assert not controller.closed
        assert await controller.request("fetch", {"room": "src"}) == []


async def _fetched(via: Peer, room: str, expected: list[str]) -> bool:
    return bool(await via.request("fetch", {"room": room}) == expected)


async def test_emitter_makes_clients_join_leave_and_disconnect(cluster: Cluster) -> None:
    a, b = cluster.a.url, cluster.b.url
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(a, b, a) as (a1, b1, controller),
    ):
        for peer in (a1, b1):
            await peer.request("join", {"room": "e1"})
        await until_members(controller, "e1", [a1, b1])
        await emitter.to("e1").join("e2")
        await until_members(controller, "e2", [a1, b1])
        await emitter.to(b1.id).leave("e2")
        await until_members(controller, "e2", [a1])
        with pytest.raises(ValueError):
            await emitter.to("e1").join(a1.id)  # a client id is no room name

        await emitter.in_("e1").except_(a1.id).disconnect(4002, "bye")
        await b1.until(lambda: b1.closed)
        assert b1.close_code == 4002
        await controller.request("say", {"room": "e1", "text": "still here"})
        await a1.until(lambda: a1.heard("said") == ["still here"])
        assert not a1.closed
        assert emitter.broker.stats.publish_failures == 0


async def test_a_killed_workers_members_leave_presence_within_the_bound(
    tmp_path: Path,
) -> None:
    with running_redis_server(tmp_path) as redis:
        survivor = start_node("S", redis.url, tmp_path)
        doomed = start_node("D", redis.url, tmp_path)
        try:
            async with peers(survivor.url, doomed.url, doomed.url, survivor.url) as everyone:
                s1, d1, d2, controller = everyone
                for peer in (s1, d1, d2):
                    await peer.request("join", {"room": "k"})
                await until_members(controller, "k", [s1, d1, d2])

                await anyio.to_thread.run_sync(doomed.kill)
                killed = time.monotonic()
                # The first request may wait for the dead worker until it stops being
                # live; its members are never in an answer.
                found = await presence(controller, "k")
                waited = time.monotonic() - killed
                assert found == {"ids": [s1.id], "count": 1, "missing": 0}
                assert waited < LIVENESS_TIMEOUT + PRUNE_INTERVAL + SLACK
                # From then on the dead worker is not waited for at all.
                began = time.monotonic()
                assert (await presence(controller, "k"))["ids"] == [s1.id]
                assert time.monotonic() - began < 1.0 + SLACK / 3
                # The survivor's clients are unaffected: emits still reach them.
                await controller.request("say", {"room": "k", "text": "after the kill"})
                await s1.until(lambda: s1.heard("said") == ["after the kill"])
                results = await controller.request(
                    "call_room", {"room": "k", "event": "ping", "data": 1, "timeout": 1.0}
                )
                assert list(results["answers"]) == [s1.id]
                assert results["missing_nodes"] == 0
        finally:
            stop_node(survivor)
            stop_node(doomed)
