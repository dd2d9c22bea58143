"""The connection object handed to handlers, hooks and guards.

It speaks the Starlette/FastAPI ``WebSocket`` vocabulary (``send_json``, ``headers``,
``query_params``, ``client.host``, ``close(code, reason)`` ...) without importing
Starlette, plus ``id`` and ``emit(event, data)``. Every send goes through the
connection's ``Outbox``, so frames leave in order and never block other clients.
"""

from __future__ import annotations

import enum
import logging
from functools import cached_property
from http.cookies import SimpleCookie
from typing import Any, Protocol

import anyio
from anyio import CancelScope

from gatewayasgi._types import JSONValue, Message, Scope
from gatewayasgi.instrumentation import DropReason, Instrumentation
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.codec import dumps
from gatewayasgi.runtime.calls import DEFAULT_CALL_TIMEOUT, CallDeadlockError, PendingCalls
from gatewayasgi.runtime.datastructures import URL, Address, Headers, QueryParams, State
from gatewayasgi.runtime.outbox import Outbox, frame_cost

logger = logging.getLogger("gatewayasgi")


class ConnectionState(enum.Enum):
    """Where a connection is in its life; it only ever moves forward.

    ``CONNECTING`` -> ``OPEN`` -> ``CLOSING`` -> ``CLOSED``, and ``OPEN`` or ``CLOSING``
    straight to ``CLOSED`` when the peer goes away.
    """

    CONNECTING = 0
    """The handshake runs (origin, capacity, handshake guards)."""
    OPEN = 1
    """Accepted; frames flow both ways."""
    CLOSING = 2
    """A close was decided here (by the app, a guard, a limit): sends are dropped, and
    the close frame goes out after what is queued."""
    CLOSED = 3
    """The peer is gone (its close arrived, or a send failed): nothing more is sent."""


class Host(Protocol):
    """What a connection needs of the gateway that runs it."""

    namespace: str
    protocol: WireProtocol
    metrics: Instrumentation | None

    def release(self, client: Connection) -> None:
        """Take ``client`` out of every room and the registry (idempotent)."""

    async def emit_to(self, client: Connection, event: str, data: JSONValue) -> None:
        """Emit to one client through the gateway's delivery (recoverable frames)."""


