"""``RedisBroker(..., cluster=True)``'s subscriber: sharded pub/sub on a Redis Cluster.

Channels are subscribed with ``SSUBSCRIBE`` (Redis >= 7) on one pub/sub connection per
master (``_pubsub.PubSubConnection``, our own RESP reader), each read by a task of its
own that blocks on its socket: a message is handed on as soon as it arrives, whatever
the other masters are doing, and nothing runs while nothing arrives but a PING after
``health_check_interval`` of silence (the broker's setting), so that a silent
peer is noticed. redis-py's cluster client reads the layout (``CLUSTER SLOTS``: which
master owns a channel's slot) and nothing else. Around it this module keeps what the
broker contract needs:

* there is a connection to every master of the layout, holding channels or not, and
  each channel is subscribed on its slot's owner. The replies on a connection are
  matched, in order, to the commands sent on it, so an ack, a ``MOVED`` or another
  refusal is known per channel;
* the subscription set is ours: a channel the server dropped (Redis sends
  ``sunsubscribe`` to the clients of a slot that moved away), refused (``MOVED``, whose
  redirect is applied to the layout at once; the cluster down) or lost with its
  connection is subscribed again by a repair pass, at once after a drop, a ``MOVED`` or
  a lost connection and every ``REPAIR_INTERVAL`` seconds otherwise; ``resubscribed``
  counts them;
* while a master cannot be reached, the repair pass asks for a topology refresh and
  tries the master again every ``REPAIR_INTERVAL`` seconds, so a replica's promotion is
  noticed within about that long (redis-py runs a refresh at most once per its
  ``topology_refresh_min_interval``): the new master gets a connection and the channels
  of its slots, and a node that is no longer a master loses its connection;
* when no master can be reached (the cluster is down), everything is dropped and built
  again with capped exponential backoff and jitter, every channel subscribed again;
* ``subscribe`` returns once Redis acknowledged the channel (or after the connect
  timeout), as with one Redis.
* every channel subscribed again by a repair pass or a rebuild is reported to the gap
  handler once acknowledged (``_reader``): what was published on it meanwhile is lost.

Every master gets the credentials and TLS options the cluster client has (the first
URL's, client certificates included). A message over ``max_wire_size`` is skipped from
its length header, never read into memory; under the connection's 64 KiB floor it is
read whole, and the broker drops it for its size.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.brokers._pubsub import Endpoint, PubSubConnection
from gatewayasgi.brokers._reader import Reader, describe
from gatewayasgi.brokers._resp import (
    Message,
    OversizeMessage,
    Pong,
    Push,
    Reply,
    RespError,
    Skipped,
)

try:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.connection import SSLConnection
    from redis.exceptions import MovedError, RedisClusterException, RedisError
except ImportError as exc:  # pragma: no cover - the broker's import says the same
    raise ImportError(
        'RedisBroker needs the "redis" package: pip install "gatewayasgi[redis]"'
    ) from exc

logger = logging.getLogger("gatewayasgi.brokers.redis")

# ``RedisClusterException`` (no node reachable, a slot not covered) is no ``RedisError``.
# IndexError: redis-py's cluster client reading the layout of a cluster still forming
# (a node that knows no master yet).
_IO_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError, IndexError)
REPAIR_INTERVAL = 0.5
"""Seconds between two repair passes (lost channels, unreachable masters)."""
REPAIR_SETTLE = 0.01
"""How long a woken repair pass waits first, so that a burst of pushes makes one pass."""

_SSUBSCRIBE = b"SSUBSCRIBE"
_SUNSUBSCRIBE = b"SUNSUBSCRIBE"
_PING = b"PING"


class _Link:
    """One master's pub/sub connection, the task that reads it, and its channels."""

    def __init__(self, name: str, endpoint: Endpoint) -> None:
        self.name = name
        self.endpoint = endpoint
        self.channels: set[str] = set()
        """Routed here: subscribed, sent and not answered yet, or to send once connected."""
        self.sent: deque[tuple[bytes, str]] = deque()
        """The commands whose reply is due, in the order they went out."""
        self.connection: PubSubConnection | None = None
        self.lock = anyio.Lock()  # a command and its place in ``sent`` go together
        self.scope = anyio.CancelScope()
        self.settled = anyio.Event()
        """Set once the connection is up and its channels sent, or its task ended."""
        self.failed = False
        """Its task ended: the connection could not be made, or was lost or given up."""
        self.opened = False  # the connection was up (its loss is news: log it, repair)
        self.error: BaseException | None = None  # why it was lost, for the log
        self.retired = False  # closed by the repair pass: the node is no master now
        self.retry_at = 0.0  # once failed: when the repair pass may try the master again


