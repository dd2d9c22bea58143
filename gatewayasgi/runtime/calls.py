"""Server -> client calls: ``await client.call(event, data, timeout=5)``.

The server sends ``{"event": E, "data": D, "ack": N}`` (``N`` counts up per connection)
and the client answers ``{"event": "$ack", "id": N, "data": R}``, or
``{"event": "$ack", "id": N, "error": {"message": "..."}}`` when its handler failed
(docs/recovery.md). ``PendingCalls`` holds one connection's calls in flight:

* at most ``MAX_PENDING_CALLS`` at once (a constant, not a setting): one more raises
  ``CallLimitError`` at once, so a client that never answers holds bounded memory;
* a call ends in exactly one way: the answer's data, ``CallRejectedError`` (the client's
  error message), ``CallTimeoutError`` (a ``TimeoutError``), or ``CallClosedError`` as
  soon as the connection closes; its slot is freed in every case;
* an answer with an unknown or spent id is counted (``unknown_answers``) and dropped,
  never answered: a client cannot turn stray ``$ack`` frames into an error storm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from gatewayasgi._types import JSONValue
from gatewayasgi.exceptions import GatewayError

if TYPE_CHECKING:
    from gatewayasgi.protocol.base import Payload, WireProtocol


class Callee(Protocol):
    """What a call needs of the connection it calls (``runtime.connection.Connection``)."""

    id: str

    @property
    def closed(self) -> bool: ...

    @property
    def protocol(self) -> WireProtocol: ...

    async def send_payload(self, payload: Payload) -> None: ...


MAX_PENDING_CALLS = 256
"""Calls one connection may have in flight; one more raises ``CallLimitError``."""
DEFAULT_CALL_TIMEOUT = 5.0
"""Seconds ``client.call`` waits for the answer when no ``timeout`` is given."""
MAX_ERROR_MESSAGE = 512
"""Characters of a client's error message kept in ``CallRejectedError``."""


class CallError(GatewayError):
    """A server -> client call did not produce an answer's data (base class)."""


class CallRejectedError(CallError):
    """The client answered the call with an error; ``message`` is what it said."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CallTimeoutError(CallError, TimeoutError):
    """The client did not answer within the call's timeout."""


class CallClosedError(CallError, ConnectionError):
    """The connection closed before the client answered (or was closed already)."""


class CallDeadlockError(CallError, RuntimeError):
    """A handler awaited a call to its own client, whose answer it would never read."""


class CallLimitError(CallError):
    """The connection already has ``MAX_PENDING_CALLS`` calls in flight."""


@dataclass(slots=True)
class _Call:
    done: anyio.Event = field(default_factory=anyio.Event)
    data: JSONValue = None
    error: CallError | None = None


def rejection(error: object) -> CallRejectedError:
    """The exception for an ``$ack`` frame's ``error`` member, whatever its shape."""
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = "the client answered with an error"
    return CallRejectedError(message[:MAX_ERROR_MESSAGE])


class PendingCalls:
    """One connection's server -> client calls in flight (see the module docstring)."""

    __slots__ = ("_calls", "_next", "unknown_answers")

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._next = 0
        self.unknown_answers = 0
        """``$ack`` frames whose id matched no call in flight (late, repeated, forged)."""

    def __len__(self) -> int:
        return len(self._calls)

    async def call(self, client: Callee, event: str, data: JSONValue, within: float) -> JSONValue:
        """Send the call frame through ``client``'s outbox and wait for its outcome."""
        if within <= 0:
            raise ValueError("timeout must be positive")
        if client.closed:
            raise CallClosedError(f"connection {client.id} is closed")
        if len(self._calls) >= MAX_PENDING_CALLS:
            raise CallLimitError(
                f"connection {client.id} has {MAX_PENDING_CALLS} calls in flight already"
            )
        self._next += 1
        number = self._next
        pending = self._calls[number] = _Call()
        try:
            frame = client.protocol.encode_call(event, data, number)
            await client.send_payload(frame)
            with anyio.move_on_after(within):
                await pending.done.wait()
        finally:
            self._calls.pop(number, None)
        if not pending.done.is_set():
            raise CallTimeoutError(
                f"client {client.id} did not answer {event[:200]!r} within {within:g} s"
            )
        if pending.error is not None:
            raise pending.error
        return pending.data

    def answer(self, number: Any, data: JSONValue, error: object) -> bool:
        """Settle call ``number`` from a ``$ack`` frame; False (counted) when unknown."""
        pending = self._calls.pop(number, None) if type(number) is int else None
        if pending is None:
            self.unknown_answers += 1
            return False
        if error is not None:
            pending.error = rejection(error)
        else:
            pending.data = data
        pending.done.set()
        return True

    def close(self, client_id: str) -> None:
        """Fail every call in flight with ``CallClosedError`` (the connection ended)."""
        calls, self._calls = self._calls, {}
        for pending in calls.values():
            pending.error = CallClosedError(f"connection {client_id} closed before answering")
            pending.done.set()
