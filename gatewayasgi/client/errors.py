"""Exceptions the client raises. Every one is a ``GatewayClientError``.

Timeouts also subclass ``TimeoutError``, so ``except TimeoutError`` catches them beside
``asyncio``'s own.
"""

from __future__ import annotations

from typing import Any


class GatewayClientError(Exception):
    """Base class: ``except GatewayClientError`` catches everything this package raises."""


class CallError(GatewayClientError):
    """The server answered a ``call`` with an error frame.

    ``message`` is the frame's ``data.message``; ``details`` holds the rest of its ``data``
    (``errors`` and ``error_count`` for a validation failure, a ``WsException``'s extras,
    ``truncated``).
    """

    def __init__(self, event: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.event = event
        """The event the failed call was sent with."""
        self.message = message
        self.details = details

    @property
    def data(self) -> dict[str, Any]:
        """The error frame's ``data`` as the server sent it: ``message`` plus ``details``."""
        return {"message": self.message, **self.details}


class CallTimeout(GatewayClientError, TimeoutError):
    """No reply to a ``call`` within its timeout (the server may or may not have handled it)."""

    def __init__(self, event: str, timeout: float) -> None:
        super().__init__(f"no reply to {event!r} within {timeout:g} s")
        self.event = event
        self.timeout = timeout


class NotConnected(GatewayClientError, TimeoutError):
    """``emit`` waited for a connection longer than its timeout (the client is reconnecting)."""

    def __init__(self, event: str, timeout: float) -> None:
        super().__init__(f"{event!r} not sent: no connection within {timeout:g} s")
        self.event = event
        self.timeout = timeout


class ConnectionClosed(GatewayClientError):
    """A connection closed.

    Raised by a ``call`` whose frame went out on a connection that closed before the reply
    came (``terminal`` false: the client reconnects; retry the call if it is idempotent),
    and, once the client is closed for good, by ``emit``, ``call`` and ``receive``.
    """

    def __init__(self, code: int, reason: str, *, terminal: bool) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"connection closed (code {code}{detail})")
        self.code = code
        """The WebSocket close code; 1006 when the connection dropped without a close frame."""
        self.reason = reason
        self.terminal = terminal
        """True when the client does not reconnect: 1008, 4000-4999, ``close()``, or
        ``reconnect=False``."""


class ConnectError(GatewayClientError):
    """A connection attempt failed before the gateway's session began.

    ``status`` is the HTTP status of a refused handshake (403 from a handshake guard or an
    origin check, 503 at capacity), ``None`` for network errors and timeouts. ``terminal``:
    a 4xx refusal (but 408 and 429) is not retried, like a 1008 close.
    """

    def __init__(self, message: str, *, status: int | None = None, terminal: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.terminal = terminal
