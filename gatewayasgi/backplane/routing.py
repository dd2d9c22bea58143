"""Interest-based routing: which broker channel a delivery order travels on, and which
channels a node listens to.

In ``"namespace"`` mode (the original one) every order goes to the namespace channel
(``envelope.channel_for``) that every node reads, so a node with no member of room R
still receives, decodes and drops each of R's frames. In ``"interest"`` mode (the
default):

* an order for one room goes to that room's channel (``room_channel``), which a node
  subscribes to while it has a local member there (and a short while after: the
  *linger*, so that a room that empties and fills again costs no command);
* an order for one client goes to that client's channel (``client_channel``), which the
  node holding the client subscribes to while it is connected. A session that resumes
  on another node keeps its id: the new node subscribes, the old one unsubscribes when
  its connection ends, so no node part in the id (and no lookup) is needed;
* an order for several rooms and/or clients goes to each of their channels, up to
  ``Routing.max_split`` of them, each copy carrying the same order number (``o`` in the
  envelope): a node delivers the whole order to its local recipients at the first copy
  it gets and drops the later ones (``duplicates``), so a client in two targeted rooms
  gets the frame once. Past ``max_split`` channels the order goes to the namespace
  channel instead, as in ``"namespace"`` mode; so does a node's order for ``k``
  channels when fewer than ``2k`` other nodes are live (k copies, each read by up to a
  few nodes, would cost more than one copy every node reads). An ``Emitter`` knows no
  node count and splits up to ``max_split``;
* an order for everybody (with or without ``except_``) goes to the namespace channel,
  which every node keeps reading. A node in interest mode therefore also serves orders
  published in namespace mode (an older ``Emitter``), not the other way round.

Excludes travel in the envelope and are applied by each receiving node, as before.
A gateway whose session recovery keeps its history in process memory needs every order
on every node (each keeps its own history of all of them): it is routed in namespace
mode whatever the setting (``Backplane.add(..., every_order=True)``).

The join edge: ``server.join`` returns once the room's channel subscription is
acknowledged by the broker (Redis answers SUBSCRIBE on the subscriber connection), so a
frame published after it returns, from any node, is routed to this node. A cluster join
(``server.in_(x).join(room)``) waits for every live node to report its own clients'
joins done (``ClusterNode`` asks instead of ordering).

The subscribe budget: new subscriptions take a token from a bucket (``subscribe_rate``
per second, ``subscribe_burst`` at once); a join that needs a new channel past it waits
for its token, so a client joining thousands of fresh rooms a second slows its own
joins instead of making its node flood the broker. Unsubscribes are delayed by
``linger`` seconds (a rejoin in between costs nothing) and so never outnumber the
subscribes. Client channels are exempt from the bucket: connections come at the pace
of handshakes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Literal, cast

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.backplane.envelope import CHANNEL_PREFIX, channel_for
from gatewayasgi.brokers.base import Broker
from gatewayasgi.protocol.targets import Targets

logger = logging.getLogger("gatewayasgi")

RoutingMode = Literal["interest", "namespace"]
ROOM_PREFIX = CHANNEL_PREFIX + "room:"
CLIENT_PREFIX = CHANNEL_PREFIX + "client:"
READY_TIMEOUT = 5.0
"""Longest a join waits for its room's subscription (the broker's own wait is shorter)."""
SWEEP_INTERVAL = 0.25
"""How often lingering channels past their time are unsubscribed."""


@dataclass(frozen=True, slots=True)
class Routing:
    """How a backplane routes delivery orders: ``GatewayMiddleware(routing=...)``.

    ``mode``: ``"interest"`` (room and client channels, see the module docstring) or
    ``"namespace"`` (every order on one channel per namespace, read by every node).
    ``subscribe_rate``/``subscribe_burst``: new room subscriptions per second, and at
    once. ``linger``: seconds a channel stays subscribed after its last local member
    left; ``max_lingering``: channels kept lingering at most (the oldest go first).
    ``max_split``: most channels one order is published on; more go to the namespace
    channel.
    """

    mode: RoutingMode = "interest"
    subscribe_rate: float = 2000.0
    subscribe_burst: int = 2000
    linger: float = 2.0
    max_lingering: int = 10_000
    max_split: int = 8

    def __post_init__(self) -> None:
        if self.mode not in ("interest", "namespace"):
            raise ValueError(f"routing mode must be 'interest' or 'namespace', not {self.mode!r}")
        if self.subscribe_rate <= 0 or self.subscribe_burst < 1:
            raise ValueError("subscribe_rate must be positive and subscribe_burst at least 1")
        if self.linger < 0 or self.max_lingering < 0 or self.max_split < 1:
            raise ValueError("linger and max_lingering must be >= 0, max_split >= 1")

    @property
    def interest(self) -> bool:
        """True in interest mode."""
        return self.mode == "interest"


def routing_of(value: Routing | str) -> Routing:
    """``Routing`` from a ``Routing`` or a mode name."""
    if isinstance(value, Routing):
        return value
    if value not in ("interest", "namespace"):
        raise ValueError(f"routing must be 'interest', 'namespace' or a Routing, not {value!r}")
    return Routing(mode=cast(RoutingMode, value))


def _escaped(namespace: str) -> str:
    # A namespace may hold ':' (it is a URL path): escaped, the first ':' after it
    # separates it from the room, so no two (namespace, room) pairs share a channel.
    return namespace.replace("%", "%25").replace(":", "%3A")


def room_channel(namespace: str, room: str) -> str:
    """The channel of one room's orders: ``gatewayasgi:room:<namespace>:<room>``."""
    return f"{ROOM_PREFIX}{_escaped(namespace)}:{room}"


