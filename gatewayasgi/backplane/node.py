"""One middleware's place on the backplane: publish delivery orders, serve received ones.

Every gateway namespace has a broker channel (``envelope.channel_for``); in interest
mode (the default, ``backplane.routing``) every room and client has one too, which a
node reads while it has local members there. A node (one ``GatewayMiddleware`` in one
process) publishes an envelope for each emit after serving its own clients, on the
channels ``routing.channels_for`` picks, and serves the envelopes of other nodes to its
local clients. Its own echoes (Redis delivers a publisher's messages back to it) are
recognised by node id; the copies of an order published on several channels, by its
order number (``routing.Seen``).

Gaps: when the broker reports channels subscribed again after an interruption
(``Broker.on_gap``), what was published on them meanwhile is lost. The node gathers the
reports of ``GAP_SETTLE`` seconds and hands each namespace's gap handler the local
clients concerned, as targets: every client (the namespace channel), the rooms and the
clients whose channels were cut. A client in several of them is told once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from time import monotonic

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.backplane.cluster import ClusterNode
from gatewayasgi.backplane.envelope import Envelope, EnvelopeError, channel_for, pack, unpack
from gatewayasgi.backplane.routing import (
    Interest,
    Routing,
    RoutingStats,
    Seen,
    Subscriptions,
    channels_for,
    routing_of,
)
from gatewayasgi.brokers.base import Broker
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.protocol.base import Payload
from gatewayasgi.protocol.targets import Targets

logger = logging.getLogger("gatewayasgi")

Deliver = Callable[[Payload, Targets, Targets], int]
"""A gateway server's local fan-out."""
OnGap = Callable[[Targets], object]
"""Tells a namespace's local clients in ``targets`` (empty: all of them) that frames
for them may have been lost."""
GAP_SETTLE = 0.05
"""Seconds a first gap report waits for the others of the same reconnection."""


