"""One middleware's place on the backplane: publish delivery orders, serve received ones.

Every gateway namespace has a broker channel (``envelope.channel_for``). A node (one
``GatewayMiddleware`` in one process) publishes an envelope for each emit after serving
its own clients, and serves the envelopes of other nodes to its local clients. Its own
echoes (Redis delivers a publisher's messages back to it) are recognised by node id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.backplane.cluster import ClusterNode
from gatewayasgi.backplane.envelope import Envelope, EnvelopeError, channel_for, pack, unpack
from gatewayasgi.brokers.base import Broker
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.protocol.base import Payload
from gatewayasgi.protocol.targets import Targets

logger = logging.getLogger("gatewayasgi")

Deliver = Callable[[Payload, Targets, Targets], int]
"""A gateway server's local fan-out."""


class Backplane:
    """Connects the gateway servers of one middleware to a ``Broker``."""

    def __init__(
        self,
        broker: Broker,
        *,
        max_envelope_size: int,
        metrics: Instrumentation | None = None,
    ) -> None:
        self.broker = broker
        self.node_id = uuid.uuid4().hex
        self.publish_failures = 0
        self._max_envelope = max_envelope_size
        self._metrics = metrics
        self._routes: dict[str, tuple[str, Deliver]] = {}  # channel -> (namespace, deliver)
        self._live = False
        self.cluster = ClusterNode(broker, self.node_id, max_message_size=max_envelope_size)
        """Cluster requests (presence, fetch, join/leave, disconnect, calls) and heartbeats."""

    def add(self, namespace: str, deliver: Deliver) -> None:
        """Route envelopes of ``namespace`` to ``deliver`` (before ``start``)."""
        self._routes[channel_for(namespace)] = (namespace, deliver)

    async def start(self, task_group: TaskGroup) -> None:
        """Start the broker in ``task_group`` and subscribe every namespace's channel."""
        await self.broker.start(self._on_message, task_group)
        for channel in self._routes:
            await self.broker.subscribe(channel)
        self._live = True
        await self.cluster.start(task_group)

    async def close(self) -> None:
        """Stop publishing and close the broker."""
        self._live = False
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
        data = pack(Envelope(self.node_id, text, targets, exclude, trace))
        published: bool | None = False
        error: BaseException | None = None
        try:
            published = await self.broker.publish(channel_for(namespace), data)
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

    def _on_message(self, channel: str, data: bytes) -> None:
        route = self._routes.get(channel)
        if route is None:
            self.cluster.on_message(channel, data)
            return
        namespace, deliver = route
        try:
            envelope = unpack(data, self._max_envelope)
        except EnvelopeError as exc:
            logger.warning("gateway %s: dropped a broker message: %s", namespace, exc)
            return
        if envelope.node == self.node_id:
            return
        metrics = self._metrics
        if metrics is None:
            deliver(envelope.frame, envelope.targets, envelope.exclude)
            return
        metrics.on_broker_receive(namespace)
        watch = metrics.wrap_receive(namespace, envelope.trace)
        if watch is None:
            deliver(envelope.frame, envelope.targets, envelope.exclude)
            return
        try:
            deliver(envelope.frame, envelope.targets, envelope.exclude)
        except BaseException as exc:
            watch.end("error", exc)
            raise
        watch.end("ok")
