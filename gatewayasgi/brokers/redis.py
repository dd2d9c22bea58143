"""Redis pub/sub broker: carries deliveries across workers and hosts.

``redis`` is an optional extra (``pip install "gatewayasgi[redis]"``). One subscriber
connection per broker reads every subscribed channel in a background task started in
the runtime's task group; it is a raw anyio stream parsed by ``_resp`` as bytes arrive,
so a message over ``max_message_size`` is skipped from its length header and never held
in memory. Publishes go through a small, bounded redis-py pool of other connections.
Works on anyio's asyncio backend (``redis.asyncio`` is asyncio-only).

``cluster=True`` is for a Redis Cluster (Redis >= 7): messages go out with ``SPUBLISH``
and channels are subscribed with ``SSUBSCRIBE`` (sharded pub/sub, each channel on the
shard that owns its slot) through redis-py's cluster client, which follows
redirections, failovers and slot migrations; see ``_cluster``. The history and the
sessions use the same cluster, their keys hash-tagged so that each script stays in
one slot.

Trust: anyone who can PUBLISH on the Redis server can address every client of every
gateway on it. ``secret=`` signs every message (HMAC-SHA256, see ``signing``) and drops
what does not verify; Redis ACLs and network isolation keep strangers off the server.

Faults never reach the caller:

* Redis down at startup: ``start`` returns after the first attempt; the reader keeps
  retrying with exponential backoff and jitter, logging only state changes.
* Lost subscriber connection (Redis restart, ``CLIENT KILL TYPE pubsub``): a fresh
  connection is opened and every channel in the subscription set is subscribed again.
* Publish failure, oversize or forged message: logged (rate-limited), counted in
  ``stats``, dropped. Delivery across the backplane is at-most-once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.brokers._cluster import ClusterSubscriber
from gatewayasgi.brokers._pubsub import parse_url
from gatewayasgi.brokers._reader import describe
from gatewayasgi.brokers._resp import Message, OversizeMessage, Push
from gatewayasgi.brokers._subscriber import Subscriber
from gatewayasgi.brokers.base import Broker, GapHandler, MessageHandler
from gatewayasgi.brokers.signing import OVERHEAD, Secret, Signer, looks_signed
from gatewayasgi.stores.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_FRAME_BYTES, EmissionLog

if TYPE_CHECKING:
    from gatewayasgi.stores._redis_kept import RedisKeptStreams
    from gatewayasgi.stores.redis import RedisSessionStore

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisClusterException, RedisError
except ImportError as exc:  # pragma: no cover - exercised by a test with redis hidden
    raise ImportError(
        'RedisBroker needs the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

logger = logging.getLogger("gatewayasgi.brokers.redis")

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
# Drops a sender controls (oversize, forged) are logged at most this often, so a flood
# of them cannot flood the logs too; the counters in ``stats`` see every one.
DROP_LOG_INTERVAL = 60.0
# Errors that mean "Redis is unreachable or the connection broke", not a bug of ours.
_IO_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
# What redis-py's cluster client has been seen to raise while a cluster was forming.
_PUBLISH_ERRORS = (*_IO_ERRORS, IndexError, KeyError)
# A cluster client's connections per node (publishes, sharded subscriptions, scripts).
CLUSTER_CONNECTIONS_PER_NODE = 64


@dataclass(frozen=True, slots=True)
class RedisBrokerStats:
    """A snapshot of a ``RedisBroker``'s counters (see ``RedisBroker.stats``)."""

    connected: bool = False
    """The subscriber connection is up and its subscriptions were sent."""
    connects: int = 0
    """Successful subscriber connections, the first one included."""
    disconnects: int = 0
    """Subscriber connections lost after they were up."""
    gaps: int = 0
    """Channels subscribed again after an interruption (what was published on them
    meanwhile may be lost), reported to the gap handler."""
    published: int = 0
    """Messages handed to Redis by ``publish``."""
    publish_failures: int = 0
    """Publishes that Redis refused or that failed on the wire."""
    publish_dropped: int = 0
    """Publishes dropped without trying: subscriber down, or broker closed."""
    oversize_dropped: int = 0
    """Messages over ``max_message_size``, outgoing or incoming (skipped unread)."""
    received: int = 0
    """Messages handed to ``on_message``."""
    forged_dropped: int = 0
    """Incoming messages dropped because their signature was missing or wrong."""


