"""``RedisBroker``'s subscriber on one Redis: one pub/sub connection, its own RESP parser.

The reconnecting task, its backoff and its state logs are ``_reader.Reader``'s. Here:
connect (with a timeout), subscribe every channel, read, PING when idle so a silent
peer is noticed. Messages, and messages skipped for their size, go to ``on_push``;
subscription acks and pongs are handled here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

import anyio

from gatewayasgi.brokers._pubsub import Endpoint, PubSubConnection
from gatewayasgi.brokers._reader import Reader
from gatewayasgi.brokers._resp import Pong, Push, Reply, RespError, SubscriptionAck

CONTROL_CHANNEL_PREFIX = "gatewayasgi:broker:"
# The subscriber connection fails only with these (see ``PubSubConnection``).
_IO_ERRORS = (OSError, TimeoutError)


class Subscriber(Reader):
    """Keeps ``channels`` subscribed on one Redis and hands what arrives to ``on_push``."""

    io_errors = _IO_ERRORS

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
        super().__init__(
            display_url,
            on_push,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
            connect_timeout=connect_timeout,
            place=display_url,
        )
        self._endpoint = endpoint
        self._max_wire_size = max_wire_size
        self._health_check_interval = health_check_interval
        # The connection always holds this private channel, so it is a pubsub connection
        # from the start (CLIENT KILL TYPE pubsub applies, PING gets a pong push).
        self._control_channel = CONTROL_CHANNEL_PREFIX + uuid.uuid4().hex
        self._connection: PubSubConnection | None = None

    def _online(self) -> bool:
        return self._connection is not None

    async def _send_subscribe(self, channel: str) -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            await connection.subscribe(channel)
        except _IO_ERRORS:
            return False  # the reader sees the broken connection and resubscribes everything
        return True

    async def _send_unsubscribe(self, channel: str) -> None:
        connection = self._connection
        if connection is not None:
            # On failure the reader reconnects, and a fresh connection won't subscribe it.
            with contextlib.suppress(*_IO_ERRORS):
                await connection.unsubscribe(channel)

    # -- the reader task -----------------------------------------------------------------

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
                self._report_gaps()
            elif ping_sent_at is not None:
                if now - ping_sent_at > interval:
                    raise TimeoutError(f"no answer to a PING in {interval} s")
            elif now - last_heard >= interval:
                await connection.ping()
                ping_sent_at = now

    def _handle(self, push: Push) -> None:
        if isinstance(push, SubscriptionAck):
            if push.kind == "subscribe":
                channel = push.channel.decode(errors="replace")
                if channel in self.channels:
                    self._subscribed(channel)
                event = self._acks.pop(channel, None)
                if event is not None:
                    event.set()
        elif isinstance(push, Reply):
            if isinstance(push.value, RespError):
                # NOAUTH, or a command refused: this connection is no use, start over.
                raise ConnectionError(f"redis refused a command: {push.value.message}")
        elif not isinstance(push, Pong):
            self._on_push(push)

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._forget_connection()
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.aclose()
