"""``Link``: one namespace of one Engine.IO connection, served as a gateway connection.

The gateway's runner (``runtime.runner.GatewayRunner``) serves a Socket.IO namespace
exactly as it serves a native WebSocket: through an ASGI ``receive``/``send`` pair. A
link is that pair: ``receive`` yields the namespace's packets (namespace stripped),
``send`` turns the runner's ASGI messages into Socket.IO packets on the shared
connection (accept -> CONNECT, a refusal -> CONNECT_ERROR, close -> DISCONNECT). So
guards, validation, rooms, recovery and the outbox need nothing of their own here.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Protocol

import anyio
import orjson

from gatewayasgi._types import Message, Scope
from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.socketio import SOCKETIO
from gatewayasgi.runtime.handshake import FORBIDDEN, REASONS

if TYPE_CHECKING:
    from gatewayasgi.runtime.runner import GatewayRunner
    from gatewayasgi.socketio.options import SocketIO

logger = logging.getLogger("gatewayasgi")

INBOX = 16
"""Packets a namespace may have waiting for its session; the reader waits beyond."""
_CONNECT = {"type": "websocket.connect"}


class Carrier(Protocol):
    """What a link needs of the Engine.IO connection that carries it
    (``socketio.engine.EngineSocket``)."""

    options: SocketIO

    def forget(self, link: Link) -> None:
        """The namespace's connection ended: a new CONNECT may open it again."""

    def joined(self) -> None:
        """A namespace's handshake succeeded."""

    def may_read(self, link: Link) -> bool:
        """Whether ``link``'s session may read the transport itself now."""

    async def read_one(self, link: Link | None) -> str | None:
        """Read one message; the frame when it is a packet of ``link``."""

    async def send(self, frame: str, *, control: bool = False) -> None:
        """Send one frame to the client."""


