"""The opening handshake: origin, subprotocol, and how a refusal is answered.

Runs between ``websocket.connect`` and ``websocket.accept``. A refusal never accepts
the socket: it answers an HTTP response through the ``websocket.http.response``
extension where the server offers it, else ``websocket.close`` before accept (which
servers turn into HTTP 403). Nothing of the gateway runs for a refused client.
"""

from __future__ import annotations

from collections.abc import Sequence

from gatewayasgi._types import Scope, Send
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.resume import SUBPROTOCOL

FORBIDDEN = 403
UNAVAILABLE = 503
REASONS = {FORBIDDEN: "Forbidden", UNAVAILABLE: "Service Unavailable"}
"""The words of a refusal (the HTTP reason phrase; Socket.IO's CONNECT_ERROR message)."""


async def refuse(scope: Scope, send: Send, status: int = FORBIDDEN) -> None:
    """Refuse a websocket before accept with HTTP ``status`` where the server can."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send(
            {"type": "websocket.http.response.body", "body": REASONS.get(status, "").encode()}
        )
    else:
        await send({"type": "websocket.close", "code": int(CloseCode.POLICY_VIOLATION)})


def choose_subprotocol(offered: Sequence[str], spoken: Sequence[str]) -> str | None:
    """The first subprotocol the gateway speaks that the client offered, else
    ``gatewayasgi`` when offered (clients that resume sessions offer it: a browser fails
    a handshake whose offered subprotocols all went unanswered), else ``None``."""
    for name in spoken:
        if name in offered:
            return name
    return SUBPROTOCOL if SUBPROTOCOL in offered else None
