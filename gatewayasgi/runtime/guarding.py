"""The one guard loop, for handshakes and for frames alike."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.guards import ExecutionContext, Guard
from gatewayasgi.protocol import codec


@dataclass(frozen=True, slots=True)
class Denial:
    """Why guards refused: the error message for the client, or the guard's exception."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)
    failure: Exception | None = None
    """An unexpected exception a guard raised (logged, never shown to the client)."""
    guard: str = ""
    """The class name of the guard that refused (for the log)."""


async def check_guards(guards: Sequence[Guard], context: ExecutionContext) -> Denial | None:
    """Run ``guards`` in order; ``None`` when every one allows, else the first denial.

    A guard denies by returning a falsy value (``ACCESS_DENIED``) or raising
    ``WsException`` (its message and data); any other exception is a failure.
    """
    name = ""
    try:
        for guard in guards:
            name = type(guard).__name__
            allowed = guard.can_activate(context)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                return Denial(codec.ACCESS_DENIED, guard=name)
    except WsException as exc:
        return Denial(exc.message, exc.data, guard=name)
    except Exception as exc:
        return Denial(codec.INTERNAL_ERROR, failure=exc, guard=name)
    return None