class Link:
    """A namespace's virtual ASGI websocket (see the module docstring)."""

    def __init__(
        self, socket: Carrier, namespace: str, runner: GatewayRunner, client_id: str
    ) -> None:
        self.socket = socket
        self.client_id = client_id
        """The id the runner gives the connection (a resumed session keeps its own)."""
        self.namespace = namespace
        self.prefix = engineio.prefix(namespace)
        self.runner = runner
        self.closed = False
        """The namespace's connection ended (either side); its packets are dropped."""
        self.close_code: int = CloseCode.ABNORMAL
        self._accepted = False
        self._connected = False
        """The CONNECT answer went out (a later one is dropped)."""
        self._opened = False
        self._gone = False
        self._waiting = 0
        """Characters of packets waiting for the session: beyond ``max_payload`` (and
        ``INBOX`` packets) the connection's reader waits, so what one client makes the
        server hold is bounded."""
        self._queue: deque[str | bytes] = deque()
        # Made when a task waits: an idle namespace holds as little as it can.
        self._taken: anyio.Event | None = None
        """Set when the session takes a queued packet (the reader may wait for room)."""
        self._wake: anyio.Event | None = None
        """Set when a packet is queued, the reading role frees, or the connection ends."""
        self.offered_pid: str | None = None
        """The ``pid`` the client's CONNECT offered to resume (recovery only)."""

    async def serve(self, scope: Scope, path_params: dict[str, str]) -> None:
        """Run the gateway connection until it ends (the runner's handshake to teardown)."""
        try:
            await self.runner.run(scope, self.receive, self.send, path_params)
        except Exception:
            # The connection's other namespaces (and its heartbeat) share its task group:
            # what ends this namespace ends it alone, and the client is told.
            logger.exception("socket.io namespace %s failed; it is closed", self.namespace)
            try:
                await self._end("Internal server error")
            except Exception:
                logger.debug("telling the client its namespace ended failed", exc_info=True)
        finally:
            self.closed = True
            self._queue.clear()
            if self._taken is not None:
                self._taken.set()
            self.socket.forget(self)

    # -- the client's side ------------------------------------------------------------

    async def feed(self, frame: str | bytes) -> None:
        """A packet of this namespace (without it), for the session; waits while
        ``INBOX`` packets or ``max_payload`` characters wait already. A binary packet
        comes packed with its attachments (``protocol.socketio.pack``)."""
        limit = self.socket.options.max_payload
        while (len(self._queue) >= INBOX or self._waiting > limit) and not self.closed:
            self._taken = anyio.Event()
            await self._taken.wait()
        if self.closed or self._gone:
            return
        self._queue.append(frame)
        self._waiting += len(frame)
        self.wake()

    def gone(self, code: int) -> None:
        """The client left the namespace (DISCONNECT: 1000) or the connection ended: the
        session reads what was queued, then the disconnect."""
        if self._gone:
            return
        self._gone = True
        self.close_code = code
        self.wake()

    # -- the runner's ASGI callables --------------------------------------------------

    async def receive(self) -> Message:
        if not self._opened:
            self._opened = True
            return _CONNECT
        socket = self.socket
        queue = self._queue
        while True:
            if queue:
                frame = queue.popleft()
                self._waiting -= len(frame)
                if self._taken is not None:
                    self._taken.set()
                if type(frame) is bytes:
                    return {"type": "websocket.receive", "bytes": frame}
                return {"type": "websocket.receive", "text": frame}
            if self._gone:
                return {"type": "websocket.disconnect", "code": self.close_code}
            if socket.may_read(self):
                # The only namespace: read the socket here, no hand-off to this task.
                read = await socket.read_one(self)
                if read is not None:
                    return {"type": "websocket.receive", "text": read}
                continue
            self._wake = anyio.Event()
            await self._wake.wait()

    def wake(self) -> None:
        """A packet was queued, the reading role is free, or the connection ended."""
        if self._wake is not None:
            self._wake.set()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            text = message.get("text")
            if text is None or self.closed:
                return  # a raw binary frame has no Socket.IO form
            if text.startswith("40"):
                if self._connected:
                    return  # a later ``$session``: Socket.IO has no word for it
                self._connected = True
                text = self._kept_pid(text)
            elif not text.startswith("4"):
                # A native frame the app wrote itself (``send_json({"event", "data"})``).
                try:
                    text = SOCKETIO.transcode(text)
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    logger.debug("dropped a frame with no Socket.IO form: %.60r", text)
                    return
            if self.prefix:
                text = engineio.with_namespace(text, self.prefix)
            await self.socket.send(text)
        elif kind == "websocket.accept":
            self._accepted = True
            self.socket.joined()  # the handshake guards passed: connect_timeout is over
            if self.runner.keeper is None:
                # With recovery the keeper's ``$session`` frame is the CONNECT answer.
                self._connected = True
                sid = self.client_id
                await self.socket.send(f'40{self.prefix}{{"sid":"{sid}"}}')
        elif kind == "websocket.close":
            await self._end("Forbidden")
        elif kind == "websocket.http.response.start":
            await self._end(REASONS.get(message.get("status", FORBIDDEN), "Forbidden"))

    def _kept_pid(self, answer: str) -> str:
        """The CONNECT answer of a resumed session keeps the ``pid`` the client offered:
        socket.io-client says ``recovered`` when the ``pid`` did not change."""
        offered = self.offered_pid
        if offered is None:
            return answer
        body = orjson.loads(answer[2:])
        if offered.split(".", 1)[0] != body["sid"]:
            return answer  # a new session: its own pid
        body["pid"] = offered
        return "40" + orjson.dumps(body).decode()

    async def _end(self, refusal: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._taken is not None:
            self._taken.set()
        self.socket.forget(self)
        if self._accepted:
            await self.socket.send(f"41{self.prefix}", control=True)
        else:
            await self.socket.send(engineio.connect_error(self.namespace, refusal), control=True)
        self.gone(CloseCode.NORMAL)  # the session reads its end, as from an ASGI server
