"""End to end: two hypercorn processes sharing one redis-server act as one gateway.

Clients connected to different processes exchange room messages, direct messages and
broadcasts, exactly once each; a ``RedisEmitter`` in the test process reaches them; a
Redis restart in the middle of traffic is survived. Every wait has a timeout.

"Exactly once" is checked with fences: after an action, the test process broadcasts a
fence through Redis; Redis orders it after the action's own publish, so every frame a
client got between two fences belongs to the action in between.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets

from gatewayasgi.client import GatewayClient
from gatewayasgi.emitter import RedisEmitter
from tests import workers
from tests.redis_server import RedisServer, running_redis_server
from tests.workers import Node, stop_node

pytestmark = pytest.mark.anyio

NAMESPACE = "/scale"
WAIT = 5.0
RECOVERY = 10.0

Frame = dict[str, Any]


# -- processes ---------------------------------------------------------------------------


def start_node(name: str, redis_url: str, workdir: Path) -> Node:
    return workers.start_node(name, redis_url, workdir, "tests.apps.scale_app:app", NAMESPACE)


@dataclass
class Cluster:
    redis: RedisServer
    a: Node
    b: Node


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("scale")
    with running_redis_server(workdir) as redis:
        nodes: list[Node] = []
        try:
            nodes = [start_node(name, redis.url, workdir) for name in ("A", "B")]
            yield Cluster(redis, *nodes)
        finally:
            for node in nodes:
                stop_node(node)


# -- clients -------------------------------------------------------------------------------


@dataclass
class Peer:
    """A websocket client: its id, its node, and frames sorted into pushes and replies."""

    ws: Any
    id: str = ""
    node: str = ""
    pushes: list[Frame] = field(default_factory=list)
    replies: dict[int, Frame] = field(default_factory=dict)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if "id" in frame:
                self.replies[frame["id"]] = frame
            else:
                self.pushes.append(frame)
            self.changed.set()
            self.changed = anyio.Event()

    async def until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        with anyio.fail_after(within):
            while not predicate():
                await self.changed.wait()

    async def welcome(self) -> None:
        """Wait for the greeting that tells this client its id and node."""
        await self.until(lambda: bool(self.pushes))
        welcome = self.pushes.pop(0)
        assert welcome["event"] == "welcome", welcome
        self.id, self.node = welcome["data"]["id"], welcome["data"]["node"]

    async def call(self, event: str, data: Any = None) -> Frame:
        """Send a frame with an id and wait for the reply that echoes it."""
        frame_id = next(_ids)
        await self.ws.send(json.dumps({"event": event, "data": data, "id": frame_id}))
        await self.until(lambda: frame_id in self.replies)
        reply = self.replies.pop(frame_id)
        assert reply["event"] != "error", reply
        return reply

    async def take_until_fence(self, tag: str, within: float = WAIT) -> list[Frame]:
        """Pushes received before the fence ``tag`` (which is consumed too)."""

        def is_fence(frame: Frame) -> bool:
            return frame["event"] == "fence" and frame["data"] == tag

        await self.until(lambda: any(is_fence(frame) for frame in self.pushes), within)
        index = next(i for i, frame in enumerate(self.pushes) if is_fence(frame))
        taken, self.pushes[: index + 1] = self.pushes[:index], []
        return taken


_ids = itertools.count(1)


@asynccontextmanager
async def peers(*urls: str) -> AsyncIterator[list[Peer]]:
    """Connect one client per URL; each reads in the background until the block ends."""
    async with anyio.create_task_group() as tg:
        connected: list[Peer] = []
        try:
            for url in urls:
                peer = Peer(await websockets.connect(url, open_timeout=WAIT))
                connected.append(peer)
                tg.start_soon(peer.read)
                await peer.welcome()
            yield connected
        finally:
            with anyio.move_on_after(WAIT, shield=True):
                for peer in connected:
                    await peer.ws.close()
            tg.cancel_scope.cancel()


class Fences:
    """Broadcasts numbered fences through Redis and collects what came before them."""

    def __init__(self, emitter: RedisEmitter, everyone: list[Peer]) -> None:
        self.emitter = emitter
        self.everyone = everyone
        self.count = 0

    async def collect(self) -> dict[str, list[Frame]]:
        """Fence everyone; returns each peer's pushes since the previous fence, by id."""
        self.count += 1
        tag = f"fence-{self.count}"
        await self.emitter.emit("fence", tag)
        return {peer.id: await peer.take_until_fence(tag) for peer in self.everyone}


