"""The library's error tree (stdlib only).

``ConfigurationError`` and its subclasses are raised while the middleware is built
(startup); ``WsException`` is raised by user code to answer a client with an error
frame while keeping the connection open.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class of every error raised by gatewayasgi."""


class ConfigurationError(GatewayError):
    """A gateway, handler or provider is declared in a way that cannot work."""


class DuplicateNamespaceError(ConfigurationError):
    """Two gateways claim the same namespace."""


class DuplicateHandlerError(ConfigurationError):
    """Two handlers of one gateway subscribe to the same event."""


class MissingProviderError(ConfigurationError):
    """A constructor parameter names a type that no provider supplies."""


class UnknownSettingError(ConfigurationError, TypeError):
    """``GatewayMiddleware`` got a keyword argument it does not take (a typo?)."""


class InvalidSettingError(ConfigurationError, ValueError):
    """A ``GatewayMiddleware`` setting has a value of the wrong type or out of range."""


class BrokerError(GatewayError):
    """A broker could not move a message (never raised into handlers)."""


class WsException(GatewayError):
    """Raise in a handler, guard or hook to send ``{"event": "error", ...}`` to the client.

    The connection stays open (except when raised by a guard or ``on_connection``,
    which refuse the client). ``data`` keys are merged into the error frame's data
    beside ``message``; they must be JSON-serialisable.
    """

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class PayloadValidationError(WsException):
    """A frame's data failed pydantic validation; ``data["errors"]`` holds the details."""