class Backplane:
    """Connects the gateway servers of one middleware to a ``Broker``."""

    def __init__(
        self,
        broker: Broker,
        *,
        max_envelope_size: int,
        metrics: Instrumentation | None = None,
        routing: Routing | str = "interest",
    ) -> None:
        self.broker = broker
        self.node_id = uuid.uuid4().hex
        self.publish_failures = 0
        self.routing = routing_of(routing)
        self._max_envelope = max_envelope_size
        self._metrics = metrics
        self._routes: dict[str, tuple[str, Deliver]] = {}  # channel -> (namespace, deliver)
        self._delivers: dict[str, Deliver] = {}  # namespace -> deliver
        self._every_order: set[str] = set()  # namespaces routed in namespace mode
        self._gap_handlers: dict[str, OnGap] = {}  # namespace -> its clients are told
        self._gapped: set[str] = set()  # channels reported, not handled yet
        self._tasks: TaskGroup | None = None
        self._live = False
        self._orders = 0
        self._seen = Seen()
        self.subscriptions = Subscriptions(broker, self.routing)
        """Room and client channels this node reads (interest routing)."""
        self.cluster = ClusterNode(
            broker,
            self.node_id,
            max_message_size=max_envelope_size,
            # A join made here for a client of another node returns once that node has
            # applied it, whatever the routing: an emit right after it reaches the client.
            acknowledge_joins=True,
        )
        """Cluster requests (presence, fetch, join/leave, disconnect, calls) and heartbeats."""

    @property
    def stats(self) -> RoutingStats:
        """Orders received, dropped as not for this node, duplicates; channels."""
        return self.subscriptions.stats

    def add(
        self,
        namespace: str,
        deliver: Deliver,
        *,
        every_order: bool = False,
        on_gap: OnGap | None = None,
    ) -> None:
        """Route envelopes of ``namespace`` to ``deliver`` (before ``start``).

        ``every_order``: every node must see every order of the namespace (it keeps its
        own history of them: session recovery in process memory), so the namespace is
        routed in namespace mode whatever ``routing`` says. ``on_gap``: told which local
        clients may have missed orders (see the module docstring).
        """
        self._routes[channel_for(namespace)] = (namespace, deliver)
        self._delivers[namespace] = deliver
        if every_order:
            self._every_order.add(namespace)
        if on_gap is not None:
            self._gap_handlers[namespace] = on_gap

    def interest(self, namespace: str) -> Interest | None:
        """The watcher that turns ``namespace``'s local rooms and clients into channel
        subscriptions (``runtime.rooms.RoomWatcher``); ``None`` in namespace mode."""
        if not self.routing.interest or namespace in self._every_order:
            return None
        return Interest(self.subscriptions, namespace)

    async def start(self, task_group: TaskGroup) -> None:
        """Start the broker in ``task_group`` and subscribe every namespace's channel."""
        self._tasks = task_group
        self.broker.on_gap(self._on_gap)
        await self.broker.start(self._on_message, task_group)
        for channel in self._routes:
            await self.broker.subscribe(channel)
        self._live = True
        await self.subscriptions.start(task_group)
        await self.cluster.start(task_group)

    async def close(self) -> None:
        """Stop publishing and close the broker."""
        self._live = False
        self._tasks = None
        self.subscriptions.close()
        try:
            with anyio.move_on_after(1.0):  # goodbyes are a courtesy: never hold shutdown
                await self.cluster.close()
            await self.broker.close()
        except Exception:
            logger.exception("closing broker %r failed", self.broker)

    async def publish(
        self, namespace: str, frame: Payload, targets: Targets, exclude: Targets
    ) -> None:
        """Tell the other nodes to deliver ``frame``; failures are logged and counted."""
        if not self._live:
            return
        text = frame if isinstance(frame, str) else frame.decode()
        metrics = self._metrics
        watch = trace = None
        if metrics is not None:
            carrier: dict[str, str] = {}
            watch = metrics.wrap_publish(namespace, carrier)
            trace = carrier or None
        if namespace in self._every_order:
            channels = [channel_for(namespace)]
        else:
            channels = channels_for(namespace, targets, self.routing)
            if len(channels) > 1 and 2 * len(channels) > self._peer_count(namespace):
                # Copies on k channels reach up to k nodes each: with fewer than 2k other
                # nodes, one copy on the namespace channel costs no more receipts and
                # fewer publishes.
                channels = [channel_for(namespace)]
        order = None
        if len(channels) > 1:
            self._orders += 1
            order = self._orders
        data = pack(Envelope(self.node_id, text, targets, exclude, trace, order))
        published: bool | None = False
        error: BaseException | None = None
        try:
            for channel in channels:
                sent = await self.broker.publish(channel, data)
                # One copy that went out is enough to call the order published.
                published = published or sent is not False
        except Exception as exc:
            error = exc
            logger.exception("gateway %s: publish to broker failed", namespace)
        finally:
            if watch is not None:
                watch.end("error" if published is False else "ok", error)
        if published is False:
            self.publish_failures += 1
            if metrics is not None:
                metrics.on_broker_failure(namespace)
        elif metrics is not None:
            metrics.on_broker_publish(namespace)

    def _on_gap(self, channels: list[str]) -> None:
        """The broker subscribed ``channels`` again: tell their clients, shortly."""
        if self._tasks is None:
            return
        if not self._gapped:
            self._tasks.start_soon(self._tell_gaps)
        self._gapped.update(channels)

    async def _tell_gaps(self) -> None:
        await anyio.sleep(GAP_SETTLE)
        channels, self._gapped = self._gapped, set()
        everyone: set[str] = set()
        rooms: dict[str, list[str]] = {}
        clients: dict[str, list[str]] = {}
        for channel in channels:
            route = self._routes.get(channel)
            if route is not None:
                everyone.add(route[0])
            elif (found := self.subscriptions.target_of(channel)) is not None:
                namespace, kind, name = found
                (rooms if kind == "room" else clients).setdefault(namespace, []).append(name)
            else:
                continue  # a cluster request channel: its requests have timeouts
            self.subscriptions.stats.gaps += 1
        for namespace, tell in self._gap_handlers.items():
            if namespace in everyone:
                targets = Targets()
            elif namespace in rooms or namespace in clients:
                targets = Targets(
                    tuple(rooms.get(namespace, ())), tuple(clients.get(namespace, ()))
                )
            else:
                continue
            try:
                tell(targets)
            except Exception:
                logger.exception("gateway %s: telling clients of a gap failed", namespace)

    def _peer_count(self, namespace: str) -> int:
        """Other live nodes serving ``namespace`` (heard from within the liveness timeout)."""
        return len(self.cluster.peers.live(namespace, monotonic()))

    def _on_message(self, channel: str, data: bytes) -> None:
        route = self._routes.get(channel)
        stats = self.subscriptions.stats
        if route is not None:
            namespace, deliver = route
            kind = "broadcast"
        else:
            found = self.subscriptions.target_of(channel)
            if found is None:
                self.cluster.on_message(channel, data)
                return
            namespace, kind, _ = found
            deliver = self._delivers[namespace]
        try:
            envelope = unpack(data, self._max_envelope)
        except EnvelopeError as exc:
            logger.warning("gateway %s: dropped a broker message: %s", namespace, exc)
            return
        if envelope.node == self.node_id:
            stats.echoes += 1
            return
        stats.received += 1
        if kind == "room":
            stats.received_room += 1
        elif kind == "client":
            stats.received_client += 1
        else:
            stats.received_broadcast += 1
        if envelope.order is not None and not self._seen.first(envelope.node, envelope.order):
            stats.duplicates += 1
            return
        metrics = self._metrics
        if metrics is None:
            if not deliver(envelope.frame, envelope.targets, envelope.exclude):
                stats.dropped += 1
            return
        metrics.on_broker_receive(namespace)
        watch = metrics.wrap_receive(namespace, envelope.trace)
        if watch is None:
            if not deliver(envelope.frame, envelope.targets, envelope.exclude):
                stats.dropped += 1
            return
        try:
            if not deliver(envelope.frame, envelope.targets, envelope.exclude):
                stats.dropped += 1
        except BaseException as exc:
            watch.end("error", exc)
            raise
        watch.end("ok")