def gaps(peer: Peer) -> list[Any]:
    """The data of each ``$gap`` frame ``peer`` received."""
    return [frame["data"] for frame in peer.pushes if frame["event"] == "$gap"]


def events(frames: list[Frame]) -> list[tuple[str, Any]]:
    return [(frame["event"], frame["data"].get("text")) for frame in frames]


# -- tests ---------------------------------------------------------------------------------


async def test_rooms_direct_messages_and_broadcasts_cross_processes(cluster: Cluster) -> None:
    a, b = cluster.a.url, cluster.b.url
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(a, a, b, b) as everyone,
    ):
        a1, a2, b1, b2 = everyone
        assert [p.node for p in everyone] == ["A", "A", "B", "B"]
        assert len({p.id for p in everyone}) == 4
        fences = Fences(emitter, everyone)
        for peer in (a1, b1, b2):
            await peer.call("join", {"room": "r"})
        await fences.collect()

        await a1.call("room", {"room": "r", "text": "hello r"})
        got = await fences.collect()
        for peer in (a1, b1, b2):
            assert events(got[peer.id]) == [("room", "hello r")]
        assert got[a2.id] == []

        await b1.call("room_except_me", {"room": "r", "text": "not me"})
        got = await fences.collect()
        assert events(got[a1.id]) == events(got[b2.id]) == [("room", "not me")]
        assert got[b1.id] == got[a2.id] == []

        await a1.call("direct", {"to": b2.id, "text": "psst"})
        await b1.call("direct", {"to": a2.id, "text": "psst back"})
        got = await fences.collect()
        assert events(got[b2.id]) == [("direct", "psst")]
        assert got[b2.id][0]["data"]["from"] == a1.id
        assert events(got[a2.id]) == [("direct", "psst back")]
        assert got[a1.id] == got[b1.id] == []

        await b2.call("broadcast", {"text": "all"})
        got = await fences.collect()
        for peer in everyone:
            assert events(got[peer.id]) == [("broadcast", "all")]

        await a1.call("broadcast_except_me", {"text": "others"})
        got = await fences.collect()
        assert got[a1.id] == []
        for peer in (a2, b1, b2):
            assert events(got[peer.id]) == [("broadcast", "others")]


async def test_redis_emitter_reaches_clients_on_every_process(cluster: Cluster) -> None:
    async with (
        RedisEmitter(cluster.redis.url, namespace=NAMESPACE) as emitter,
        peers(cluster.a.url, cluster.a.url, cluster.b.url, cluster.b.url) as everyone,
    ):
        a1, a2, b1, b2 = everyone
        fences = Fences(emitter, everyone)
        for peer in (a1, b2):
            await peer.call("join", {"room": "workers"})
        await fences.collect()

        await emitter.to("workers").emit("job", {"text": "done"})
        await emitter.to(b1.id).emit("job", {"text": "yours"})
        got = await fences.collect()
        assert events(got[a1.id]) == events(got[b2.id]) == [("job", "done")]
        assert events(got[b1.id]) == [("job", "yours")]
        assert got[a2.id] == []

        await emitter.except_(a2.id, "workers").emit("note", {"text": "some"})
        await emitter.emit("note", {"text": "all"})
        got = await fences.collect()
        assert events(got[b1.id]) == [("note", "some"), ("note", "all")]
        for peer in (a1, a2, b2):
            assert events(got[peer.id]) == [("note", "all")]
        assert emitter.broker.stats.publish_failures == 0


