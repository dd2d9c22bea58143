"""One connection attempt: headers, the subprotocol offer, and how a failure is classified."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeAlias

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException
from websockets.typing import Subprotocol

from gatewayasgi.client.errors import ConnectError

Headers: TypeAlias = Mapping[str, str]
HeadersSource: TypeAlias = (
    "Headers | Callable[[], Headers] | Callable[[], Awaitable[Headers]] | None"
)
"""Handshake headers, or a (sync or async) function called before every attempt, so a
reconnection sends a fresh token."""

POLICY_VIOLATION = 1008
_RETRIED_STATUSES = frozenset({408, 429})


def is_terminal_close(code: int) -> bool:
    """Close codes after which the client does not reconnect: policy (1008) and the app range
    (4000-4999): the server closed on purpose, and trying again would only repeat that."""
    return code == POLICY_VIOLATION or 4000 <= code <= 4999


def is_terminal_status(status: int) -> bool:
    """A handshake refused with 4xx (a guard, an origin check, no such path) is not retried,
    but for 408 and 429; 5xx (503 at capacity) is."""
    return 400 <= status <= 499 and status not in _RETRIED_STATUSES


async def resolve_headers(source: HeadersSource) -> dict[str, str]:
    """The headers of one attempt."""
    if source is None:
        return {}
    if callable(source):
        value = source()
        headers = await value if inspect.isawaitable(value) else value
    else:
        headers = source
    return dict(headers)


async def open_websocket(
    url: str,
    *,
    headers: Headers,
    subprotocols: Sequence[str],
    open_timeout: float,
    max_size: int | None,
) -> ClientConnection:
    """Open the WebSocket (the opening handshake only); every failure is a ``ConnectError``."""
    try:
        return await connect(
            url,
            additional_headers=dict(headers),
            subprotocols=[Subprotocol(name) for name in subprotocols] or None,
            open_timeout=open_timeout,
            max_size=max_size,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise ConnectError(
            f"handshake with {url} refused with HTTP {status}",
            status=status,
            terminal=is_terminal_status(status),
        ) from exc
    except InvalidURI as exc:
        raise ConnectError(f"invalid WebSocket URL {url!r}: {exc}", terminal=True) from exc
    except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
        detail = str(exc) or type(exc).__name__
        raise ConnectError(f"could not connect to {url}: {detail}") from exc
