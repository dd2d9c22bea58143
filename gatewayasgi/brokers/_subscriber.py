"""``RedisBroker``'s subscriber: one pub/sub connection kept alive in a background task.

It owns the subscription set and the connection's life: connect (with a timeout),
subscribe every channel, read, PING when idle, and on any failure drop the connection,
wait (exponential backoff with jitter) and start over. Messages, and messages skipped
for their size, go to ``on_push``; subscription acks and pongs are handled here.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.brokers._pubsub import Endpoint, PubSubConnection
from gatewayasgi.brokers._resp import Pong, Push, Reply, RespError, SubscriptionAck

logger = logging.getLogger("gatewayasgi.brokers.redis")

CONTROL_CHANNEL_PREFIX = "gatewayasgi:broker:"
# The subscriber connection fails only with these (see ``PubSubConnection``).
_IO_ERRORS = (OSError, TimeoutError)


class Subscriber:
    """Keeps ``channels`` subscribed on Redis and hands what arrives to ``on_push``.

    ``connected``, ``connects`` and ``disconnects`` are read by ``RedisBroker.stats``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        display_url: str,
        on_push: Callable[[Push], None],
        *,
        max_wire_size: int,
        reconnect_delay: float,
        max_reconnect_delay: float,
        connect_timeout: float,
        health_check_interval: float,
    ) -> None:
        self._endpoint = endpoint
        self._display_url = display_url  # the URL with its password redacted
        self._on_push = on_push
        self._max_wire_size = max_wire_size
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._connect_timeout = connect_timeout
        self._health_check_interval = health_check_interval
        self.channels: set[str] = set()
        """The subscription set: what every (re)connect subscribes."""
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        # The connection always holds this private channel, so it is a pubsub connection
        # from the start (CLIENT KILL TYPE pubsub applies, PING gets a pong push).
        self._control_channel = CONTROL_CHANNEL_PREFIX + uuid.uuid4().hex
        self._connection: PubSubConnection | None = None
        # Scope and events are made in start(): anyio needs a running event loop for
        # them, and a broker is often built at import time (module-level app).
        self._scope: anyio.CancelScope | None = None
        self._first_attempt: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._acks: dict[str, anyio.Event] = {}
        self._attempt = 0
        self._closed = False

    async def start(self, task_group: TaskGroup) -> None:
        """Start the reader task; return after its first connection attempt (or a timeout)."""
        self._scope = anyio.CancelScope()
        self._first_attempt = first_attempt = anyio.Event()
        self._done = anyio.Event()
        task_group.start_soon(self._run, name=f"redis broker {self._display_url}")
        with anyio.move_on_after(self._connect_timeout + 1.0):
            await first_attempt.wait()

    async def close(self) -> None:
        """Stop the reader task, which closes its connection on the way out. Idempotent."""
        self._closed = True
        self.channels.clear()
        if self._scope is not None:
            self._scope.cancel()
        if self._done is not None:
            with anyio.move_on_after(self._connect_timeout, shield=True):
                await self._done.wait()
        await self._drop_connection()
        self.connected = False

    async def subscribe(self, channel: str) -> None:
        """Add ``channel``; while connected, wait (at most the connect timeout) for the ack."""
        if self._closed or channel in self.channels:
            return
        self.channels.add(channel)
        connection = self._connection
        if connection is None:
            return  # subscribed on the next (re)connect
        ack = self._acks.setdefault(channel, anyio.Event())
        with anyio.move_on_after(self._connect_timeout):
            try:
                await connection.subscribe(channel)
            except _IO_ERRORS:
                return  # the reader sees the broken connection and resubscribes everything
            await ack.wait()

    async def unsubscribe(self, channel: str) -> None:
        """Remove ``channel`` and tell Redis when connected."""
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        connection = self._connection
        if connection is not None:
            # On failure the reader reconnects, and a fresh connection won't subscribe it.
            with contextlib.suppress(*_IO_ERRORS):
                await connection.unsubscribe(channel)

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
            # A bug here must not take the app down: log it and reconnect.
            if not self._closed:
                logger.exception("redis broker: subscriber failed")
            self._on_connection_lost(exc)
        finally:
            await self._drop_connection()
            assert self._first_attempt is not None
            self._first_attempt.set()

    def _backoff(self, attempt: int) -> float:
        """Exponential delay with "equal jitter": half fixed, half random."""
        delay = min(self._max_reconnect_delay, self._reconnect_delay * 2.0 ** min(attempt, 30))
        return delay / 2 + random.uniform(0, delay / 2)

    async def _connect_and_read(self) -> None:
        with anyio.fail_after(self._connect_timeout):
            connection = await PubSubConnection.open(self._endpoint, self._max_wire_size)
            try:
                # Subscribe to a snapshot, then hand the connection to subscribe() and
                # unsubscribe() and reconcile whatever changed while it was on the wire.
                snapshot = set(self.channels)
                await connection.subscribe(self._control_channel, *sorted(snapshot))
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await connection.aclose()
                raise
        self._connection = connection
        if self.channels - snapshot:
            await connection.subscribe(*sorted(self.channels - snapshot))
        if snapshot - self.channels:
            await connection.unsubscribe(*sorted(snapshot - self.channels))
        self._on_connected()
        assert self._first_attempt is not None
        self._first_attempt.set()
        await self._read_forever(connection)

    async def _read_forever(self, connection: PubSubConnection) -> None:
        """Handle pushes; PING when idle so a silent peer is noticed.

        A TCP connection to a vanished host can stay "open" for hours: if a PING gets
        no answer within ``health_check_interval``, the connection is given up. Any
        bytes count as an answer, part of a message being skipped included.
        """
        interval = self._health_check_interval
        last_heard = anyio.current_time()
        ping_sent_at: float | None = None
        while True:
            pushes: list[Push] | None = None
            with anyio.move_on_after(interval / 2):
                pushes = await connection.receive()
            now = anyio.current_time()
            if pushes is not None:
                last_heard, ping_sent_at = now, None
                for push in pushes:
                    self._handle(push)
            elif ping_sent_at is not None:
                if now - ping_sent_at > interval:
                    raise TimeoutError(f"no answer to a PING in {interval} s")
            elif now - last_heard >= interval:
                await connection.ping()
                ping_sent_at = now

    def _handle(self, push: Push) -> None:
        if isinstance(push, SubscriptionAck):
            if push.kind == "subscribe":
                event = self._acks.pop(push.channel.decode(errors="replace"), None)
                if event is not None:
                    event.set()
        elif isinstance(push, Reply):
            if isinstance(push.value, RespError):
                # NOAUTH, or a command refused: this connection is no use, start over.
                raise ConnectionError(f"redis refused a command: {push.value.message}")
        elif not isinstance(push, Pong):
            self._on_push(push)

    def _on_connected(self) -> None:
        self._attempt = 0
        self.connected = True
        self.connects += 1
        level = logging.INFO if self.connects == 1 else logging.WARNING
        logger.log(level, "redis broker: connected to %s", self._display_url)

    def _on_connection_lost(self, exc: BaseException) -> None:
        if self._closed:
            return
        if self.connected:
            self.connected = False
            self.disconnects += 1
            logger.warning(
                "redis broker: lost connection to %s (%s); reconnecting",
                self._display_url,
                describe(exc),
            )
        elif self._first_attempt is not None and not self._first_attempt.is_set():
            logger.warning(
                "redis broker: cannot reach %s (%s); local delivery only, retrying",
                self._display_url,
                describe(exc),
            )
        else:
            logger.debug("redis broker: reconnect failed: %s", describe(exc))

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if self.connected and not self._closed:
            self.connected = False
            self.disconnects += 1
        for event in self._acks.values():
            event.set()  # nobody waits for an ack from a dead connection
        self._acks.clear()
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.aclose()


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for a log line."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