async def test_delivery_resumes_after_a_redis_restart_mid_traffic(cluster: Cluster) -> None:
    async with peers(cluster.a.url, cluster.b.url) as (sender, receiver):
        await sender.call("join", {"room": "live"})
        await receiver.call("join", {"room": "live"})
        sent: list[int] = []
        restarted_at: list[int] = []

        async def traffic() -> None:
            for seq in itertools.count():
                await sender.call("room", {"room": "live", "seq": seq})
                sent.append(seq)
                await anyio.sleep(0.02)

        def seqs(peer: Peer) -> list[int]:
            return [f["data"]["seq"] for f in peer.pushes if f["event"] == "room"]

        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic)
            await receiver.until(lambda: len(seqs(receiver)) >= 5)
            await anyio.to_thread.run_sync(cluster.redis.restart)
            restarted_at.append(len(sent))
            began = time.monotonic()
            # Delivery across processes resumes: a message sent after the restart arrives.
            await receiver.until(
                lambda: any(seq > restarted_at[0] for seq in seqs(receiver)), within=RECOVERY
            )
            recovery = time.monotonic() - began
            tg.cancel_scope.cancel()

        assert recovery < RECOVERY
        # Both processes lost their subscription: each told its client ($gap), once the
        # subscription was back.
        for peer in (sender, receiver):
            await peer.until(lambda p=peer: bool(gaps(p)), within=RECOVERY)
            assert gaps(peer)[0] == {"reason": "backplane"}
        received = seqs(receiver)
        assert len(received) == len(set(received)), "a message crossed the backplane twice"
        assert received == sorted(received)
        # The sender's own process never lost anything: local delivery does not need Redis.
        assert seqs(sender)[: len(sent)] == sent

        # Both directions work again, exactly once.
        await receiver.call("room", {"room": "live", "text": "back"})
        await sender.until(
            lambda: any(f["data"].get("text") == "back" for f in sender.pushes), within=WAIT
        )
        assert sum(f["data"].get("text") == "back" for f in sender.pushes) == 1


async def test_a_cut_broker_subscription_tells_the_clients_it_served_once(
    cluster: Cluster,
) -> None:
    """Redis closes both processes' subscriber connections (``CLIENT KILL TYPE pubsub``,
    as on a failover or a network cut): what was published meanwhile is lost, so each
    process tells its clients with one ``$gap`` once it is subscribed again; then
    delivery across the processes works as before."""
    async with peers(cluster.a.url, cluster.a.url, cluster.b.url) as (a1, a2, b1):
        for peer in (a1, b1):
            await peer.call("join", {"room": "gap"})

        await b1.call("room", {"room": "gap", "text": "before"})
        await a1.until(lambda: any(f["event"] == "room" for f in a1.pushes), within=WAIT)
        assert not any(gaps(peer) for peer in (a1, a2, b1))

        killed = await anyio.to_thread.run_sync(
            cluster.redis.command, "CLIENT", "KILL", "TYPE", "pubsub"
        )
        assert killed == 2, killed  # one subscriber connection per process
        for peer in (a1, a2, b1):  # the namespace's channel was cut: everyone is told
            await peer.until(lambda p=peer: bool(gaps(p)), within=RECOVERY)
        await anyio.sleep(0.5)  # a second $gap would come within this
        assert [gaps(peer) for peer in (a1, a2, b1)] == [[{"reason": "backplane"}]] * 3

        # The $gap came once the subscription was back: what is sent now arrives.
        await b1.call("room", {"room": "gap", "text": "after"})
        await a1.until(lambda: any(f["data"].get("text") == "after" for f in a1.pushes), WAIT)
        await a1.call("room", {"room": "gap", "text": "back"})
        await b1.until(lambda: any(f["data"].get("text") == "back" for f in b1.pushes), WAIT)


async def test_the_python_client_hears_a_gap_and_keeps_its_connection(cluster: Cluster) -> None:
    """``GatewayClient.on_gap``: the ``$gap`` frame becomes a callback with its reason and
    a count; it never reaches ``receive()``, and the connection stays up."""
    heard: list[str] = []
    got = anyio.Event()

    def on_gap(reason: str) -> None:
        heard.append(reason)
        got.set()

    async with GatewayClient(cluster.a.url) as client:
        client.on_gap(on_gap)
        with anyio.fail_after(WAIT):
            welcome = await client.receive()
        assert welcome.event == "welcome"
        await anyio.to_thread.run_sync(cluster.redis.command, "CLIENT", "KILL", "TYPE", "pubsub")
        with anyio.fail_after(RECOVERY):
            await got.wait()
        assert heard == ["backplane"] and client.gaps == 1
        assert client.connected
        with anyio.move_on_after(0.3):
            unexpected = await client.receive()
            raise AssertionError(f"receive() got {unexpected}")