def client_channel(namespace: str, client_id: str) -> str:
    """The channel of one client's orders: ``gatewayasgi:client:<namespace>:<id>``."""
    return f"{CLIENT_PREFIX}{_escaped(namespace)}:{client_id}"


def channels_for(namespace: str, targets: Targets, routing: Routing) -> list[str]:
    """The channels an order for ``targets`` is published on (see the module docstring)."""
    if not routing.interest or not targets:
        return [channel_for(namespace)]
    channels = [room_channel(namespace, room) for room in targets.rooms]
    channels += [client_channel(namespace, client) for client in targets.clients]
    if len(channels) > routing.max_split:
        return [channel_for(namespace)]
    return channels


# -- the receiving side ------------------------------------------------------------------


@dataclass(slots=True)
class RoutingStats:
    """Delivery orders this node received and what became of them, and its channels."""

    received: int = 0
    """Orders from other nodes (or emitters) that arrived, duplicates included."""
    received_broadcast: int = 0
    """... of which on the namespace channel."""
    received_room: int = 0
    """... of which on a room channel."""
    received_client: int = 0
    """... of which on a client channel."""
    dropped: int = 0
    """Orders that reached no local client (not for this node)."""
    duplicates: int = 0
    """Copies of a split order already delivered at an earlier copy."""
    echoes: int = 0
    """This node's own orders coming back (the broker echoes to subscribed publishers)."""
    subscribes: int = 0
    """Room and client channels subscribed."""
    unsubscribes: int = 0
    """Room and client channels unsubscribed."""
    throttled: int = 0
    """Room subscriptions that waited for the subscribe budget."""
    gaps: int = 0
    """Namespace, room and client channels subscribed again after an interruption (what
    was published on them meanwhile may be lost); the local clients they served on
    gateways without recovery were told (``$gap``)."""

    def snapshot(self) -> dict[str, int]:
        """The counters as a dict."""
        return asdict(self)


class Seen:
    """Recently delivered split orders, ``(node, order)``; bounded, oldest forgotten.

    The copies of one order are published back to back, so an order is looked up again
    within a few messages of its first copy; ``size`` entries cover thousands of split
    orders in flight at once.
    """

    __slots__ = ("_keys", "_size")

    def __init__(self, size: int = 4096) -> None:
        self._keys: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._size = size

    def first(self, node: str, order: int) -> bool:
        """True the first time ``(node, order)`` is seen."""
        key = (node, order)
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True


@dataclass(slots=True)
class _Channel:
    """One room or client channel: local members, and whether the broker has it."""

    namespace: str
    kind: str  # "room" or "client"
    name: str  # the room's name, or the client's id
    throttled: bool
    refs: int = 0
    subscribed: bool = False
    running: bool = False
    ready: anyio.Event = field(default_factory=anyio.Event)
    """Set while subscribed (acknowledged); replaced by a fresh one when unsubscribing."""


