"""What ``RedisBroker``'s two subscribers share: the life of a reader task that keeps a
subscription set on Redis (one server: ``_subscriber``; a cluster: ``_cluster``).

The task connects, subscribes every channel and reads until the connection fails; then
it drops the connection, waits (exponential backoff with equal jitter) and starts over,
until ``close``. ``start`` returns after the first attempt, so an app whose Redis is
away starts anyway (local delivery only). State changes are logged once each, never
per attempt: connected, lost, cannot reach.

Gaps: a channel whose subscription was interrupted (its connection lost; on a cluster
also a slot that moved or a refused subscription), or that was added while no
connection was up, may have missed messages. Once Redis acknowledges it again it is
reported to the gap handler (``Broker.on_gap``), once, with the others acknowledged in
the same read.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.brokers._resp import Push
from gatewayasgi.brokers.base import GapHandler

logger = logging.getLogger("gatewayasgi.brokers.redis")


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for a log line."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Reader:
    """A subscription set kept on Redis by a reconnecting task; messages to ``on_push``.

    ``channels``, ``connected``, ``connects``, ``disconnects`` and ``gaps`` are read by
    ``RedisBroker.stats``. Subclasses connect and read (``_connect_and_read``, which
    calls ``_on_connected`` once subscribed) and let go of the connection (``_drop``);
    ``io_errors`` are the failures that mean "Redis is away", not a bug.
    """

    io_errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)

    def __init__(
        self,
        display_url: str,
        on_push: Callable[[Push], None],
        *,
        reconnect_delay: float,
        max_reconnect_delay: float,
        connect_timeout: float,
        place: str,
    ) -> None:
        self._display_url = display_url  # the URL with its password redacted
        self._place = place
        """What the log lines call the server: the URL, or "the cluster at" it."""
        self._on_push = on_push
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connect_timeout = connect_timeout
        self.channels: set[str] = set()
        """The subscription set: what every (re)connect subscribes."""
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        self.gaps = 0
        """Channels reported to the gap handler (subscribed again after an interruption)."""
        self.on_gap: GapHandler | None = None
        self._gapped: set[str] = set()  # interrupted: reported once acknowledged again
        self._caught_up: list[str] = []  # acknowledged again, not reported yet
        self._acks: dict[str, anyio.Event] = {}
        # Scope and events are made in start(): anyio needs a running event loop for
        # them, and a broker is often built at import time (module-level app).
        self._scope: anyio.CancelScope | None = None
        self._first_attempt: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._attempt = 0
        self._closed = False

    async def start(self, task_group: TaskGroup) -> None:
        """Start the reader task; return after its first connection attempt (or a timeout)."""
        self._scope = anyio.CancelScope()
        self._first_attempt = first_attempt = anyio.Event()
        self._done = anyio.Event()
        task_group.start_soon(self._run, name=f"redis broker reader {self._display_url}")
        with anyio.move_on_after(self._connect_timeout + 1.0):
            await first_attempt.wait()

    async def close(self) -> None:
        """Stop the reader task and let go of its connections. Idempotent."""
        self._closed = True
        self.channels.clear()
        if self._scope is not None:
            self._scope.cancel()
        if self._done is not None:
            with anyio.move_on_after(self._connect_timeout, shield=True):
                await self._done.wait()
        await self._drop()
        self.connected = False

    async def subscribe(self, channel: str) -> None:
        """Add ``channel``; while connected, wait (at most the connect timeout) for the ack."""
        if self._closed or channel in self.channels:
            return
        self.channels.add(channel)
        if not self._online():
            self._gapped.add(channel)  # what was published meanwhile never arrives
            return  # subscribed on the next (re)connect
        ack = self._acks.setdefault(channel, anyio.Event())
        try:
            with anyio.move_on_after(self._connect_timeout):
                if await self._send_subscribe(channel):
                    await ack.wait()
        finally:
            if self._acks.get(channel) is ack:  # no longer in flight
                del self._acks[channel]

    async def unsubscribe(self, channel: str) -> None:
        """Remove ``channel`` and tell Redis when connected."""
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        self._gapped.discard(channel)
        waiting = self._acks.pop(channel, None)
        if waiting is not None:
            waiting.set()  # a subscribe still waiting for its ack returns now
        if self._online():
            await self._send_unsubscribe(channel)

    # -- what a subclass does ------------------------------------------------------------

    def _online(self) -> bool:
        """Whether a connection is there to send (un)subscriptions on."""
        raise NotImplementedError

    async def _send_subscribe(self, channel: str) -> bool:
        """Send the subscription; False when it failed (never raises)."""
        raise NotImplementedError

    async def _send_unsubscribe(self, channel: str) -> None:
        """Send the unsubscription (never raises)."""
        raise NotImplementedError

    async def _connect_and_read(self) -> None:
        """Connect, subscribe every channel, ``_on_connected()``, read until it fails."""
        raise NotImplementedError

    async def _drop(self) -> None:
        """Close the connection(s), then ``_forget_connection()``."""
        raise NotImplementedError

    # -- gaps (what a subclass calls) ----------------------------------------------------

    def _subscribed(self, channel: str) -> None:
        """Redis acknowledged ``channel`` on a live connection."""
        if channel in self._gapped:
            self._gapped.discard(channel)
            self._caught_up.append(channel)

    def _interrupted(self, channel: str) -> None:
        """``channel``'s subscription is gone until it is made again."""
        if channel in self.channels:
            self._gapped.add(channel)

    def _report_gaps(self) -> None:
        """Hand the channels acknowledged again since the last call to the gap handler."""
        if not self._caught_up:
            return
        channels, self._caught_up = self._caught_up, []
        self.gaps += len(channels)
        if self.on_gap is not None and not self._closed:
            try:
                self.on_gap(channels)
            except Exception:  # the handler's bug must not stop the reader
                logger.exception("redis broker: the gap handler failed")

    # -- the task --------------------------------------------------------------------------

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
        except self.io_errors as exc:
            self._on_connection_lost(exc)
        except Exception as exc:
            # A bug here must not take the app down: log it and reconnect.
            if not self._closed:
                logger.exception("redis broker: the subscriber of %s failed", self._place)
            self._on_connection_lost(exc)
        finally:
            await self._drop()
            assert self._first_attempt is not None
            self._first_attempt.set()

    def _backoff(self, attempt: int) -> float:
        """Exponential delay with "equal jitter": half fixed, half random."""
        delay = min(self._max_reconnect_delay, self._reconnect_delay * 2.0 ** min(attempt, 30))
        return delay / 2 + random.uniform(0, delay / 2)

    def _on_connected(self) -> None:
        self._attempt = 0
        self.connected = True
        self.connects += 1
        level = logging.INFO if self.connects == 1 else logging.WARNING
        logger.log(level, "redis broker: connected to %s", self._place)
        assert self._first_attempt is not None
        self._first_attempt.set()

    def _on_connection_lost(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self.connected:
            self.connected = False
            self.disconnects += 1
            logger.warning(
                "redis broker: lost connection to %s (%s); reconnecting",
                self._place,
                describe(exc),
            )
        elif self._first_attempt is not None and not self._first_attempt.is_set():
            logger.warning(
                "redis broker: cannot reach %s (%s); local delivery only, retrying",
                self._place,
                describe(exc),
            )
        else:
            logger.debug("redis broker: reconnect failed: %s", describe(exc))

    def _forget_connection(self) -> None:
        """The connection is gone: count it, and wake whoever waits for an ack on it.
        Every channel's subscription went with it."""
        if self.connected and not self._closed:
            self.connected = False
            self.disconnects += 1
        self._gapped |= self.channels
        for event in self._acks.values():
            event.set()  # nobody waits for an ack from a dead connection
        self._acks.clear()
