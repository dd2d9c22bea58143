"""The opening handshake: origin, connection cap, handshake guards, subprotocol.

Runs between ``websocket.connect`` and ``websocket.accept``. A refusal never accepts
the socket: it answers an HTTP response through the ``websocket.http.response``
extension where the server offers it, else ``websocket.close`` before accept (which
servers turn into HTTP 403). Nothing of the gateway runs for a refused client.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

from gatewayasgi._types import Scope, Send
from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.guards import ExecutionContext, WsArgumentsHost
from gatewayasgi.runtime.connection import Connection
from gatewayasgi.settings import Settings, origin_allowed

logger = logging.getLogger("gatewayasgi")

FORBIDDEN = 403
UNAVAILABLE = 503
_REASONS = {FORBIDDEN: b"Forbidden", UNAVAILABLE: b"Service Unavailable"}


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
        await send({"type": "websocket.http.response.body", "body": _REASONS.get(status, b"")})
    else:
        await send({"type": "websocket.close", "code": 1008})


def choose_subprotocol(offered: Sequence[str], spoken: Sequence[str]) -> str | None:
    """The first subprotocol the gateway speaks that the client offered, else ``None``."""
    for name in spoken:
        if name in offered:
            return name
    return None


async def admit(
    client: Connection, guards: tuple[Any, ...], gateway: type, settings: Settings
) -> int | None:
    """``None`` when ``client`` may be accepted, else the HTTP status to refuse with."""
    if settings.allowed_origins is not None and not origin_allowed(
        client.headers.get("origin"), settings
    ):
        logger.info(
            "gateway %s: refused origin %r", client.server.namespace, client.headers.get("origin")
        )
        return FORBIDDEN
    limit = settings.max_connections
    if limit is not None and len(client.server.clients) >= limit:
        logger.warning("gateway %s: connection cap %d reached", client.server.namespace, limit)
        return UNAVAILABLE
    if not guards:
        return None
    context = ExecutionContext(WsArgumentsHost(client, None, None, client.server), gateway, None)
    try:
        for guard in guards:
            allowed = guard.can_activate(context)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                return FORBIDDEN
    except WsException:
        return FORBIDDEN
    except Exception:
        logger.exception("handshake guard of %s failed", gateway.__name__)
        return FORBIDDEN
    return None