class ClusterSubscriber(Reader):
    """Keeps ``channels`` subscribed (sharded) on a Redis Cluster; messages to ``on_push``.

    The same surface as ``_subscriber.Subscriber``. ``client`` makes a cluster client:
    each attempt gets a fresh one of its own (a client that met a cluster still forming
    can be left unusable). ``max_wire_size``: see the module docstring;
    ``health_check_interval``: how long a connection may stay silent before a PING.
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
        max_wire_size: int,
        health_check_interval: float,
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
        self._max_wire_size = max_wire_size
        self._health_check_interval = health_check_interval
        self.resubscribed = 0
        """Channels subscribed again by a repair pass (the server dropped or refused
        them, or their connection was lost), counted when Redis acknowledged them."""
        self._repairing: set[str] = set()  # routed by the repair pass, not acked yet
        self._cluster: RedisCluster | None = None
        self._tasks: TaskGroup | None = None  # the links' tasks, while an attempt runs
        self._links: dict[str, _Link] = {}  # by node name ("host:port")
        self._route: dict[str, _Link] = {}
        """Where each channel was sent (or waits to be): it leaves on a drop, a refusal,
        an unsubscribe, or with its link. A channel of ``channels`` not in here is what
        the repair pass subscribes."""
        self._confirmed: set[str] = set()
        """Channels Redis acknowledged (``ssubscribe``) and has not dropped since."""
        self._dropped: set[str] = set()  # channels the server unsubscribed (slot moved)
        self._moves: list[tuple[str, str]] = []  # MOVED redirects (text, sender host)
        self._lost: set[str] = set()  # masters whose connection was lost (for the log)
        self._losses: list[_Link] = []  # links lost since the last repair pass
        self._repair_now: anyio.Event | None = None
        self._stale = False  # the layout must be read again before the next routing

    def _online(self) -> bool:
        return self._tasks is not None

    async def _send_subscribe(self, channel: str) -> bool:
        try:
            link = self._owner(channel)
        except _IO_ERRORS as exc:  # a slot not covered: the repair pass retries
            logger.debug("redis broker: subscribing %s failed: %s", channel, describe(exc))
            link = None
        if link is None:
            self._stale = True  # subscribed by the repair pass once its master answers
            return False
        self._route_to(link, channel)
        if link.connection is None:
            return True  # sent by the link once connected
        return await self._send(link, _SSUBSCRIBE, channel)

    async def _send_unsubscribe(self, channel: str) -> None:
        link = self._route.get(channel)
        self._unroute(channel)
        if link is not None and link.connection is not None:
            # On failure the link is given up, and what arrives for the channel
            # meanwhile is not delivered (the broker checks the set).
            await self._send(link, _SUNSUBSCRIBE, channel)

    # -- the attempt ---------------------------------------------------------------------

    async def _connect_and_read(self) -> None:
        self._cluster = client = self._client()
        with anyio.fail_after(self._connect_timeout):
            await client.initialize()
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                for node in client.get_primaries():
                    self._open_link(node)
                for channel in sorted(self.channels):
                    with contextlib.suppress(*_IO_ERRORS):  # the repair pass retries
                        link = self._owner(channel)
                        if link is not None:
                            self._route_to(link, channel)
                with anyio.move_on_after(self._connect_timeout + 0.5):
                    for link in list(self._links.values()):
                        await link.settled.wait()
                if all(link.failed for link in self._links.values()):
                    raise ConnectionError("no master of the cluster answers")
                self._on_connected()
                await self._repair_loop(client)
            except Exception as exc:  # raised below, not as a group of one
                failure = exc
            finally:
                self._tasks = None
                tasks.cancel_scope.cancel()
        if failure is not None:
            raise failure

    # -- one master's connection -----------------------------------------------------------

    def _open_link(self, node: ClusterNode) -> _Link:
        """A link to ``node`` (replacing a failed one), its task started."""
        assert self._tasks is not None
        link = _Link(node.name, _endpoint(node))
        self._links[node.name] = link
        self._tasks.start_soon(self._run_link, link, name=f"redis broker shard {node.name}")
        return link

    async def _run_link(self, link: _Link) -> None:
        try:
            with link.scope:
                try:
                    with anyio.fail_after(self._connect_timeout):
                        connection = await PubSubConnection.open(link.endpoint, self._max_wire_size)
                except (OSError, TimeoutError) as exc:
                    logger.debug(
                        "redis broker: cannot reach master %s: %s", link.name, describe(exc)
                    )
                    return
                try:
                    # Set first: a channel routed here from now on is sent by whoever
                    # routes it, one routed before is in the snapshot below.
                    link.connection = connection
                    link.opened = True
                    for channel in sorted(link.channels):
                        await self._send(link, _SSUBSCRIBE, channel)
                    link.settled.set()
                    if link.name in self._lost:
                        self._lost.discard(link.name)
                        logger.info("redis broker: connected to master %s again", link.name)
                    await self._read(link, connection)
                except (OSError, TimeoutError) as exc:
                    link.error = exc
                finally:
                    link.connection = None
                    with anyio.CancelScope(shield=True):
                        await connection.aclose()
        finally:
            self._forget_link(link)

    async def _read(self, link: _Link, connection: PubSubConnection) -> None:
        """Handle what the master sends; PING when it was silent for the interval.

        Blocks on the socket between messages. If a PING gets no answer within the
        interval, the connection is given up (a vanished host's can stay "open").
        """
        interval = self._health_check_interval
        last_heard = anyio.current_time()
        ping_sent_at: float | None = None
        while True:
            pushes: list[Push] | None = None
            if interval > 0:
                with anyio.move_on_after(interval / 2):
                    pushes = await connection.receive()
            else:
                pushes = await connection.receive()
            now = anyio.current_time()
            if pushes is not None:
                last_heard, ping_sent_at = now, None
                for push in pushes:
                    self._handle(link, push)
                self._report_gaps()
            elif ping_sent_at is not None:
                if now - ping_sent_at > interval:
                    raise TimeoutError(f"no answer to a PING in {interval} s")
            elif now - last_heard >= interval:
                if not await self._send(link, _PING, ""):
                    return
                ping_sent_at = now

    async def _send(self, link: _Link, command: bytes, channel: str) -> bool:
        """Send one command on ``link`` and expect its reply; False if it did not go out.

        A command and its place among the replies due go together: one that may have
        gone out in part (failed, or slower than the connect timeout) makes the replies
        impossible to match, so the link is given up (its channels are routed again).
        Never cancelled half-way, for the same reason. A subscription whose channel is
        no longer routed here by the time it would go out (unsubscribed meanwhile) is
        not sent, nor an unsubscription whose channel was routed here again.
        """
        sent = False
        with anyio.CancelScope(shield=True):
            async with link.lock:
                connection = link.connection
                if connection is None:
                    return False
                if command != _PING and (self._route.get(channel) is link) != (
                    command == _SSUBSCRIBE
                ):
                    return False
                link.sent.append((command, channel))
                with anyio.move_on_after(self._connect_timeout):
                    try:
                        await connection.send(command, *([channel.encode()] if channel else []))
                        sent = True
                    except OSError as exc:
                        link.error = exc
                if not sent:
                    link.error = link.error or TimeoutError("a command took too long to send")
                    link.scope.cancel()
        return sent

    def _handle(self, link: _Link, push: Push) -> None:
        if isinstance(push, Reply) and isinstance(push.value, list) and len(push.value) == 3:
            kind, channel, data = push.value
            if kind == b"smessage":
                if isinstance(channel, bytes) and isinstance(data, bytes):
                    self._on_push(Message(channel, data))
                elif isinstance(data, Skipped):
                    name = channel if isinstance(channel, bytes) else None
                    self._on_push(OversizeMessage(name, data.length))
                elif isinstance(channel, Skipped) and isinstance(data, bytes):
                    self._on_push(OversizeMessage(None, channel.length + len(data)))
                return
            if kind == b"ssubscribe" and isinstance(channel, bytes):
                self._acknowledged(link, channel.decode(errors="replace"))
                return
            if kind == b"sunsubscribe" and isinstance(channel, bytes):
                self._left(link, channel.decode(errors="replace"))
                return
        if isinstance(push, Pong) or push == Reply("PONG"):
            self._answered(link, _PING, "")
        elif isinstance(push, Reply) and isinstance(push.value, RespError):
            self._refused(link, push.value.message)
        else:
            raise ConnectionError(f"unexpected reply from master {link.name}: {push!r:.200}")

    def _answered(self, link: _Link, command: bytes, channel: str) -> None:
        """The reply to the oldest command due: it must be ``command`` for ``channel``."""
        due = link.sent.popleft() if link.sent else None
        if due != (command, channel):
            # The replies no longer match the commands: start this connection over.
            raise ConnectionError(
                f"master {link.name} answered {command.decode()} {channel!r} to {due!r}"
            )

    def _acknowledged(self, link: _Link, channel: str) -> None:
        self._answered(link, _SSUBSCRIBE, channel)
        if self._route.get(channel) is link:
            self._confirmed.add(channel)
            self._subscribed(channel)
            if channel in self._repairing:
                self._repairing.discard(channel)
                self.resubscribed += 1
            event = self._acks.pop(channel, None)
            if event is not None:
                event.set()

    def _left(self, link: _Link, channel: str) -> None:
        if link.sent and link.sent[0] == (_SUNSUBSCRIBE, channel):
            link.sent.popleft()  # the reply to our own unsubscribe
        elif self._route.get(channel) is link:
            # Not ours: the channel's slot moved away from this master. Subscribe it
            # again on its new owner (the repair pass logs how many, once).
            self._unroute(channel)
            self._dropped.add(channel)
            self._stale = True
            self._wake_repair()

    def _refused(self, link: _Link, message: str) -> None:
        due = link.sent.popleft() if link.sent else None
        if due is None or due[0] == _PING:
            raise ConnectionError(f"master {link.name} refused a command: {message}")
        command, channel = due
        if command != _SSUBSCRIBE:
            return  # an unsubscribe refused: nothing of it is left here either way
        logger.debug("redis broker: master %s refused %s: %s", link.name, channel, message)
        if self._route.get(channel) is link:
            self._unroute(channel)  # the repair pass subscribes it again
        self._stale = True
        if message.startswith("MOVED "):
            self._moves.append((message[len("MOVED ") :], link.endpoint.host))
            self._wake_repair()
        # Otherwise (the cluster down, a slot not served) the next timed pass retries.

    def _forget_link(self, link: _Link) -> None:
        """``link``'s task ended: its channels are subscribed again where they belong."""
        link.failed = True
        link.connection = None
        link.settled.set()
        # A connection lost is made again at once; one that could not be made waits.
        link.retry_at = anyio.current_time() + (0 if link.opened else REPAIR_INTERVAL / 2)
        for channel in list(link.channels):
            self._unroute(channel)
            # Nobody waits for an ack from a dead connection.
            event = self._acks.pop(channel, None)
            if event is not None:
                event.set()
        link.sent.clear()
        if self._tasks is None or self._closed or link.retired:
            return  # the attempt is over, or the repair pass routes its channels
        self._stale = True
        if link.opened:
            self._losses.append(link)  # logged by the repair pass, unless all are lost
            self._wake_repair()

    # -- routing -----------------------------------------------------------------------

    def _owner(self, channel: str) -> _Link | None:
        """The link to the master of ``channel``'s slot; None while it is unreachable.

        Raises what redis-py raises for a slot no master serves."""
        client = self._cluster
        if client is None or self._tasks is None:
            return None
        node = client.get_node_from_key(channel)
        if node is None:
            return None
        link = self._links.get(node.name)
        if link is None:
            return self._open_link(node)
        return None if link.failed else link

    def _route_to(self, link: _Link, channel: str) -> None:
        self._route[channel] = link
        link.channels.add(channel)

    def _unroute(self, channel: str) -> None:
        link = self._route.pop(channel, None)
        if link is not None:
            link.channels.discard(channel)
        self._confirmed.discard(channel)
        self._repairing.discard(channel)

    # -- repairs ---------------------------------------------------------------------

    def _wake_repair(self) -> None:
        if self._repair_now is not None:
            self._repair_now.set()

    async def _repair_loop(self, client: RedisCluster) -> None:
        while True:
            self._repair_now = anyio.Event()
            with anyio.move_on_after(REPAIR_INTERVAL):
                await self._repair_now.wait()
            await anyio.sleep(REPAIR_SETTLE)
            if self._links and all(link.failed for link in self._links.values()):
                raise ConnectionError("no master of the cluster answers")
            self._log_losses()
            try:
                await self._repair(client)
            except _IO_ERRORS as exc:
                logger.debug("redis broker: repair pass failed: %s", describe(exc))

    def _log_losses(self) -> None:
        losses, self._losses = self._losses, []
        for link in losses:
            if link.name not in self._lost:
                self._lost.add(link.name)
                logger.warning(
                    "redis broker: lost connection to master %s of %s (%s)",
                    link.name,
                    self._place,
                    describe(link.error) if link.error else "closed",
                )

    async def _repair(self, client: RedisCluster) -> None:
        moves, self._moves = self._moves, []
        for redirect, sender in moves:
            await _apply_move(client, redirect, sender)
        if self._stale or any(link.failed for link in self._links.values()):
            # A master is down, or a subscription failed: ask for the layout now, so
            # that a replica's promotion moves its channels over without waiting for
            # the library's own schedule.
            self._stale = False
            _ask_for_layout(client)
            with anyio.fail_after(self._connect_timeout):
                await client.initialize()
        self._follow_layout(client)
        dropped, self._dropped = self._dropped, set()
        if dropped & self.channels:
            logger.info(
                "redis broker: %d channel(s) moved with their slots; subscribing them on "
                "their new owner",
                len(dropped & self.channels),
            )
        for channel in sorted(self.channels - self._route.keys()):
            if channel in self._route or channel not in self.channels:
                continue  # routed or unsubscribed while this pass waited
            try:
                link = self._owner(channel)
            except _IO_ERRORS:
                link = None
            if link is None:
                self._stale = True  # the next pass reads the layout first
                continue
            self._route_to(link, channel)
            self._repairing.add(channel)
            self._interrupted(channel)
            if link.connection is not None:
                await self._send(link, _SSUBSCRIBE, channel)

    def _follow_layout(self, client: RedisCluster) -> None:
        """A link to every master of the layout (tried again if it failed); none to a
        node that is no longer one (its channels are subscribed on their owner)."""
        masters = {node.name: node for node in client.get_primaries()}
        now = anyio.current_time()
        for name, node in masters.items():
            link = self._links.get(name)
            if link is None or (link.failed and now >= link.retry_at):
                self._open_link(node)
        for name, link in list(self._links.items()):
            if name not in masters:
                del self._links[name]
                link.retired = True
                for channel in list(link.channels):
                    self._unroute(channel)
                link.scope.cancel()

    # -- the connections ---------------------------------------------------------------

    async def _drop(self) -> None:
        client, self._cluster = self._cluster, None
        links = list(self._links.values())
        self._links.clear()
        self._route.clear()
        self._confirmed.clear()
        self._repairing.clear()
        self._dropped.clear()
        self._moves.clear()
        self._lost.clear()  # "connected to the cluster" says it for every master
        self._losses.clear()
        self._forget_connection()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._connect_timeout):
            for link in links:
                link.scope.cancel()
                connection, link.connection = link.connection, None
                if connection is not None:
                    await connection.aclose()
            with contextlib.suppress(Exception):
                if client is not None:
                    await client.aclose()


