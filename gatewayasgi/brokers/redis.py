"""Redis pub/sub broker: carries deliveries across workers and hosts.

``redis`` is an optional extra (``pip install "gatewayasgi[redis]"``). One subscriber
connection per broker reads every subscribed channel in a background task started in
the runtime's task group; publishes go through a small, bounded pool of other
connections. Works on anyio's asyncio backend (``redis.asyncio`` is asyncio-only).

Faults never reach the caller:

* Redis down at startup: ``start`` returns after the first attempt; the reader keeps
  retrying with exponential backoff and jitter, logging only state changes.
* Lost subscriber connection (Redis restart, ``CLIENT KILL TYPE pubsub``): a fresh
  connection is opened and every channel in the subscription set is subscribed again.
* Publish failure or oversize message: logged, counted in ``stats``, dropped.
  Delivery across the backplane is at-most-once.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.brokers.base import Broker, MessageHandler

try:
    from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised by a test with redis hidden
    raise ImportError(
        'RedisBroker needs the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

logger = logging.getLogger("gatewayasgi.brokers.redis")

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
CONTROL_CHANNEL_PREFIX = "gatewayasgi:broker:"
# Errors that mean "Redis is unreachable or the connection broke", not a bug of ours.
_IO_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class RedisBrokerStats:
    """A snapshot of a ``RedisBroker``'s counters (see ``RedisBroker.stats``)."""

    connected: bool = False
    """The subscriber connection is up and its subscriptions were sent."""
    connects: int = 0
    """Successful subscriber connections, the first one included."""
    disconnects: int = 0
    """Subscriber connections lost after they were up."""
    published: int = 0
    """Messages handed to Redis by ``publish``."""
    publish_failures: int = 0
    """Publishes that Redis refused or that failed on the wire."""
    publish_dropped: int = 0
    """Publishes dropped without trying: subscriber down, or broker closed."""
    oversize_dropped: int = 0
    """Messages over ``max_message_size``, outgoing or incoming."""
    received: int = 0
    """Messages handed to ``on_message``."""


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


