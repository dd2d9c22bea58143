"""Interest routing in one process: channel names, the routing choice, the envelope's
order number, the subscription counts, linger and budget (``backplane.routing``)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from gatewayasgi import GatewayMiddleware
from gatewayasgi.backplane.envelope import Envelope, EnvelopeError, channel_for, pack, unpack
from gatewayasgi.backplane.node import GAP_SETTLE, Backplane
from gatewayasgi.backplane.routing import (
    Routing,
    Seen,
    Subscriptions,
    channels_for,
    client_channel,
    room_channel,
    routing_of,
)
from gatewayasgi.brokers import MemoryBroker
from gatewayasgi.brokers.memory import MemoryHub
from gatewayasgi.emitter import Emitter
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.protocol.targets import NOBODY, Targets, new_client_id

pytestmark = pytest.mark.anyio

WAIT = 5.0
INTEREST = Routing()


def test_room_and_client_channels_never_collide() -> None:
    pairs = [("/a:b", "c"), ("/a", "b:c"), ("/a%3Ab", "c"), ("/a", "b"), ("/a:", "b")]
    channels = {room_channel(ns, room) for ns, room in pairs}
    assert len(channels) == len(pairs)
    client = new_client_id()
    assert client_channel("/chat", client) == f"gatewayasgi:client:/chat:{client}"
    assert room_channel("/chat", "lobby") == "gatewayasgi:room:/chat:lobby"
    assert room_channel("/chat", client) != client_channel("/chat", client)
    assert channel_for("/chat") not in channels


def test_channels_for_an_order() -> None:
    client = new_client_id()
    assert channels_for("/n", NOBODY, INTEREST) == ["gatewayasgi:/n"]
    assert channels_for("/n", Targets(("r",)), INTEREST) == [room_channel("/n", "r")]
    assert channels_for("/n", Targets(("r", "s"), (client,)), INTEREST) == [
        room_channel("/n", "r"),
        room_channel("/n", "s"),
        client_channel("/n", client),
    ]
    many = Targets(tuple(f"r{n}" for n in range(9)))
    assert channels_for("/n", many, INTEREST) == ["gatewayasgi:/n"]
    assert channels_for("/n", Targets(("r",)), routing_of("namespace")) == ["gatewayasgi:/n"]


def test_routing_is_checked() -> None:
    with pytest.raises(ValueError):
        routing_of("rooms")
    with pytest.raises(ValueError):
        Routing(subscribe_rate=0)
    with pytest.raises(ConfigurationError, match="routing"):
        GatewayMiddleware(gateways=[], routing="everything")


def test_the_order_number_travels_in_the_envelope() -> None:
    envelope = Envelope("node", '{"event":"e"}', Targets(("r", "s")), NOBODY, order=7)
    assert unpack(pack(envelope), 1 << 20) == envelope
    once = Envelope("node", "{}", Targets(("r",)))
    assert b'"o"' not in pack(once)
    with pytest.raises(EnvelopeError, match="'o'"):
        unpack(b'{"n":"x","k":"to","r":["r"],"o":"7"}\n{}', 1 << 20)


def test_seen_drops_later_copies_and_stays_bounded() -> None:
    seen = Seen(size=3)
    assert seen.first("a", 1) and not seen.first("a", 1)
    assert seen.first("b", 1)
    for n in range(2, 6):
        assert seen.first("a", n)
    assert seen.first("a", 1)  # forgotten: the oldest went first


class Recorder(MemoryBroker):
    """A memory broker that records subscribe and unsubscribe calls."""

    def __init__(self) -> None:
        super().__init__(MemoryHub())
        self.calls: list[tuple[str, str]] = []
        self.delay = 0.0
        """Seconds each unsubscribe takes on the wire."""

    async def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))
        await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))
        await anyio.sleep(self.delay)
        await super().unsubscribe(channel)


class Gappy(Recorder):
    """A recorder whose test reports gaps as a broker would after a reconnect."""

    def __init__(self) -> None:
        super().__init__()
        self.report: Any = None

    def on_gap(self, handler: Any) -> None:
        self.report = handler


async def test_gaps_tell_each_namespace_its_clients_concerned_once() -> None:
    """Channels the broker subscribed again become, per namespace, the targets of one
    ``$gap``: the namespace channel is everyone; room and client channels, those rooms
    and clients; reports within ``GAP_SETTLE`` are one; unknown channels are ignored."""
    broker = Gappy()
    backplane = Backplane(broker, max_envelope_size=65536)
    told: dict[str, list[Targets]] = {"/a": [], "/b": []}
    for namespace, tell in told.items():
        backplane.add(namespace, lambda *_: 0, on_gap=tell.append)
    client = new_client_id()
    async with anyio.create_task_group() as tg:
        await backplane.start(tg)
        interest = backplane.interest("/a")
        assert interest is not None
        interest.opened("r1")
        interest.opened("r2")
        interest.attached(client)
        await interest.ready("r2")
        broker.report([room_channel("/a", "r1"), "gatewayasgi:node:unknown"])
        broker.report([client_channel("/a", client)])
        await wait_for(lambda: told["/a"])
        await anyio.sleep(2 * GAP_SETTLE)
        assert told == {"/a": [Targets(("r1",), (client,))], "/b": []}
        broker.report([channel_for("/b"), room_channel("/a", "r2")])
        await wait_for(lambda: told["/b"])
        assert told == {"/a": [Targets(("r1",), (client,)), Targets(("r2",))], "/b": [Targets()]}
        assert backplane.stats.gaps == 4
        await backplane.close()
        tg.cancel_scope.cancel()


async def wait_for(predicate: object, within: float = WAIT) -> None:
    with anyio.fail_after(within):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_linger_keeps_a_channel_for_a_rejoin_then_unsubscribes() -> None:
    broker = Recorder()
    subscriptions = Subscriptions(broker, Routing(linger=0.3))
    async with anyio.create_task_group() as tg:
        await subscriptions.start(tg)
        channel = room_channel("/n", "r")
        for _ in range(100):  # join, ready, leave: one subscribe in all
            subscriptions.acquire("/n", "room", "r", channel)
            await subscriptions.ready(channel)
            subscriptions.release(channel)
        assert broker.calls == [("subscribe", channel)]
        assert subscriptions.lingering == 1 and subscriptions.subscribed == 1
        assert subscriptions.target_of(channel) == ("/n", "room", "r")
        await wait_for(lambda: subscriptions.subscribed == 0)
        assert broker.calls == [("subscribe", channel), ("unsubscribe", channel)]
        assert subscriptions.target_of(channel) is None
        assert subscriptions.stats.subscribes == subscriptions.stats.unsubscribes == 1
        subscriptions.close()
        tg.cancel_scope.cancel()


async def test_the_bucket_paces_new_room_subscriptions_not_client_ones() -> None:
    broker = Recorder()
    subscriptions = Subscriptions(broker, Routing(subscribe_rate=100, subscribe_burst=5))
    async with anyio.create_task_group() as tg:
        await subscriptions.start(tg)
        began = time.monotonic()
        for _ in range(10):
            client = new_client_id()
            subscriptions.acquire("/n", "client", client, client_channel("/n", client))
        assert time.monotonic() - began < 0.05
        for n in range(25):
            channel = room_channel("/n", f"r{n}")
            subscriptions.acquire("/n", "room", f"r{n}", channel)
            await subscriptions.ready(channel)
        assert time.monotonic() - began >= 0.15  # 20 past the burst, at 100 a second
        assert subscriptions.stats.throttled >= 15
        await wait_for(lambda: subscriptions.subscribed == 35)
        subscriptions.close()
        tg.cancel_scope.cancel()


async def test_max_lingering_unsubscribes_the_oldest_first() -> None:
    broker = Recorder()
    subscriptions = Subscriptions(broker, Routing(linger=60, max_lingering=2))
    async with anyio.create_task_group() as tg:
        await subscriptions.start(tg)
        channels = [room_channel("/n", f"r{n}") for n in range(3)]
        for channel in channels:
            subscriptions.acquire("/n", "room", "r", channel)
            await subscriptions.ready(channel)
        for channel in channels:
            subscriptions.release(channel)
        await wait_for(lambda: ("unsubscribe", channels[0]) in broker.calls)
        assert subscriptions.lingering == 2 and subscriptions.subscribed == 2
        subscriptions.close()
        tg.cancel_scope.cancel()


async def test_a_join_during_an_unsubscribe_subscribes_again() -> None:
    broker = Recorder()
    subscriptions = Subscriptions(broker, Routing(linger=0))
    async with anyio.create_task_group() as tg:
        await subscriptions.start(tg)
        channel = room_channel("/n", "r")
        subscriptions.acquire("/n", "room", "r", channel)
        await subscriptions.ready(channel)
        subscriptions.release(channel)
        subscriptions.acquire("/n", "room", "r", channel)  # before the unsubscribe started
        await subscriptions.ready(channel)
        await anyio.sleep(0.05)
        assert [call for call, _ in broker.calls] == ["subscribe"]
        broker.delay = 0.2
        subscriptions.release(channel)  # no linger: unsubscribes now...
        await wait_for(lambda: len(broker.calls) == 2)
        subscriptions.acquire("/n", "room", "r", channel)  # ...and a join comes meanwhile
        assert subscriptions.subscribed == 0
        await subscriptions.ready(channel)  # waits for the subscription after it
        assert [call for call, _ in broker.calls] == ["subscribe", "unsubscribe", "subscribe"]
        assert subscriptions.subscribed == 1
        subscriptions.close()
        tg.cancel_scope.cancel()


class Listener:
    def __init__(self) -> None:
        self.got: list[tuple[str, Envelope]] = []

    def on_message(self, channel: str, data: bytes) -> None:
        self.got.append((channel, unpack(data, 1 << 20)))


async def test_the_emitter_publishes_on_room_and_client_channels() -> None:
    hub = MemoryHub()
    listener, broker = Listener(), MemoryBroker(hub)
    client = new_client_id()
    async with anyio.create_task_group() as tg:
        await broker.start(listener.on_message, tg)
        channels = [room_channel("/ws", "a"), room_channel("/ws", "b")]
        channels += [client_channel("/ws", client), channel_for("/ws")]
        for channel in channels:
            await broker.subscribe(channel)
        emitter = Emitter(MemoryBroker(hub))
        await emitter.to("a").emit("one")
        await emitter.to("a", "b", client).except_("c").emit("split")
        await emitter.emit("all")
        assert [channel for channel, _ in listener.got] == [channels[0], *channels]
        single, *split, everyone = (envelope for _, envelope in listener.got)
        assert single.order is None and everyone.order is None
        assert {envelope.order for envelope in split} == {1}
        assert split[0].exclude == Targets(("c",))
        await broker.close()


class Node:
    """A backplane on a memory hub, with a deliver that records what it was given."""

    def __init__(self, hub: MemoryHub, *, every_order: bool = False, members: int = 1) -> None:
        from gatewayasgi.backplane.node import Backplane

        self.backplane = Backplane(MemoryBroker(hub), max_envelope_size=1 << 20)
        self.backplane.add("/n", self.deliver, every_order=every_order)
        self.backplane.cluster.serve("/n", self.respond)  # heartbeats: peers know it
        self.got: list[tuple[str, Targets]] = []
        self.members = members

    async def respond(self, request: object, *, busy: bool = False) -> list[Any]:
        return []

    def deliver(self, frame: object, targets: Targets, exclude: Targets) -> int:
        self.got.append((str(frame), targets))
        return self.members


async def test_an_order_for_two_rooms_is_delivered_once_by_a_node_in_both() -> None:
    hub = MemoryHub()
    member, outsider = Node(hub), Node(hub, members=0)
    async with anyio.create_task_group() as tg:
        for node in (member, outsider):
            await node.backplane.start(tg)
        interest = member.backplane.interest("/n")
        assert interest is not None
        interest.opened("a")
        interest.opened("b")
        await interest.ready("a")
        await interest.ready("b")
        emitter = Emitter(MemoryBroker(hub), namespace="/n")  # splits up to max_split
        await emitter.to("a", "b").emit("e")
        await emitter.to("a").emit("e")
        await emitter.emit("e")
        assert [targets for _, targets in member.got] == [
            Targets(("a", "b")),
            Targets(("a",)),
            NOBODY,
        ]
        stats = member.backplane.stats
        assert (stats.received, stats.duplicates, stats.dropped) == (4, 1, 0)
        assert (stats.received_room, stats.received_broadcast) == (3, 1)
        # The outsider has no member of a or b: it got the broadcast only, for nobody.
        assert [targets for _, targets in outsider.got] == [NOBODY]
        assert (outsider.backplane.stats.received, outsider.backplane.stats.dropped) == (1, 1)
        for node in (member, outsider):
            await node.backplane.close()
        tg.cancel_scope.cancel()


async def test_a_node_splits_an_order_only_when_enough_other_nodes_are_live() -> None:
    hub = MemoryHub()
    sender, member, *others = (Node(hub) for _ in range(6))
    async with anyio.create_task_group() as tg:
        await sender.backplane.start(tg)
        await member.backplane.start(tg)
        interest = member.backplane.interest("/n")
        assert interest is not None
        interest.opened("a")
        interest.opened("b")
        await wait_for(lambda: sender.backplane._peer_count("/n") == 1)
        # One other node: two copies would cost more than one on the namespace channel.
        await sender.backplane.publish("/n", "{}", Targets(("a", "b")), NOBODY)
        assert member.backplane.stats.received_broadcast == 1
        for node in others:
            await node.backplane.start(tg)
        await wait_for(lambda: sender.backplane._peer_count("/n") == 5)
        # Five: each copy reaches the nodes with members (here one), not all five.
        await sender.backplane.publish("/n", "{}", Targets(("a", "b")), NOBODY)
        stats = member.backplane.stats
        assert (stats.received_room, stats.duplicates) == (2, 1)
        assert all(node.backplane.stats.received == 0 for node in others)
        assert len(member.got) == 2
        for node in (sender, member, *others):
            await node.backplane.close()
        tg.cancel_scope.cancel()


async def test_a_namespace_that_needs_every_order_is_routed_by_namespace() -> None:
    hub = MemoryHub()
    sender, other = Node(hub, every_order=True), Node(hub, every_order=True)
    async with anyio.create_task_group() as tg:
        for node in (sender, other):
            await node.backplane.start(tg)
        assert other.backplane.interest("/n") is None
        await sender.backplane.publish("/n", "{}", Targets(("a",)), NOBODY)
        assert other.got == [("{}", Targets(("a",)))]
        assert other.backplane.stats.received_broadcast == 1
        for node in (sender, other):
            await node.backplane.close()
        tg.cancel_scope.cancel()
