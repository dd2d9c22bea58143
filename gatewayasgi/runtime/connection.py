"""The connection object handed to handlers, hooks and guards.

It speaks the Starlette/FastAPI ``WebSocket`` vocabulary (``send_json``, ``headers``,
``query_params``, ``client.host``, ``close(code, reason)`` ...) without importing
Starlette, plus ``id`` and ``emit(event, data)``. Every send goes through the
connection's ``Outbox``, so frames leave in order and never block other clients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from anyio import CancelScope

from gatewayasgi._types import JSONValue, Message, Scope
from gatewayasgi.protocol import codec
from gatewayasgi.runtime.datastructures import URL, Address, Headers, QueryParams, State
from gatewayasgi.runtime.outbox import Outbox

if TYPE_CHECKING:
    from gatewayasgi.runtime.server import WebSocketServer

logger = logging.getLogger("gatewayasgi")

TRY_AGAIN_LATER = 1013
"""Close code for a client too slow to read what it is sent."""


class Connection:
    """One accepted WebSocket client of a gateway."""

    def __init__(
        self,
        client_id: str,
        scope: Scope,
        make_outbox: Callable[[Callable[[], None], Callable[[], None]], Outbox],
        server: WebSocketServer,
        path_params: dict[str, str],
    ) -> None:
        self.id = client_id
        self.scope = scope
        self.path_params = path_params
        self.server = server
        self.outbox = make_outbox(self._overflowed, self._gone)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.peer_gone = False
        self.last_seen = 0.0
        self.cancel_scope: CancelScope | None = None
        """Set by the runtime: cancelling it ends the connection's session."""

    def _overflowed(self) -> None:
        logger.warning(
            "gateway %s: client %s too slow (outbox full), closing with 1013",
            self.server.namespace,
            self.id,
        )
        self.close_code = TRY_AGAIN_LATER
        self._end()

    def _gone(self) -> None:
        self.peer_gone = True
        self._end()

    def _end(self) -> None:
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()

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
        from http.cookies import SimpleCookie

        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("cookie", ""))
        return {key: morsel.value for key, morsel in jar.items()}

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed; sends are then dropped."""
        return self.outbox.closed or self.close_code is not None

    async def send_text(self, data: str) -> None:
        """Send a text frame."""
        await self.outbox.send({"type": "websocket.send", "text": data}, len(data))

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self.outbox.send({"type": "websocket.send", "bytes": data}, len(data))

    async def send_json(self, data: JSONValue, mode: str = "text") -> None:
        """Serialise ``data`` with orjson (pydantic models too) and send it."""
        payload = codec.dumps(data)
        if mode == "binary":
            await self.send_bytes(payload)
        else:
            await self.send_text(payload.decode())

    async def emit(self, event: str, data: JSONValue = None) -> None:
        """Send ``{"event": event, "data": data}`` to this client."""
        await self.send_text(codec.encode(event, data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Send what is queued, then a close frame with ``code``; later sends are dropped."""
        if self.closed:
            return
        self.close_code, self.close_reason = code, reason
        message: Message = {"type": "websocket.close", "code": code}
        if reason:
            message["reason"] = reason
        await self.outbox.send(message, 0)
        self.outbox.seal()

    def __eq__(self, other: Any) -> bool:
        return self is other

    def __hash__(self) -> int:
        return hash(self.id)