class Connection:
    """One accepted WebSocket client of a gateway."""

    def __init__(
        self, client_id: str, scope: Scope, host: Host, path_params: dict[str, str]
    ) -> None:
        self.id = client_id
        """Unique across processes; has the reserved client-id shape (``c_`` + 32 hex)."""
        self.scope = scope
        self.path_params = path_params
        self.lifecycle = ConnectionState.CONNECTING
        """Where the connection is in its life (``client.state`` is the app's own bag)."""
        self.close_code: int | None = None
        """The code this connection closed (or is closing) with, once known."""
        self.close_reason: str | None = None
        self.last_seen = 0.0
        """Monotonic time of the last frame from the client (heartbeats)."""
        self.cancel_scope: CancelScope | None = None
        """Set by the runtime: cancelling it ends the connection's session."""
        self.outbox: Outbox  # set by the runtime before accept
        # Session recovery (gateways with ``recovery=``; see ``gatewayasgi.recovery``):
        self.recovered = False
        """True when this connection resumed a session (same id, rooms, state, and the
        frames it missed replayed)."""
        self.ticket: object | None = None
        """The slot of the capability that keeps this connection's session (its token
        and ownership, for ``gatewayasgi.recovery``); ``None`` on gateways without one."""
        self.positions: dict[int, int] = {}
        """Per partition of the history, the offset of the last history frame given to
        this connection (recovery only; one partition, 0, unless the history has more)."""
        self.resume_buffer: list[tuple[int, Message, int]] | None = None
        """Live frames held while the session's missed frames are replayed."""
        self.superseded = False
        """A newer connection resumed this one's session: its end ends nothing."""
        self.ends_session = False
        """The app (or the client, with ``$end``) ended this connection's session: no
        recovery."""
        self._host = host

    # -- lifecycle (called by the runtime) --------------------------------------

    def _transition(self, state: ConnectionState) -> bool:
        """Move forward to ``state``; False (and no change) when already there or past."""
        if state.value <= self.lifecycle.value:
            return False
        self.lifecycle = state
        return True

    def accepted(self) -> None:
        """The handshake succeeded."""
        if self.lifecycle is not ConnectionState.CONNECTING:
            raise RuntimeError(f"cannot accept a connection in state {self.lifecycle.name}")
        self.lifecycle = ConnectionState.OPEN

    def gave_up(self, reason: DropReason) -> None:
        """The outbox gave up on this client (too slow, or the process budget): 1013."""
        logger.warning(
            "gateway %s: client %s too slow (%s), closing with 1013",
            self._host.namespace,
            self.id,
            "outbox full" if reason == "slow_consumer" else "outbox budget",
        )
        if self._transition(ConnectionState.CLOSING):
            self.close_code = CloseCode.TRY_AGAIN_LATER
            self.close_reason = "slow consumer"
        # Released at once, not after the session's cancellation finishes: a writer
        # blocked in a send the server shields from cancellation (hypercorn's trio
        # worker) would otherwise keep a dead member in its rooms.
        self._host.release(self)
        metrics = self._host.metrics
        if metrics is not None:
            metrics.on_overflow(self._host.namespace)
            metrics.on_drop(self._host.namespace, reason, 1)
        self.end()

    def peer_gone(self, code: int = CloseCode.NO_STATUS) -> None:
        """The client went away (its close arrived, or a send failed)."""
        if self.close_code is None:
            self.close_code = code
        self.lifecycle = ConnectionState.CLOSED
        self.outbox.close()
        self.end()

    def end(self) -> None:
        """Stop this connection's session (its receive loop and writer)."""
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()
        self.end_calls()

    # -- Starlette-style views of the handshake ---------------------------------

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.scope.get('path', '')}>"

    @cached_property
    def headers(self) -> Headers:
        """Handshake headers, case-insensitive."""
        return Headers(self.scope.get("headers", []))

    @cached_property
    def query_params(self) -> QueryParams:
        """The handshake URL's query parameters."""
        return QueryParams(self.scope.get("query_string", b""))

    @cached_property
    def url(self) -> URL:
        """The handshake URL."""
        return URL.from_scope(self.scope)

    @cached_property
    def client(self) -> Address | None:
        """The peer address (``client.client.host``), ``None`` when the server gives none."""
        peer = self.scope.get("client")
        return Address(peer[0], peer[1]) if peer else None

    @cached_property
    def state(self) -> State:
        """Free-form per-connection state (``client.state.user = ...``)."""
        return State(self.scope.setdefault("state", {}))

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies sent with the handshake."""
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("cookie", ""))
        return {key: morsel.value for key, morsel in jar.items()}

    @property
    def auth(self) -> dict[str, Any]:
        """The Socket.IO CONNECT payload (``io(url, {auth})``); ``{}`` when none was sent,
        and for native clients."""
        auth = self.scope.get("gatewayasgi.auth")
        return auth if isinstance(auth, dict) else {}

    @property
    def protocol(self) -> WireProtocol:
        """The wire protocol this client speaks (JSON, or Socket.IO)."""
        return self._host.protocol

    @property
    def keeps_session(self) -> bool:
        """Whether this connection's session waits for a reconnect now that it ended: it
        has one, and neither the app nor the client (close code 1000) ended it."""
        return (
            self.ticket is not None
            and not self.ends_session
            and not self.superseded
            and self.close_code != CloseCode.NORMAL
        )

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed; sends are then dropped."""
        return self.lifecycle.value >= ConnectionState.CLOSING.value

    # -- sending ----------------------------------------------------------------

    async def send_payload(self, payload: Payload) -> None:
        """Send one encoded frame (``str``: text, ``bytes``: binary) through the outbox."""
        await self.outbox.send(WireProtocol.message(payload), frame_cost(payload))
        metrics = self._host.metrics
        if metrics is not None:
            metrics.on_frame_out(self._host.namespace, 1)

    async def send_text(self, data: str) -> None:
        """Send a text frame."""
        await self.send_payload(data)

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self.send_payload(data)

    async def send_json(self, data: JSONValue, mode: str = "text") -> None:
        """Serialise ``data`` with orjson (pydantic models too) and send it."""
        payload = dumps(data)
        await self.send_payload(payload if mode == "binary" else payload.decode())

    async def emit(self, event: str, data: JSONValue = None) -> None:
        """Send ``{"event": event, "data": data}`` to this client.

        On a gateway with recovery the frame goes through the history (it carries an
        offset and is replayed if the connection drops before the client reads it).
        """
        if self.ticket is not None:
            await self._host.emit_to(self, event, data)
            return
        await self.send_payload(self._host.protocol.encode_emit(event, data))

    async def close(
        self,
        code: int = CloseCode.NORMAL,
        reason: str | None = None,
        *,
        ends_session: bool = True,
    ) -> None:
        """Send what is queued, then a close frame with ``code``; later sends are dropped.

        On a gateway with recovery the session ends too, unless ``ends_session=False``
        (the runtime closing a peer it lost, which may come back).
        """
        if self.lifecycle is not ConnectionState.OPEN:
            return
        self.lifecycle = ConnectionState.CLOSING
        self.end_calls()  # answers are no longer read: calls in flight fail now
        if code == CloseCode.SESSION_TAKEN and self.ticket is not None:
            # Its session was resumed by a connection on another worker: this one's end
            # ends nothing (no on_disconnect here, the session's record is not touched).
            self.superseded = True
            ends_session = False
        self.ends_session = ends_session
        self.close_code, self.close_reason = code, reason
        message: Message = {"type": "websocket.close", "code": int(code)}
        if reason:
            message["reason"] = reason
        await self.outbox.send(message, 0)
        self.outbox.seal()

    def __eq__(self, other: Any) -> bool:
        return self is other

    def __hash__(self) -> int:
        return hash(self.id)

    # -- server -> client calls (runtime.calls) ---------------------------------

    _calls: PendingCalls | None = None
    """Calls in flight, made by the first ``call``: connections that get none pay nothing."""
    reader: int | None = None
    """Id of the task that reads this client's frames and runs its handlers (set by the
    session): a call awaited there could never read its answer, so it is refused."""

    async def call(
        self,
        event: str,
        data: JSONValue = None,
        *,
        timeout: float = DEFAULT_CALL_TIMEOUT,  # noqa: ASYNC109 (the call's own deadline)
    ) -> JSONValue:
        """Send ``{"event", "data", "ack": N}`` and return the data of the client's answer.

        Raises ``CallRejectedError`` (the client answered with an error; its message),
        ``CallTimeoutError`` (a ``TimeoutError``: no answer within ``timeout`` seconds),
        ``CallClosedError`` at once when the connection is or becomes closed, and
        ``CallLimitError`` when ``MAX_PENDING_CALLS`` (256) calls are already in flight.

        A handler of this very client must not await it: the client's frames (its answer
        included) are read one after another, after the handler returns. That raises
        ``CallDeadlockError`` at once; start the call in a task, or call from elsewhere.
        """
        if self.reader is not None and anyio.get_current_task().id == self.reader:
            raise CallDeadlockError(
                f"client.call({event[:200]!r}) awaited by a handler of client {self.id}: its "
                "answer is read only after the handler returns; run the call in a task"
            )
        calls = self._calls
        if calls is None:
            calls = self._calls = PendingCalls()
        return await calls.call(self, event, data, timeout)

    def answered(self, number: object, data: JSONValue, error: object) -> bool:
        """Settle a call from the client's ``$ack`` frame; False (counted) if unknown."""
        calls = self._calls
        if calls is None:
            calls = self._calls = PendingCalls()
        return calls.answer(number, data, error)

    def end_calls(self) -> None:
        """Fail the calls in flight with ``CallClosedError`` (the connection ended)."""
        if self._calls is not None:
            self._calls.close(self.id)