class _Bucket:
    """A token bucket: ``take`` reserves a token and sleeps until it is due."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    async def take(self) -> bool:
        """Take a token, waiting for it when the bucket is empty; True when it waited."""
        now = anyio.current_time()
        if self._last is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return False
        await anyio.sleep(-self._tokens / self._rate)
        return True


class Subscriptions:
    """The room and client channels of one node: reference counts, subscribe budget and
    linger (see the module docstring). One per ``Backplane``, shared by its namespaces.
    """

    def __init__(self, broker: Broker, routing: Routing) -> None:
        self.broker = broker
        self.routing = routing
        self.stats = RoutingStats()
        self._channels: dict[str, _Channel] = {}
        self._lingering: OrderedDict[str, float] = OrderedDict()  # channel -> deadline
        self._bucket = _Bucket(routing.subscribe_rate, routing.subscribe_burst)
        self._tasks: TaskGroup | None = None

    def target_of(self, channel: str) -> tuple[str, str, str] | None:
        """``(namespace, kind, name)`` of one of this node's room or client channels:
        ``name`` is the room's name or the client's id."""
        entry = self._channels.get(channel)
        return None if entry is None else (entry.namespace, entry.kind, entry.name)

    @property
    def subscribed(self) -> int:
        """Room and client channels subscribed now (lingering ones included)."""
        return sum(1 for entry in self._channels.values() if entry.subscribed)

    @property
    def lingering(self) -> int:
        """Channels without local members still subscribed for a while."""
        return len(self._lingering)

    async def start(self, task_group: TaskGroup) -> None:
        """Subscribe what local members already need, then sweep lingering channels."""
        self._tasks = task_group
        for channel, entry in list(self._channels.items()):
            self._kick(channel, entry)
        task_group.start_soon(self._sweep)

    def close(self) -> None:
        """Stop subscribing (the broker drops every subscription when it closes)."""
        self._tasks = None

    def acquire(self, namespace: str, kind: str, name: str, channel: str) -> None:
        """One more local member needs ``channel`` (of room or client ``name``)."""
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel(namespace, kind, name, kind == "room")
        entry.refs += 1
        # A lingering channel is still subscribed: taking it back costs nothing.
        if entry.refs == 1 and self._lingering.pop(channel, None) is None:
            self._kick(channel, entry)

    def release(self, channel: str) -> None:
        """One local member less; the last one lets the channel linger."""
        entry = self._channels.get(channel)
        if entry is None or entry.refs <= 0:
            return
        entry.refs -= 1
        if entry.refs == 0:
            if self.routing.linger > 0 and self._tasks is not None:
                self._lingering[channel] = anyio.current_time() + self.routing.linger
                if len(self._lingering) > self.routing.max_lingering:
                    oldest, _ = self._lingering.popitem(last=False)
                    self._drop(oldest)
            else:
                self._kick(channel, entry)

    async def ready(self, channel: str) -> None:
        """Return once ``channel`` is subscribed (acknowledged), at most ``READY_TIMEOUT``."""
        entry = self._channels.get(channel)
        if entry is None or self._tasks is None or entry.ready.is_set():
            return
        with anyio.move_on_after(READY_TIMEOUT):
            await entry.ready.wait()

    # -- the broker side ---------------------------------------------------------------

    def _drop(self, channel: str) -> None:
        entry = self._channels.get(channel)
        if entry is not None and entry.refs == 0:
            self._kick(channel, entry)

    def _kick(self, channel: str, entry: _Channel) -> None:
        tasks = self._tasks
        if tasks is not None and not entry.running:
            entry.running = True
            tasks.start_soon(self._drive, channel, entry)

    async def _drive(self, channel: str, entry: _Channel) -> None:
        """Bring the broker in line with ``entry`` (one task per channel at a time)."""
        stats = self.stats
        try:
            while self._tasks is not None:
                wanted = entry.refs > 0 or channel in self._lingering
                if wanted and not entry.subscribed:
                    if entry.throttled and await self._bucket.take():
                        stats.throttled += 1
                        if not (entry.refs > 0 or channel in self._lingering):
                            continue  # the members left while it waited: nothing to do
                    try:
                        await self.broker.subscribe(channel)
                    except Exception:
                        logger.exception("backplane: subscribing %s failed", channel)
                        entry.ready.set()  # joins do not wait for a channel that failed
                        return
                    entry.subscribed = True
                    stats.subscribes += 1
                    entry.ready.set()
                elif not wanted and entry.subscribed:
                    entry.ready = anyio.Event()
                    entry.subscribed = False
                    stats.unsubscribes += 1
                    try:
                        await self.broker.unsubscribe(channel)
                    except Exception:
                        logger.exception("backplane: unsubscribing %s failed", channel)
                else:
                    break
        finally:
            entry.running = False
            idle = entry.refs == 0 and not entry.subscribed and channel not in self._lingering
            if idle and self._channels.get(channel) is entry:
                del self._channels[channel]

    async def _sweep(self) -> None:
        lingering = self._lingering
        while self._tasks is not None:
            await anyio.sleep(SWEEP_INTERVAL)
            now = anyio.current_time()
            while lingering:
                channel, deadline = next(iter(lingering.items()))
                if deadline > now:
                    break
                del lingering[channel]
                self._drop(channel)


class Interest:
    """One namespace's watcher of local membership (``runtime.rooms.RoomWatcher``):
    rooms opening and closing, clients connecting and leaving, become subscriptions."""

    __slots__ = ("_namespace", "_subscriptions")

    def __init__(self, subscriptions: Subscriptions, namespace: str) -> None:
        self._subscriptions = subscriptions
        self._namespace = namespace

    def opened(self, room: str) -> None:
        """``room`` got its first local member."""
        channel = room_channel(self._namespace, room)
        self._subscriptions.acquire(self._namespace, "room", room, channel)

    def closed(self, room: str) -> None:
        """``room``'s last local member left."""
        self._subscriptions.release(room_channel(self._namespace, room))

    async def ready(self, room: str) -> None:
        """Return once ``room``'s channel subscription is acknowledged."""
        await self._subscriptions.ready(room_channel(self._namespace, room))

    def attached(self, client_id: str) -> None:
        """A client connected here."""
        channel = client_channel(self._namespace, client_id)
        self._subscriptions.acquire(self._namespace, "client", client_id, channel)

    async def attached_ready(self, client_id: str) -> None:
        """Return once the channel of a client that connected here is acknowledged."""
        await self._subscriptions.ready(client_channel(self._namespace, client_id))

    def detached(self, client_id: str) -> None:
        """A client's connection here ended."""
        self._subscriptions.release(client_channel(self._namespace, client_id))