class RedisBroker(Broker):
    """A ``Broker`` over Redis pub/sub; pass it as ``GatewayMiddleware(..., broker=...)``.

    ``url`` is a redis-py URL (``redis://host:6379/0``, ``rediss://``, ``unix://``).
    Messages larger than ``max_message_size`` bytes are dropped on both sides.
    Reconnects wait ``reconnect_delay * 2**attempt`` seconds, capped at
    ``max_reconnect_delay``, of which a random half is jitter. ``health_check_interval``
    is how often an idle subscriber connection is pinged, so a dead peer is noticed.
    ``publish`` works without ``start`` too (that is what ``RedisEmitter`` does).
    """

    def __init__(
        self,
        url: str,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
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
        self.url = url
        self.max_message_size = max_message_size
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._health_check_interval = health_check_interval
        self._max_publish_connections = max_publish_connections
        self._on_message: MessageHandler | None = None
        self._channels: set[str] = set()
        # The subscriber connection always holds this private channel, so it is a pubsub
        # connection from the start (CLIENT KILL TYPE pubsub applies, and redis-py never
        # reads a health-check reply on it from outside the reader task).
        self._control_channel = CONTROL_CHANNEL_PREFIX + uuid.uuid4().hex
        self._pubsub: PubSub | None = None
        self._subscriber_pool: ConnectionPool | None = None
        self._publisher: Redis | None = None
        self._reader_scope: anyio.CancelScope | None = None
        self._first_attempt: anyio.Event | None = None
        self._reader_done: anyio.Event | None = None
        self._acks: dict[str, anyio.Event] = {}
        self._attempt = 0
        self._started = False
        self._closed = False
        self._publish_failing = False
        self._stats = RedisBrokerStats()

    # -- public API ------------------------------------------------------------------

    @property
    def stats(self) -> RedisBrokerStats:
        """A snapshot of the counters: connection state, publishes, drops, receipts."""
        return self._stats

    @property
    def connected(self) -> bool:
        """Whether the subscriber connection is up right now."""
        return self._stats.connected

    async def start(self, on_message: MessageHandler, task_group: TaskGroup) -> None:
        """Start the subscriber task in ``task_group``; return after its first attempt.

        Never raises because Redis is unreachable: the task keeps retrying.
        """
        if self._started:
            raise RuntimeError("RedisBroker.start() was already called")
        self._started = True
        self._on_message = on_message
        self._reader_scope = anyio.CancelScope()
        self._first_attempt = first_attempt = anyio.Event()
        self._reader_done = anyio.Event()
        task_group.start_soon(self._run_subscriber, name=f"redis broker {_redact(self.url)}")
        with anyio.move_on_after(self._connect_timeout + 1.0):
            await first_attempt.wait()

    async def close(self) -> None:
        """Stop the subscriber task and close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._on_message = None
        self._channels.clear()
        if self._reader_scope is not None and self._reader_done is not None:
            # Let the reader leave get_message() and close its own connection; closing
            # it from here while it reads makes redis-py fail inside the reader.
            self._reader_scope.cancel()
            with anyio.move_on_after(self._connect_timeout, shield=True):
                await self._reader_done.wait()
        pubsub, self._pubsub = self._pubsub, None
        publisher, self._publisher = self._publisher, None
        pool, self._subscriber_pool = self._subscriber_pool, None
        with anyio.CancelScope(shield=True):
            if pubsub is not None:
                await _close_pubsub(pubsub)
            if pool is not None:
                await _quietly_close(pool.disconnect())
            if publisher is not None:
                await _quietly_close(publisher.aclose(close_connection_pool=True))
        self._set(connected=False)

    async def publish(self, channel: str, data: bytes) -> None:
        """Publish ``data`` on ``channel``; failures are logged and counted, never raised."""
        if len(data) > self.max_message_size:
            self._count(oversize_dropped=1)
            logger.warning(
                "redis broker: dropped a %d-byte message for %s (max_message_size is %d)",
                len(data),
                channel,
                self.max_message_size,
            )
            return
        if self._closed or (self._started and not self._stats.connected):
            # The subscriber already knows Redis is away: fail fast instead of making
            # every emit wait for a connect timeout.
            self._count(publish_dropped=1)
            return
        try:
            await self._get_publisher().publish(channel, data)
        except _IO_ERRORS as exc:
            self._count(publish_failures=1)
            if not self._publish_failing:
                self._publish_failing = True
                logger.warning("redis broker: publish to %s failed: %s", channel, _describe(exc))
            return
        self._count(published=1)
        if self._publish_failing:
            self._publish_failing = False
            logger.info("redis broker: publishing works again")

    async def subscribe(self, channel: str) -> None:
        """Add ``channel`` to the subscription set; while connected, wait for Redis's ack.

        Returns without error when Redis is away: the channel is subscribed on the
        next (re)connect.
        """
        if self._closed or channel in self._channels:
            return
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        ack = self._acks.setdefault(channel, anyio.Event())
        try:
            await pubsub.subscribe(channel)
        except _IO_ERRORS:
            return  # the reader sees the broken connection and resubscribes everything
        with anyio.move_on_after(self._connect_timeout):
            await ack.wait()

    async def unsubscribe(self, channel: str) -> None:
        """Remove ``channel`` from the subscription set and tell Redis when connected."""
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is not None:
            # On failure the reader reconnects, and a fresh connection won't subscribe it.
            with contextlib.suppress(*_IO_ERRORS):
                await pubsub.unsubscribe(channel)

    # -- subscriber task ---------------------------------------------------------------

    async def _run_subscriber(self) -> None:
        assert self._reader_scope is not None and self._reader_done is not None
        try:
            with self._reader_scope:
                await self._subscribe_forever()
        finally:
            self._reader_done.set()

    async def _subscribe_forever(self) -> None:
        assert self._first_attempt is not None
        while not self._closed:
            try:
                await self._connect_and_read()
            except _IO_ERRORS as exc:
                self._on_connection_lost(exc)
            except Exception as exc:
                # A bug here must not take the app down: log it and reconnect.
                if not self._closed:
                    logger.exception("redis broker: subscriber failed")
                self._on_connection_lost(exc)
            finally:
                await self._drop_pubsub()
                self._first_attempt.set()
            await anyio.sleep(self._backoff(self._attempt))
            self._attempt += 1

    def _backoff(self, attempt: int) -> float:
        """Exponential delay with "equal jitter": half fixed, half random."""
        delay = min(self._max_reconnect_delay, self._reconnect_delay * 2.0 ** min(attempt, 30))
        return delay / 2 + random.uniform(0, delay / 2)

    async def _connect_and_read(self) -> None:
        pubsub = self._new_pubsub()
        # Subscribe to a snapshot, then hand the pubsub to subscribe()/unsubscribe() and
        # reconcile whatever changed while the snapshot was on the wire.
        snapshot = set(self._channels)
        await pubsub.subscribe(self._control_channel, *sorted(snapshot))
        self._pubsub = pubsub
        if self._channels - snapshot:
            await pubsub.subscribe(*sorted(self._channels - snapshot))
        if snapshot - self._channels:
            await pubsub.unsubscribe(*sorted(snapshot - self._channels))
        self._on_connected()
        assert self._first_attempt is not None
        self._first_attempt.set()
        await self._read_forever(pubsub)

    async def _read_forever(self, pubsub: PubSub) -> None:
        """Hand messages to ``_handle``; PING when idle so a silent peer is noticed.

        A TCP connection to a vanished host can stay "open" for hours: if a PING gets
        no answer within ``health_check_interval``, the connection is given up.
        """
        interval = self._health_check_interval
        last_heard = anyio.current_time()
        ping_sent_at: float | None = None
        while True:
            message = await pubsub.get_message(timeout=interval / 2)
            now = anyio.current_time()
            if message is not None:
                last_heard, ping_sent_at = now, None
                self._handle(message)
            elif ping_sent_at is not None:
                if now - ping_sent_at > interval:
                    raise TimeoutError(f"no answer to a PING in {interval} s")
            elif now - last_heard >= interval:
                await pubsub.ping()
                ping_sent_at = now

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            event = self._acks.pop(_text(message["channel"]), None)
            if event is not None:
                event.set()
            return
        if kind != "message":
            return
        data = message["data"]
        if not isinstance(data, bytes):
            return
        if len(data) > self.max_message_size:
            self._count(oversize_dropped=1)
            logger.warning(
                "redis broker: dropped an incoming %d-byte message (max_message_size is %d)",
                len(data),
                self.max_message_size,
            )
            return
        channel = _text(message["channel"])
        on_message = self._on_message
        if on_message is None or channel not in self._channels:
            return
        self._count(received=1)
        try:
            on_message(channel, data)
        except Exception:
            # The contract says on_message never raises; if it does, keep reading.
            logger.exception("redis broker: on_message raised for channel %s", channel)

    def _on_connected(self) -> None:
        self._attempt = 0
        self._set(connected=True)
        self._count(connects=1)
        level = logging.INFO if self._stats.connects == 1 else logging.WARNING
        logger.log(level, "redis broker: connected to %s", _redact(self.url))

    def _on_connection_lost(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self._stats.connected:
            self._set(connected=False)
            self._count(disconnects=1)
            logger.warning(
                "redis broker: lost connection to %s (%s); reconnecting",
                _redact(self.url),
                _describe(exc),
            )
        elif self._first_attempt is not None and not self._first_attempt.is_set():
            logger.warning(
                "redis broker: cannot reach %s (%s); local delivery only, retrying",
                _redact(self.url),
                _describe(exc),
            )
        else:
            logger.debug("redis broker: reconnect failed: %s", _describe(exc))

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if self._stats.connected and not self._closed:
            self._set(connected=False)
            self._count(disconnects=1)
        for event in self._acks.values():
            event.set()  # nobody waits for an ack from a dead connection
        self._acks.clear()
        if pubsub is not None:
            with anyio.CancelScope(shield=True):
                await _close_pubsub(pubsub)

    # -- connections ---------------------------------------------------------------------

    def _new_pubsub(self) -> PubSub:
        if self._subscriber_pool is None:
            self._subscriber_pool = ConnectionPool.from_url(
                self.url,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._connect_timeout,
                **self._pool_options(),
            )
        return PubSub(self._subscriber_pool, ignore_subscribe_messages=False)

    @staticmethod
    def _pool_options() -> dict[str, Any]:
        return {
            # No hidden retries: this class owns reconnecting and resubscribing, and a
            # blind retry of PUBLISH could deliver a message twice.
            "retry": Retry(NoBackoff(), 0),
            # RESP2 unless the URL asks for ``?protocol=3``: it works with every Redis
            # version, and under redis-py 8's RESP3 defaults (maintenance notifications)
            # the pool no longer notices a pooled connection that the server closed.
            "protocol": 2,
        }

    def _get_publisher(self) -> Redis:
        if self._publisher is None:
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=self._max_publish_connections,
                timeout=self._publish_timeout,
                socket_connect_timeout=self._publish_timeout,
                socket_timeout=self._publish_timeout,
                **self._pool_options(),
            )
            self._publisher = Redis(connection_pool=pool)
        return self._publisher

    # -- counters ------------------------------------------------------------------------

    def _count(self, **increments: int) -> None:
        stats = self._stats
        self._stats = replace(
            stats, **{name: getattr(stats, name) + n for name, n in increments.items()}
        )

    def _set(self, *, connected: bool) -> None:
        self._stats = replace(self._stats, connected=connected)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _quietly_close(closing: Awaitable[object]) -> None:
    with contextlib.suppress(*_IO_ERRORS):
        await closing


async def _close_pubsub(pubsub: PubSub) -> None:
    await _quietly_close(pubsub.aclose())  # type: ignore[no-untyped-call]
