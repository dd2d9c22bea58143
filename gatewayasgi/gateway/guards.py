"""Guards and the execution context they inspect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class WsArgumentsHost:
    """What a guard can see of one frame: the client, the data, the event, the server."""

    __slots__ = ("_client", "_data", "_event", "_server")

    def __init__(self, client: Any, data: Any, event: str | None, server: Any) -> None:
        self._client = client
        self._data = data
        self._event = event
        self._server = server

    def get_client(self) -> Any:
        """The connection that sent the frame."""
        return self._client

    def get_data(self) -> Any:
        """The frame's ``data`` payload (``None`` during the handshake)."""
        return self._data

    def get_event(self) -> str | None:
        """The frame's event name (``None`` during the handshake)."""
        return self._event

    def get_server(self) -> Any:
        """The gateway's ``WebSocketServer``."""
        return self._server


class ExecutionContext:
    """Handed to ``BaseGuard.can_activate``; ``switch_to_ws()`` gives the frame's host."""

    __slots__ = ("_gateway", "_handler", "_host")

    def __init__(
        self, host: WsArgumentsHost, gateway: type, handler: Callable[..., Any] | None
    ) -> None:
        self._host = host
        self._gateway = gateway
        self._handler = handler

    def switch_to_ws(self) -> WsArgumentsHost:
        """The WebSocket view of this context."""
        return self._host

    def get_class(self) -> type:
        """The gateway class."""
        return self._gateway

    def get_handler(self) -> Callable[..., Any] | None:
        """The handler about to run (``None`` during the handshake)."""
        return self._handler

    def get_type(self) -> str:
        """Always ``"ws"``, as in NestJS."""
        return "ws"


class BaseGuard:
    """Subclass and implement ``can_activate(context)`` (sync or async) returning a bool.

    Guard classes are built once, with constructor arguments resolved from providers.
    """

    def can_activate(self, context: ExecutionContext) -> bool | Awaitable[bool]:
        raise NotImplementedError(f"{type(self).__name__} must implement can_activate")


class Guard(Protocol):
    """Anything with ``can_activate(context)`` (sync or async) returning a bool."""

    def can_activate(self, context: ExecutionContext) -> bool | Awaitable[bool]: ...