@dataclass(frozen=True, slots=True)
class _NodeEndpoint(Endpoint):
    """An ``Endpoint`` with the TLS options redis-py takes and a URL cannot give
    ``parse_url``: a client certificate, CA data or a CA directory."""

    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_ca_data: str | None = None
    ssl_ca_path: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = Endpoint.ssl_context(self)
        if self.ssl_ca_data or self.ssl_ca_path:
            context.load_verify_locations(capath=self.ssl_ca_path, cadata=self.ssl_ca_data)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, self.ssl_password)
        return context


def _endpoint(node: ClusterNode) -> Endpoint:
    """How to reach ``node``: its address, with the cluster client's credentials and TLS."""
    kwargs = node.connection_kwargs
    cert_reqs = kwargs.get("ssl_cert_reqs", "required")
    if isinstance(cert_reqs, ssl.VerifyMode):
        cert_reqs = {ssl.CERT_NONE: "none", ssl.CERT_OPTIONAL: "optional"}.get(
            cert_reqs, "required"
        )
    elif cert_reqs is None:
        cert_reqs = "none"
    return _NodeEndpoint(
        host=node.host,
        port=int(node.port),
        tls=issubclass(node.connection_class, SSLConnection),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        ssl_cert_reqs=str(cert_reqs).lower(),
        ssl_ca_certs=kwargs.get("ssl_ca_certs"),
        ssl_check_hostname=bool(kwargs.get("ssl_check_hostname", True)),
        ssl_certfile=kwargs.get("ssl_certfile"),
        ssl_keyfile=kwargs.get("ssl_keyfile"),
        ssl_password=kwargs.get("ssl_password"),
        ssl_ca_data=kwargs.get("ssl_ca_data"),
        ssl_ca_path=kwargs.get("ssl_ca_path"),
    )


async def _apply_move(client: RedisCluster, redirect: str, sender: str) -> None:
    """Point the layout's slot at the master a ``MOVED <slot> <host>:<port>`` named, so
    that the next routing of its channels goes there before the next refresh."""
    slot, _, address = redirect.partition(" ")
    if address.startswith(":"):
        address = sender + address  # a redirect without a host is relative to its sender
    try:
        moved = client.nodes_manager.move_slot(MovedError(f"{slot} {address}"))
        if inspect.isawaitable(moved):
            await moved
    except Exception as exc:  # the refresh asked for corrects the layout anyway
        logger.debug("redis broker: could not apply MOVED %s: %s", redirect, describe(exc))
    _ask_for_layout(client)


def _ask_for_layout(client: RedisCluster) -> None:
    """Make the client's next ``initialize()`` read the cluster's layout again.

    redis-py does this itself after a failed command; ``_request_refresh`` is how it
    asks (absent from another version: then the library's own schedule applies)."""
    request = getattr(client, "_request_refresh", None)
    if callable(request):
        request()