def _redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class _DropLog:
    """One warning per ``DROP_LOG_INTERVAL`` for one kind of drop, with the count since."""

    def __init__(self) -> None:
        self._last = -DROP_LOG_INTERVAL
        self._held = 0

    def warn(self, message: str, *args: object) -> None:
        now = anyio.current_time()
        if now - self._last < DROP_LOG_INTERVAL:
            self._held += 1
            return
        self._last, held, self._held = now, self._held, 0
        suffix = f" ({held} more since the last report)" if held else ""
        logger.warning(message + suffix, *args)


class RedisBroker(Broker):
    """A ``Broker`` over Redis pub/sub; pass it as ``GatewayMiddleware(..., broker=...)``.

    ``url`` is a redis-py URL (``redis://[user:password@]host:6379/0``, ``rediss://``,
    ``unix:///path``); another scheme raises ``ValueError`` here. Messages larger than
    ``max_message_size`` bytes are dropped on both sides, incoming ones without being
    read. ``secret`` (``str`` or ``bytes``, 16 bytes or more, or a sequence of them:
    the first signs, any verifies) signs every message and drops unsigned or forged
    ones; every process on the channel needs it. Reconnects wait
    ``reconnect_delay * 2**attempt`` seconds, capped at ``max_reconnect_delay``, of
    which a random half is jitter. ``health_check_interval`` is how often an idle
    subscriber connection is pinged, so a dead peer is noticed. ``publish`` works
    without ``start`` too (that is what ``RedisEmitter`` does).

    ``cluster=True``: ``url`` names one or more startup nodes of a Redis Cluster (a
    list, or one string of comma-separated URLs; the first one's credentials and TLS
    options apply to every node), and the broker uses sharded pub/sub (Redis >= 7).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        cluster: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        secret: Secret | Sequence[Secret] | None = None,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
        connect_timeout: float = 2.0,
        publish_timeout: float = 2.0,
        health_check_interval: float = 5.0,
        max_publish_connections: int = 16,
    ) -> None:
        if max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        if reconnect_delay <= 0 or max_reconnect_delay < reconnect_delay:
            raise ValueError("need 0 < reconnect_delay <= max_reconnect_delay")
        self.cluster = cluster
        if cluster:
            from gatewayasgi.stores.redis import cluster_urls

            urls = cluster_urls(url)
            self.url = ",".join(urls)
            display = ",".join(_redact(item) for item in urls)
        elif isinstance(url, str):
            self.url = url
            display = _redact(url)
        else:
            raise TypeError("several URLs are for a cluster: pass cluster=True")
        self.max_message_size = max_message_size
        self._signer = Signer(secret) if secret is not None else None
        # What travels on the wire: the payload plus its signature, if any.
        self._wire_limit = max_message_size + (OVERHEAD if self._signer else 0)
        self._publish_timeout = publish_timeout
        self._max_publish_connections = max_publish_connections
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connect_timeout = connect_timeout
        self._health_check_interval = health_check_interval
        self._cluster_client: RedisCluster | None = None
        self._subscriber: Subscriber | ClusterSubscriber
        if cluster:
            self._subscriber = ClusterSubscriber(
                self._new_cluster,
                display,
                self._handle,
                reconnect_delay=reconnect_delay,
                max_reconnect_delay=max_reconnect_delay,
                connect_timeout=connect_timeout,
                max_wire_size=self._wire_limit,
                health_check_interval=health_check_interval,
            )
        else:
            self._subscriber = Subscriber(
                parse_url(self.url),
                display,
                self._handle,
                max_wire_size=self._wire_limit,
                reconnect_delay=reconnect_delay,
                max_reconnect_delay=max_reconnect_delay,
                connect_timeout=connect_timeout,
                health_check_interval=health_check_interval,
            )
        self._on_message: MessageHandler | None = None
        self._publisher: Redis | None = None
        self._started = False
        self._closed = False
        self._publish_failing = False
        self._oversize_log = _DropLog()
        self._forged_log = _DropLog()
        # Publish and receive counters; the connection's own live in the subscriber.
        self._stats = RedisBrokerStats()

    # -- public API ------------------------------------------------------------------

    @property
    def stats(self) -> RedisBrokerStats:
        """A snapshot of the counters: connection state, publishes, drops, receipts."""
        sub = self._subscriber
        return replace(
            self._stats,
            connected=sub.connected,
            connects=sub.connects,
            disconnects=sub.disconnects,
            gaps=sub.gaps,
        )

    @property
    def connected(self) -> bool:
        """Whether the subscriber connection is up right now."""
        return self._subscriber.connected

    def on_gap(self, handler: GapHandler) -> None:
        """Report channels subscribed again after an interruption to ``handler``."""
        self._subscriber.on_gap = handler

    async def start(self, on_message: MessageHandler, task_group: TaskGroup) -> None:
        """Start the subscriber task in ``task_group``; return after its first attempt.

        Never raises because Redis is unreachable: the task keeps retrying.
        """
        if self._started:
            raise RuntimeError("RedisBroker.start() was already called")
        self._started = True
        self._on_message = on_message
        await self._subscriber.start(task_group)

    async def close(self) -> None:
        """Stop the subscriber task and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._on_message = None
        publisher, self._publisher = self._publisher, None
        cluster, self._cluster_client = self._cluster_client, None
        with anyio.CancelScope(shield=True):
            await self._subscriber.close()
            if publisher is not None:
                await _quietly_close(publisher.aclose(close_connection_pool=True))
            if cluster is not None:
                await _quietly_close(cluster.aclose())

    async def publish(self, channel: str, data: bytes) -> bool:
        """Publish ``data`` on ``channel``; ``False`` if it was dropped (never raises).

        Drops (too large, Redis away, Redis refused) are logged and counted in ``stats``.
        """
        if len(data) > self.max_message_size:
            self._count(oversize_dropped=1)
            logger.warning(
                "redis broker: dropped a %d-byte message for %s (max_message_size is %d)",
                len(data),
                channel,
                self.max_message_size,
            )
            return False
        if self._closed or (self._started and not self._subscriber.connected):
            # The subscriber already knows Redis is away: fail fast instead of making
            # every emit wait for a connect timeout.
            self._count(publish_dropped=1)
            return False
        if self._signer is not None:
            data = self._signer.sign(channel, data)
        try:
            if self.cluster:
                await self._get_cluster().spublish(channel, data)
            else:
                await self._get_publisher().publish(channel, data)
        except _PUBLISH_ERRORS as exc:
            self._count(publish_failures=1)
            if not self._publish_failing:
                self._publish_failing = True
                logger.warning("redis broker: publish to %s failed: %s", channel, describe(exc))
            return False
        self._count(published=1)
        if self._publish_failing:
            self._publish_failing = False
            logger.info("redis broker: publishing works again")
        return True

    async def subscribe(self, channel: str) -> None:
        """Add ``channel`` to the subscription set; while connected, wait for Redis's ack.

        Returns without error when Redis is away: the channel is subscribed on the
        next (re)connect.
        """
        if not self._closed:
            await self._subscriber.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Remove ``channel`` from the subscription set and tell Redis when connected."""
        await self._subscriber.unsubscribe(channel)

    def history(
        self,
        namespace: str,
        *,
        max_frames: int,
        max_age: float,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        partitions: int = 1,
    ) -> EmissionLog:
        """A ``RedisLog`` (one Redis Stream) for ``namespace``, on this broker's Redis, or
        with ``partitions`` over 1 a ``PartitionedLog`` of that many (each bounded by
        ``max_frames`` and ``max_bytes``).

        Each stream has its own connections (a reader and a small pool), with this
        broker's URL, timeouts and reconnect delays; the runtime follows and closes it.
        """
        from gatewayasgi.stores._redis_partitions import PartitionedLog
        from gatewayasgi.stores.redis import RedisLog

        parts: list[EmissionLog] = [
            RedisLog(
                self.url,
                namespace,
                max_frames=max_frames,
                max_age=max_age,
                max_bytes=max_bytes,
                max_frame_bytes=max_frame_bytes,
                reconnect_delay=self._reconnect_delay,
                max_reconnect_delay=self._max_reconnect_delay,
                connect_timeout=self._connect_timeout,
                command_timeout=self._publish_timeout,
                cluster=self.cluster,
                partition=None if partitions == 1 else part,
            )
            for part in range(partitions)
        ]
        return parts[0] if partitions == 1 else PartitionedLog(parts)

    def kept_streams(
        self, *, max_items: int, max_bytes: int, grace: float
    ) -> RedisKeptStreams | None:
        """A ``RedisKeptStreams`` on this broker's Redis (its own connections, with this
        broker's timeouts). On a cluster too: each stream's keys live in one slot, and
        its reader polls the watched streams node by node (``stores._redis_kept``)."""
        from gatewayasgi.stores._redis_kept import RedisKeptStreams

        return RedisKeptStreams(
            self.url,
            max_items=max_items,
            max_bytes=max_bytes,
            grace=grace,
            command_timeout=self._publish_timeout,
            cluster=self.cluster,
        )

    def session_store(self, namespace: str) -> RedisSessionStore:
        """A ``RedisSessionStore`` of ``namespace``'s sessions on this broker's Redis,
        sharing its publishing pool (closed with the broker). One key space per
        namespace: a session resumes only on the gateway it was made on."""
        from gatewayasgi.stores.redis import KEY_PREFIX, RedisSessionStore

        client = self._get_cluster() if self.cluster else self._get_publisher()
        return RedisSessionStore(client, key_prefix=f"{KEY_PREFIX}{namespace}:", owns_client=False)

    # -- incoming messages ---------------------------------------------------------------

    def _handle(self, push: Push) -> None:
        """Called by the subscriber for every message, delivered or skipped for its size."""
        if isinstance(push, Message) and len(push.data) <= self._wire_limit:
            self._deliver(push.channel.decode(errors="replace"), push.data)
        elif isinstance(push, Message | OversizeMessage):
            # Skipped unread by the connection, or (under its 64 KiB floor) read and
            # found too large here.
            length = push.length if isinstance(push, OversizeMessage) else len(push.data)
            self._count(oversize_dropped=1)
            self._oversize_log.warn(
                "redis broker: dropped an incoming %d-byte message on %s (limit %d)",
                length,
                push.channel.decode(errors="replace") if push.channel else "?",
                self._wire_limit,
            )

    def _deliver(self, channel: str, data: bytes) -> None:
        on_message = self._on_message
        if on_message is None or channel not in self._subscriber.channels:
            return
        if self._signer is not None:
            payload = self._signer.verify(channel, data)
            if payload is None:
                self._count(forged_dropped=1)
                self._forged_log.warn(
                    "redis broker: dropped an %s message on %s: is another publisher "
                    "missing the secret, or is someone else publishing on this Redis?",
                    "incorrectly signed" if looks_signed(data) else "unsigned",
                    channel,
                )
                return
            data = payload
        self._count(received=1)
        try:
            on_message(channel, data)
        except Exception:
            # The contract says on_message never raises; if it does, keep reading.
            logger.exception("redis broker: on_message raised for channel %s", channel)

    # -- publisher -----------------------------------------------------------------------

    def _get_publisher(self) -> Redis:
        if self._publisher is None:
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=self._max_publish_connections,
                timeout=self._publish_timeout,
                socket_connect_timeout=self._publish_timeout,
                socket_timeout=self._publish_timeout,
                # No hidden retries: a blind retry of PUBLISH could deliver twice.
                retry=Retry(NoBackoff(), 0),
                # RESP2 unless the URL asks for ``?protocol=3``: it works with every
                # Redis version, and under redis-py 8's RESP3 defaults (maintenance
                # notifications) the pool no longer notices a connection the server
                # closed.
                protocol=2,
            )
            self._publisher = Redis(connection_pool=pool)
        return self._publisher

    def _get_cluster(self) -> RedisCluster:
        """The cluster client of publishes and sessions."""
        if self._cluster_client is None:
            self._cluster_client = self._new_cluster()
        return self._cluster_client

    def _new_cluster(self) -> RedisCluster:
        """A cluster client (the subscriber makes one per connection attempt)."""
        from gatewayasgi.stores.redis import connect_cluster

        return connect_cluster(
            self.url,
            timeout=self._publish_timeout,
            max_connections=max(CLUSTER_CONNECTIONS_PER_NODE, self._max_publish_connections),
            health_check_interval=self._health_check_interval,
        )

    # -- counters ------------------------------------------------------------------------

    def _count(self, **increments: int) -> None:
        stats = self._stats
        self._stats = replace(
            stats, **{name: getattr(stats, name) + n for name, n in increments.items()}
        )


async def _quietly_close(closing: Awaitable[Any]) -> None:
    with contextlib.suppress(*_IO_ERRORS):
        await closing
