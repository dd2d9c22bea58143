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
from collections.abc import Callable
from typing import Any

import anyio

from gatewayasgi.brokers._reader import Reader, describe
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
BUSY_POLL_TIMEOUT = 0.005
"""The read's wait while messages flow (one came in the last ``BUSY_WINDOW`` seconds).
The library reads the masters' connections in turns, splitting the wait between them:
a message on one master waits while another's slice runs, so a short wait keeps that
delay to a few milliseconds, and an idle broker goes back to ``POLL_TIMEOUT``."""
BUSY_WINDOW = 2.0
"""How long one read of every node's connection waits for a message (seconds): also
about how long a ``subscribe`` waits for the reader to let go of the connection."""
REPAIR_INTERVAL = 0.5
"""Seconds between two repair passes (lost channels, unreachable nodes)."""


class ClusterSubscriber(Reader):
    """Keeps ``channels`` subscribed (sharded) on a Redis Cluster; messages to ``on_push``.

    The same surface as ``_subscriber.Subscriber``. ``client`` makes a cluster client:
    each attempt gets a fresh one of its own (a client that met a cluster still forming
    can be left unusable).
    """

    io_errors = _IO_ERRORS

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
        super().__init__(
            display_url,
            on_push,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
            connect_timeout=connect_timeout,
            place=f"the cluster at {display_url}",
        )
        self._client = client
        self.resubscribed = 0
        """Channels subscribed again by a repair pass (the server or the library lost them)."""
        self._pubsub: ClusterPubSub | None = None
        self._cluster: RedisCluster | None = None
        self._repair_now: anyio.Event | None = None
        self._stale = False
        self._dropped: set[str] = set()  # channels the server unsubscribed (slot moved)
        self._confirmed: set[str] = set()
        """Channels Redis acknowledged (``ssubscribe``) and has not dropped since: what
        the repair pass trusts, rather than the library's books (which can list a
        channel on its new owner before any subscription reached it)."""

    def _online(self) -> bool:
        return self._pubsub is not None

    async def _send_subscribe(self, channel: str) -> bool:
        pubsub = self._pubsub
        if pubsub is None:
            return False
        try:
            await pubsub.ssubscribe(channel)
        except Exception as exc:  # never into the caller: the repair pass retries
            logger.debug("redis broker: subscribing %s failed: %s", channel, describe(exc))
            self._stale = True
            self._wake_repair()  # subscribed again once its node answers
            return False
        return True

    async def unsubscribe(self, channel: str) -> None:
        self._confirmed.discard(channel)
        await super().unsubscribe(channel)

    async def _send_unsubscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is not None:
            # On failure the channel may stay subscribed on a dead connection; what
            # arrives for it is not delivered (the broker checks the set).
            with contextlib.suppress(Exception):
                await pubsub.sunsubscribe(channel)

    # -- the reader task -----------------------------------------------------------------

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
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._repair_loop, client, pubsub)
            try:
                await self._read_forever(pubsub)
            finally:
                tg.cancel_scope.cancel()

    async def _read_forever(self, pubsub: ClusterPubSub) -> None:
        last_message = -BUSY_WINDOW
        while True:
            nodes = len(pubsub.node_pubsub_mapping)
            busy = nodes > 1 and anyio.current_time() - last_message < BUSY_WINDOW
            message = await pubsub.get_sharded_message(
                timeout=BUSY_POLL_TIMEOUT if busy else POLL_TIMEOUT
            )
            if message is None:
                if not nodes:
                    # Nothing subscribed anywhere: the library would return at once.
                    await anyio.sleep(POLL_TIMEOUT)
                continue
            last_message = anyio.current_time()
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
            if channel in self.channels:
                self._confirmed.add(channel)
            event = self._acks.pop(channel, None)
            if event is not None:
                event.set()
        elif kind == "sunsubscribe" and channel in self.channels:
            self._confirmed.discard(channel)
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
        # Not yet acknowledged: dropped, lost on the way, or still in flight (subscribing
        # once more is harmless: Redis acknowledges it again).
        missing = sorted(self.channels - self._confirmed - self._acks.keys())
        for channel in missing:
            if channel not in self.channels or channel in self._confirmed:
                continue
            try:
                with anyio.fail_after(self._connect_timeout):
                    await pubsub.ssubscribe(channel)
            except _IO_ERRORS:
                self._stale = True  # the next pass reads the layout first
                raise
            self.resubscribed += 1

    # -- the connections ---------------------------------------------------------------

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        client, self._cluster = self._cluster, None
        self._confirmed.clear()
        self._forget_connection()
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
