"""``EngineSocket``: one Engine.IO v4 connection, over WebSocket or HTTP long-polling.

It owns what the transports share: the heartbeat (server pings, client pongs), the
namespaces joined over it (``links.Link``, each a gateway connection), binary
attachments being assembled, and the way out: a WebSocket's ``send``, or the bounded
queue the next polling ``GET`` takes (``polling.PollQueue``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from gatewayasgi._types import Receive, Scope, Send
from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.engineio import Malformed
from gatewayasgi.protocol.socketio import (
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    DISCONNECT,
    SEPARATOR,
    pack,
    split_frame,
)
from gatewayasgi.protocol.targets import new_client_id
from gatewayasgi.runtime.throttle import TokenBucket
from gatewayasgi.socketio.links import Link
from gatewayasgi.socketio.polling import PollQueue

if TYPE_CHECKING:
    from gatewayasgi.runtime.runner import GatewayRunner
    from gatewayasgi.settings import Settings
    from gatewayasgi.socketio.options import SocketIO
    from gatewayasgi.socketio.polling import PollBudget

logger = logging.getLogger("gatewayasgi")

_BINARY = (BINARY_EVENT, BINARY_ACK)


class Namespaces(Protocol):
    """What a connection needs of the endpoint it belongs to
    (``socketio.endpoint.Endpoint``): its options and limits, and its namespaces."""

    options: SocketIO
    settings: Settings
    poll_budget: PollBudget

    def route(self, namespace: str) -> tuple[GatewayRunner, dict[str, str]] | None:
        """The runner serving ``namespace`` and its path parameters, if any."""

    def namespace_scope(
        self, socket: EngineSocket, link: Link, auth: dict[str, Any], path_params: dict[str, str]
    ) -> Scope:
        """The scope a namespace's connection is served with."""


class SendLock:
    """Keeps a packet's attachments right behind it on one socket (several namespaces'
    writers share it). Unlike ``anyio.Lock`` nothing in it belongs to a task, and taking
    it free does not suspend: a send may begin in one task (an outbox's eager write, run
    in the emitting handler's task) and finish in another (the outbox's writer), which a
    task-bound lock or cancel scope cannot survive."""

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[anyio.Event] = deque()

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        while self._held:
            event = anyio.Event()
            self._waiters.append(event)
            await event.wait()
        self._held = True

    async def __aexit__(self, *exc: object) -> None:
        self._held = False
        while self._waiters:
            self._waiters.popleft().set()


