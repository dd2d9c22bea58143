"""``RedisBroker(..., cluster=True)``'s subscriber: sharded pub/sub on a Redis Cluster.

Channels are subscribed with ``SSUBSCRIBE`` (Redis >= 7) through redis-py's
``ClusterPubSub``: one connection per master that owns a subscribed channel's slot,
read in turn by one task of ours. The library follows the cluster: it re-routes a
channel whose slot moved (a ``MOVED`` reply, a topology refresh) and reconnects to a
node that came back. Around it this module keeps what the broker contract needs:

* the subscription set is ours: a channel the server dropped (Redis sends
  ``sunsubscribe`` to the clients of a slot that moved away) or that the library lost
  on the way is subscribed again by a repair pass, at once after such a push and every
  ``REPAIR_INTERVAL`` seconds otherwise;
* while a node cannot be reached, the repair pass asks for a topology refresh every
  ``REPAIR_INTERVAL`` seconds, so a replica's promotion is noticed within about that
  long (the library alone would wait longer);
* when every node fails (the cluster is down), the pub/sub client is dropped and built
  again with capped exponential backoff and jitter, every channel subscribed again;
* ``subscribe`` returns once Redis acknowledged the channel (or after the connect
  timeout), as with one Redis.

Messages are read whole by redis-py, so an oversize one is dropped after it was read
(the broker checks ``max_message_size``), not skipped from its length header.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.brokers._resp import Message, Push

try:
    from redis.asyncio.cluster import ClusterPubSub, RedisCluster
    from redis.exceptions import RedisClusterException, RedisError
except ImportError as exc:  # pragma: no cover - the broker's import says the same
    raise ImportError(
        'RedisBroker needs the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

logger = logging.getLogger("gatewayasgi.brokers.redis")

# ``RedisClusterException`` (no node reachable, a slot not covered) is no ``RedisError``.
# IndexError: redis-py's cluster client reading the layout of a cluster still forming
# (a node that knows no master yet).
_IO_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError, IndexError)
POLL_TIMEOUT = 0.05
"""How long one read of every node's connection waits for a message (seconds): also
about how long a ``subscribe`` waits for the reader to let go of the connection."""
REPAIR_INTERVAL = 0.5
"""Seconds between two repair passes (lost channels, unreachable nodes)."""


class ClusterSubscriber:
    """Keeps ``channels`` subscribed (sharded) on a Redis Cluster; messages to ``on_push``.

    The same surface as ``_subscriber.Subscriber`` (``channels``, ``connected``,
    ``connects``, ``disconnects``, ``start``, ``subscribe``, ``unsubscribe``,
    ``close``). ``client`` makes a cluster client: each attempt gets a fresh one of
    its own (a client that met a cluster still forming can be left unusable).
    """

    def __init__(
        self,
        client: Callable[[], RedisCluster],
        display_url: str,
        on_push: Callable[[Push], None],
        *,
        reconnect_delay: float,
        max_reconnect_delay: float,
        connect_timeout: float,
    ) -> None:
        self._client = client
        self._display_url = display_url
        self._on_push = on_push
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connect_timeout = connect_timeout
        self.channels: set[str] = set()
        """The subscription set: what every (re)connect and repair pass subscribes."""
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.resubscribed = 0
        """Channels subscribed again by a repair pass (the server or the library lost them)."""
        self._pubsub: ClusterPubSub | None = None
        self._cluster: RedisCluster | None = None
        self._acks: dict[str, anyio.Event] = {}
        self._scope: anyio.CancelScope | None = None
        self._first_attempt: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._repair_now: anyio.Event | None = None
        self._stale = False
        self._dropped: set[str] = set()  # channels the server unsubscribed (slot moved)
        self._attempt = 0
        self._closed = False

    async def start(self, task_group: TaskGroup) -> None:
        """Start the reader task; return after its first attempt (or a timeout)."""
        self._scope = anyio.CancelScope()
        self._first_attempt = first = anyio.Event()
        self._done = anyio.Event()
        task_group.start_soon(self._run, name=f"redis cluster broker {self._display_url}")
        with anyio.move_on_after(self._connect_timeout + 1.0):
            await first.wait()

    async def close(self) -> None:
        """Stop the reader task and close the pub/sub connections. Idempotent."""
        self._closed = True
        self.channels.clear()
        if self._scope is not None:
            self._scope.cancel()
        if self._done is not None:
            with anyio.move_on_after(self._connect_timeout, shield=True):
                await self._done.wait()
        await self._drop_pubsub()
        self.connected = False

    async def subscribe(self, channel: str) -> None:
        """Add ``channel``; while connected, wait (at most the connect timeout) for the ack."""
        if self._closed or channel in self.channels:
            return
        self.channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return  # subscribed on the next (re)connect
        ack = self._acks.setdefault(channel, anyio.Event())
        with anyio.move_on_after(self._connect_timeout):
            try:
                await pubsub.ssubscribe(channel)
            except Exception as exc:  # never into the caller: the repair pass retries
                logger.debug("redis broker: subscribing %s failed: %s", channel, _describe(exc))
                self._stale = True
                self._wake_repair()  # subscribed again once its node answers
                return
            await ack.wait()

    async def unsubscribe(self, channel: str) -> None:
        """Remove ``channel`` and tell Redis when connected."""
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        self._acks.pop(channel, None)
        pubsub = self._pubsub
        if pubsub is not None:
            # On failure the channel may stay subscribed on a dead connection; what
            # arrives for it is not delivered (the broker checks the set).
            with contextlib.suppress(Exception):
                await pubsub.sunsubscribe(channel)

    # -- the reader task -----------------------------------------------------------------

    async def _run(self) -> None:
        assert self._scope is not None and self._done is not None
        try:
            with self._scope:
                while not self._closed:
                    await self._attempt_once()
                    await anyio.sleep(self._backoff(self._attempt))
                    self._attempt += 1
        finally:
            self._done.set()

    async def _attempt_once(self) -> None:
        try:
            await self._connect_and_read()
        except _IO_ERRORS as exc:
            self._on_connection_lost(exc)
        except Exception as exc:
            if not self._closed:
                logger.exception("redis broker: cluster subscriber failed")
            self._on_connection_lost(exc)
        finally:
            await self._drop_pubsub()
            assert self._first_attempt is not None
            self._first_attempt.set()

    async def _connect_and_read(self) -> None:
        self._cluster = client = self._client()
        with anyio.fail_after(self._connect_timeout):
            await client.initialize()
        pubsub = client.pubsub()
        self._pubsub = pubsub
        for channel in sorted(self.channels):
            if channel in self.channels:
                with anyio.fail_after(self._connect_timeout):
                    await pubsub.ssubscribe(channel)
        self._on_connected()
        assert self._first_attempt is not None
        self._first_attempt.set()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._repair_loop, client, pubsub)
            try:
                await self._read_forever(pubsub)
            finally:
                tg.cancel_scope.cancel()

    async def _read_forever(self, pubsub: ClusterPubSub) -> None:
        while True:
            message = await pubsub.get_sharded_message(timeout=POLL_TIMEOUT)
            if message is None:
                if not pubsub.node_pubsub_mapping:
                    # Nothing subscribed anywhere: the library would return at once.
                    await anyio.sleep(POLL_TIMEOUT)
                continue
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        kind = kind.decode() if isinstance(kind, bytes) else kind
        raw = message.get("channel")
        channel = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        if kind == "smessage":
            data = message.get("data")
            if isinstance(raw, bytes) and isinstance(data, bytes):
                self._on_push(Message(raw, data))
        elif kind == "ssubscribe":
            event = self._acks.pop(channel, None)
            if event is not None:
                event.set()
        elif kind == "sunsubscribe" and channel in self.channels:
            # Not ours: the channel's slot moved away from that node. Subscribe again
            # (the repair pass logs how many, once).
            self._dropped.add(channel)
            self._stale = True
            self._wake_repair()

    # -- repairs ---------------------------------------------------------------------

    def _wake_repair(self) -> None:
        if self._repair_now is not None:
            self._repair_now.set()

    async def _repair_loop(self, client: RedisCluster, pubsub: ClusterPubSub) -> None:
        while True:
            self._repair_now = anyio.Event()
            with anyio.move_on_after(REPAIR_INTERVAL):
                await self._repair_now.wait()
            await anyio.sleep(0.01)  # a burst of pushes: one pass
            try:
                await self._repair(client, pubsub)
            except _IO_ERRORS as exc:
                logger.debug("redis broker: repair pass failed: %s", exc)

    async def _repair(self, client: RedisCluster, pubsub: ClusterPubSub) -> None:
        unreachable = getattr(pubsub, "_unreachable_nodes", None)
        if unreachable or self._stale:
            # A node is down, or a subscription failed: ask for the layout now, so that
            # a replica's promotion moves its channels over without waiting for the
            # library's own schedule (a refresh that changes it re-routes them).
            self._stale = False
            _ask_for_layout(client)
            with anyio.fail_after(self._connect_timeout):
                await client.initialize()
        dropped, self._dropped = self._dropped, set()
        if dropped & self.channels:
            logger.info(
                "redis broker: %d channel(s) moved with their slots; subscribing them on "
                "their new owner",
                len(dropped & self.channels),
            )
        for channel in dropped & self.channels:
            _forget_moved(client, pubsub, channel)
        held: set[str] = set()
        for node_pubsub in list(pubsub.node_pubsub_mapping.values()):
            held.update(_text(channel) for channel in node_pubsub.shard_channels)
            held.difference_update(
                _text(channel) for channel in node_pubsub.pending_unsubscribe_shard_channels
            )
        missing = sorted(self.channels - held)
        for channel in missing:
            if channel not in self.channels:
                continue
            try:
                with anyio.fail_after(self._connect_timeout):
                    await pubsub.ssubscribe(channel)
            except _IO_ERRORS:
                self._stale = True  # the next pass reads the layout first
                raise
            self.resubscribed += 1

    # -- state -----------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        delay = min(self._max_reconnect_delay, self._reconnect_delay * 2.0 ** min(attempt, 30))
        return delay / 2 + random.uniform(0, delay / 2)

    def _on_connected(self) -> None:
        self._attempt = 0
        self.connected = True
        self.connects += 1
        level = logging.INFO if self.connects == 1 else logging.WARNING
        logger.log(level, "redis broker: connected to the cluster at %s", self._display_url)

    def _on_connection_lost(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self.connected:
            self.connected = False
            self.disconnects += 1
            logger.warning(
                "redis broker: lost the cluster at %s (%s); reconnecting",
                self._display_url,
                _describe(exc),
            )
        elif self._first_attempt is not None and not self._first_attempt.is_set():
            logger.warning(
                "redis broker: cannot reach the cluster at %s (%s); local delivery only, retrying",
                self._display_url,
                _describe(exc),
            )
        else:
            logger.debug("redis broker: reconnect failed: %s", _describe(exc))

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        client, self._cluster = self._cluster, None
        if self.connected and not self._closed:
            self.connected = False
            self.disconnects += 1
        for event in self._acks.values():
            event.set()
        self._acks.clear()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._connect_timeout):
            with contextlib.suppress(Exception):
                if pubsub is not None:
                    await pubsub.aclose()
            with contextlib.suppress(Exception):
                if client is not None:
                    await client.aclose()


def _forget_moved(client: RedisCluster, pubsub: ClusterPubSub, channel: str) -> None:
    """Forget ``channel`` on every node connection but its slot's owner's (the server
    dropped it there: its slot moved), so that the repair subscribes it on the owner.

    redis-py keeps a channel the server unsubscribed in its books (it only forgets those
    it unsubscribed itself), and its reverse index would send it back to the old node."""
    try:
        node = client.get_node_from_key(channel)
    except _IO_ERRORS:
        node = None
    owner = node.name if node is not None else None
    for name, node_pubsub in list(pubsub.node_pubsub_mapping.items()):
        if name == owner:
            continue
        for key in [k for k in node_pubsub.shard_channels if _text(k) == channel]:
            node_pubsub.shard_channels.pop(key, None)
            node_pubsub.pending_unsubscribe_shard_channels.discard(key)
    index = getattr(pubsub, "_shard_channel_to_node", None)
    if isinstance(index, dict):
        for key in [k for k in index if _text(k) == channel]:
            if index[key] != owner:
                del index[key]


def _ask_for_layout(client: RedisCluster) -> None:
    """Make the client's next ``initialize()`` read the cluster's layout again.

    redis-py does this itself after a failed command; ``_request_refresh`` is how it
    asks (absent from another version: then the library's own schedule applies)."""
    request = getattr(client, "_request_refresh", None)
    if callable(request):
        request()


def _text(channel: object) -> str:
    return channel.decode(errors="replace") if isinstance(channel, bytes) else str(channel)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