class EngineSocket:
    """One Engine.IO connection (see the module docstring)."""

    def __init__(self, endpoint: Namespaces, sid: str, scope: Scope, transport: str):
        self.endpoint = endpoint
        self.options = endpoint.options
        self.sid = sid
        self.scope = scope
        """The handshake's scope (headers, query, client): every namespace sees it."""
        self.links: dict[str, Link] = {}
        self.client_closed = False
        """Closed by the client's close packet while no polling GET was open: the GET it
        may have sent with it, arriving a moment later, is answered (``LastPolls``)."""
        self.closed = False
        self.upgrading = False
        self._ws_send: Send | None = None
        self._receive: Receive | None = None
        self._in_receive = False
        """A task waits in the WebSocket's ``receive`` (one at a time)."""
        self._reader_wake = anyio.Event()
        self._awaiting_reader = False
        # Made when first needed: an idle WebSocket connection holds as little as it can.
        self._lock: SendLock | None = None
        self.polling = PollQueue(endpoint.poll_budget) if transport == "polling" else None
        """What waits for the next polling GET (polling connections, before an upgrade)."""
        self._pong: anyio.Event | None = None
        self._ping_sent: float | None = None
        self._joined = False
        """A namespace's CONNECT succeeded (its handshake guards passed)."""
        settings = endpoint.settings
        now = monotonic()
        self._packets = (
            None
            if settings.rate_limit is None
            else TokenBucket(settings.rate_limit * 2, settings.rate_burst * 2, now)
        )
        """Every Engine.IO packet of the connection (any namespace, any kind): twice a
        native connection's budget, so a namespace's own throttle (which tells the
        client) acts first; past it the connection closes."""
        self._connects = TokenBucket(self.options.connect_rate, self.options.connect_burst, now)
        """CONNECT packets: each may run a namespace's handshake guards."""
        self._settled: anyio.Event | None = None
        self._attaching: tuple[Link, str, int, list[bytes], int] | None = None
        self._task_group: TaskGroup | None = None
        self._timers = anyio.CancelScope()
        self.on_close: Callable[[EngineSocket], None] | None = None

    # -- life -----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats and the namespaces' sessions, until the connection closes and
        every session has ended. Started with ``TaskGroup.start``: packets may come as
        soon as it returns."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            task_status.started()
            await self._timed()

    async def serve_websocket(self) -> None:
        """A connection opened on a WebSocket: its sessions and heartbeat in one task
        group with the reader (this task), until the connection closes and every
        session has ended."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            task_group.start_soon(self._timed)
            try:
                await self.read_websocket()
            finally:
                self.close()

    async def _timed(self) -> None:
        with self._timers:
            await self._heartbeat()
        # Closed (a timeout, the client, a malformed packet): a WebSocket is told so at
        # once, and its reader sees the disconnect.
        if self._ws_send is not None:
            await close_websocket(self._ws_send)

    def close(self, code: int = CloseCode.ABNORMAL, why: str = "") -> None:
        """End the connection: every namespace's session ends (``code`` tells them how)."""
        if self.closed:
            return
        self.closed = True
        if why:
            logger.debug("engine.io %s closed: %s", self.sid, why)
        for link in list(self.links.values()):
            link.gone(code)
        self.links.clear()
        self._timers.cancel()
        self._reader_wake.set()
        if self.polling is not None:
            self.polling.close()
        if self.on_close is not None:
            self.on_close(self)

    def joined(self) -> None:
        """A namespace accepted the connection: ``connect_timeout`` no longer applies."""
        self._joined = True

    def forget(self, link: Link) -> None:
        """A namespace's connection ended: a new CONNECT may open it again."""
        if self.links.get(link.namespace) is link:
            del self.links[link.namespace]
            self._reader_wake.set()  # who reads may change

    def expired(self) -> bool:
        """A ping went unanswered past ``ping_timeout`` (checked on every request too)."""
        sent = self._ping_sent
        return sent is not None and monotonic() - sent > self.options.ping_timeout

    async def _heartbeat(self) -> None:
        """Ping every ``ping_interval`` and close when the pong is late; before the first
        namespace is joined, close at ``connect_timeout`` too (checked at each wake)."""
        options = self.options
        opened = monotonic()
        due = opened + options.ping_interval
        while True:
            now = monotonic()
            wake = due
            if not self._joined:
                deadline = opened + options.connect_timeout
                if now >= deadline:
                    self.close(CloseCode.ABNORMAL, "no namespace joined in time")
                    return
                wake = min(due, deadline)
            if now < wake:
                await anyio.sleep(wake - now)
                continue
            if not await self._ping():
                self.close(CloseCode.ABNORMAL, "ping timeout")
                return
            due = monotonic() + options.ping_interval

    async def _ping(self) -> bool:
        """One ping; False when its pong did not come within ``ping_timeout``."""
        timeout = self.options.ping_timeout
        pong = self._pong = anyio.Event()
        self._ping_sent = monotonic()
        await self.send(engineio.PING)
        with anyio.move_on_after(timeout):
            await pong.wait()
        while not pong.is_set() and self._unread():
            # The namespace's session reads the socket and is in a handler now: the
            # pong may be waiting unread. It counts once someone reads again.
            with anyio.move_on_after(timeout):
                await pong.wait()
        self._ping_sent = None
        self._pong = None
        return pong.is_set()

    def _unread(self) -> bool:
        return self._receive is not None and not self._in_receive and not self.closed

    # -- inbound ----------------------------------------------------------------------

    # Who reads the WebSocket. With one namespace joined, its session reads for itself
    # (``Link.receive`` -> ``read_one``): a packet goes from the socket to its handler in
    # one task, with no hand-off. Otherwise (no namespace yet, or several) the
    # connection's own task reads and hands each packet to its namespace's queue.

    def _single(self) -> bool:
        return self._receive is not None and len(self.links) == 1 and not self.upgrading

    def direct(self) -> Link | None:
        """The one namespace whose session reads the WebSocket itself, if any."""
        return next(iter(self.links.values())) if self._single() else None

    def may_read(self, link: Link) -> bool:
        """Whether ``link``'s session may read the WebSocket now (it is ``direct``)."""
        return (
            not self._in_receive
            and not self.closed
            and self._single()
            and self.links.get(link.namespace) is link
        )

    async def read_websocket(self) -> None:
        """The connection's own reader: it reads while no namespace session does, until
        the WebSocket or this connection ends."""
        while not self.closed:
            direct = self.direct()
            if direct is not None or self._in_receive:
                self._reader_wake = anyio.Event()
                # Woken when the namespaces change (or the connection ends), and when
                # the task in ``receive`` leaves it if that is what this waits for.
                self._awaiting_reader = direct is None
                if direct is not None:
                    direct.wake()  # its session reads from now on
                await self._reader_wake.wait()
                continue
            await self.read_one(None)

    async def read_one(self, link: Link | None) -> str | None:
        """Read one WebSocket message and act on it; the frame when it is a packet of
        ``link`` (the reading namespace), else ``None``."""
        self._in_receive = True
        try:
            message = await self._receive()  # type: ignore[misc]
        finally:
            self._in_receive = False
            if self._awaiting_reader:
                self._reader_wake.set()
        kind = message["type"]
        if kind == "websocket.receive":
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is None:
                return None
            limit = self.options.max_payload
            size = len(data)
            # In bytes, as engine.io counts: only a long text needs encoding to know.
            if size > limit or (
                size * 4 > limit and isinstance(data, str) and len(data.encode()) > limit
            ):
                self.close(CloseCode.ABNORMAL, "packet over maxPayload")
                return None
            return await self.on_packet(data, link)
        if kind == "websocket.disconnect":
            self.close(CloseCode.ABNORMAL, "transport closed")
        return None

    async def on_packet(self, packet: str | bytes, link: Link | None = None) -> str | None:
        """One Engine.IO packet from the client, whatever the transport; a packet of
        ``link`` is returned to it rather than queued."""
        try:
            if self._packets is not None and not self._packets.take(monotonic()):
                self.close(CloseCode.POLICY_VIOLATION, "packet rate over the budget")
                return None
            if not isinstance(packet, str):
                await self._attachment(packet)
                return None
            kind = packet[:1]
            if kind == engineio.MESSAGE:
                return await self._message(packet, link)
            if kind == engineio.PONG and len(packet) == 1:
                if self._pong is not None:
                    self._pong.set()
            elif kind == engineio.CLOSE:
                self.client_closed = self.polling is not None and not self.polling.open_get
                self.close(CloseCode.ABNORMAL, "closed by the client")
            elif kind != engineio.NOOP:
                raise Malformed(f"unexpected Engine.IO packet {packet[:8]!r}")
        except Malformed as exc:
            self.close(CloseCode.ABNORMAL, f"malformed packet: {exc}")
        except Exception:
            # Whatever a client can cause ends its connection, and nothing else.
            logger.exception("engine.io %s: a packet failed; the connection is closed", self.sid)
            self.close(CloseCode.INTERNAL_ERROR, "packet handling failed")
        return None

    async def _message(self, text: str, reader: Link | None) -> str | None:
        if self._attaching is not None:
            raise Malformed("a packet came before the attachments of the previous one")
        header = engineio.parse_header(text)
        namespace = header.namespace
        if header.kind == CONNECT:
            if not self._connects.take(monotonic()):
                self.close(CloseCode.POLICY_VIOLATION, "CONNECT rate over connect_rate")
                return None
            await self._connect(namespace, engineio.connect_payload(text, header))
            return None
        link = self.links.get(namespace)
        if link is None:
            return None  # not (or no longer) in that namespace: as socket.io, ignored
        start, end = header.cut
        frame = text if start == end else text[:start] + text[end:]
        if header.kind == DISCONNECT:
            self.forget(link)
            link.gone(CloseCode.NORMAL)
        elif header.attachments:
            self._attaching = (link, frame, header.attachments, [], 0)
        elif link is reader:
            return frame
        else:
            await link.feed(frame)
        return None

    async def _attachment(self, data: bytes) -> None:
        if self._attaching is None:
            raise Malformed("binary packet without a packet announcing it")
        link, head, count, parts, size = self._attaching
        size += len(data)
        if size > self.options.max_payload:
            raise Malformed("attachments over maxPayload")
        parts.append(data)
        if len(parts) < count:
            self._attaching = (link, head, count, parts, size)
            return
        self._attaching = None
        await link.feed(pack(head, parts))

    async def _connect(self, namespace: str, auth: dict[str, Any]) -> None:
        if namespace in self.links:
            return  # connected already
        if len(self.links) >= self.options.max_namespaces:
            await self.send(engineio.connect_error(namespace, "Too many namespaces"))
            return
        found = self.endpoint.route(namespace)
        if found is None:
            await self.send(engineio.connect_error(namespace, "Invalid namespace"))
            return
        runner, path_params = found
        link = Link(self, namespace, runner, new_client_id())
        scope = self.endpoint.namespace_scope(self, link, auth, path_params)
        self.links[namespace] = link
        self._reader_wake.set()  # who reads may change
        assert self._task_group is not None
        self._task_group.start_soon(link.serve, scope, path_params)

    # -- outbound ---------------------------------------------------------------------

    async def send(self, frame: str, *, control: bool = False) -> None:
        """Send one frame (a packet, and its attachments if any) to the client.

        A ``control`` frame (a namespace's end) never waits for a polling client's buffer
        to drain: a stalled client learns that its namespace ended when it polls again.
        """
        if self.closed:
            return
        ws_send = self._ws_send
        if ws_send is None or self.upgrading:
            assert self.polling is not None
            await self.polling.put(frame, control)
        elif frame[1:2] in _BINARY and SEPARATOR in frame:
            head, attachments = split_frame(frame)
            async with self.lock:  # the attachments follow their packet, nothing between
                await ws_send({"type": "websocket.send", "text": head})
                for attachment in attachments:
                    await ws_send({"type": "websocket.send", "bytes": attachment})
        elif self._lock is not None and self._lock.locked():
            async with self._lock:
                await ws_send({"type": "websocket.send", "text": frame})
        else:
            await ws_send({"type": "websocket.send", "text": frame})

    @property
    def lock(self) -> SendLock:
        """Held while a packet's attachments go out (and while an upgrade flushes)."""
        if self._lock is None:
            self._lock = SendLock()
        return self._lock

    @property
    def transport(self) -> str:
        """``"websocket"`` once a WebSocket carries the connection, else ``"polling"``."""
        return "polling" if self._ws_send is None else "websocket"

    def attach_websocket(self, send: Send, receive: Receive) -> None:
        """WebSocket is the transport from now on (opened on it, or upgraded)."""
        self._ws_send = send
        self._receive = receive

    # -- HTTP long-polling ------------------------------------------------------------

    async def poll(self) -> str | None:
        """A polling GET's answer (``polling.PollQueue.take``); ``None`` when a GET is
        open already, a protocol error that closes the connection."""
        assert self.polling is not None
        body = await self.polling.take()
        if body is None:
            self.close(CloseCode.ABNORMAL, "two polling GETs at once")
        return body

    def wake_poll(self) -> None:
        """Answer the open polling GET at once: the client is upgrading, or the
        connection closes."""
        if self.polling is not None:
            self.polling.wake()

    def begin_upgrade(self) -> None:
        self.upgrading = True
        self._settled = anyio.Event()

    def end_upgrade(self) -> None:
        self.upgrading = False
        if self._settled is not None:
            self._settled.set()

    async def settle(self, within: float) -> None:
        """Wait (up to ``within``) for an upgrade in progress to finish or fail: a GET
        sent after ``5`` may arrive before the WebSocket's ``5`` is read."""
        if self.upgrading and self._settled is not None:
            with anyio.move_on_after(within):
                await self._settled.wait()

    async def upgraded(self, send: Send, receive: Receive) -> None:
        """The client finished the upgrade (``5``): what waited for polling goes over the
        WebSocket first, then everything else."""
        assert self.polling is not None
        async with self.lock:
            self.attach_websocket(send, receive)
            self.end_upgrade()
            for frame in self.polling.drain():
                head, attachments = split_frame(frame)
                await send({"type": "websocket.send", "text": head})
                for attachment in attachments:
                    await send({"type": "websocket.send", "bytes": attachment})
        self.wake_poll()


async def close_websocket(send: Send) -> None:
    try:
        await send({"type": "websocket.close", "code": int(CloseCode.NORMAL)})
    except Exception:
        logger.debug("closing an Engine.IO websocket failed", exc_info=True)
