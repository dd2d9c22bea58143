"""Calls in both directions: the client's pending ``call``s, and answers to server calls."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gatewayasgi.client.codecs import JSON_CODEC, Codec, Encoded
from gatewayasgi.client.errors import CallError, ConnectionClosed, GatewayClientError
from gatewayasgi.client.frames import ERROR_EVENT, InboundFrame, error_parts

Handler = Callable[[Any], Any]
"""``handler(data)``, sync or async; for a server call its (awaited) result is the answer."""


class PendingCalls:
    """Replies the client waits for, keyed by the integer ``id`` each ``call`` frame carries.

    Ids are per client, increasing, never reused, so a late reply to a call that timed out
    (or went out on an earlier connection) matches nothing and is dropped.
    """

    def __init__(self) -> None:
        self._next_id = 1
        self._waiting: dict[int, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def new_id(self) -> int:
        """An id no call or stream of this client uses (streams share the counter)."""
        call_id = self._next_id
        self._next_id += 1
        return call_id

    def open(self, event: str) -> tuple[int, asyncio.Future[Any]]:
        """A new id and the future its reply settles; ``close(id)`` when done waiting."""
        call_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = _Waiting(event, future)
        return call_id, future

    def sent(self, call_id: int, generation: int) -> None:
        """The frame of ``call_id`` goes out on connection number ``generation``."""
        entry = self._waiting.get(call_id)
        if entry is not None:
            entry.generation = generation

    def close(self, call_id: int) -> None:
        self._waiting.pop(call_id, None)

    def settle(self, frame: InboundFrame) -> bool:
        """Resolve the call ``frame`` replies to (an error frame raises ``CallError`` there);
        ``False`` when no call waits for it."""
        entry = self._waiting.pop(frame.id, None) if isinstance(frame.id, int) else None
        if entry is None:
            return False
        event, future = entry.event, entry.future
        if future.done():
            return True
        if frame.event == ERROR_EVENT:
            message, details = error_parts(frame.data)
            future.set_exception(CallError(event, message, details))
        else:
            future.set_result(frame.data)
        return True

    def reject_sent(self, generation: int, error: ConnectionClosed) -> None:
        """The calls whose frame went out on connection ``generation``, which closed: their
        replies are lost with it. Calls still waiting to be sent keep waiting."""
        for call_id, entry in list(self._waiting.items()):
            if entry.generation == generation:
                del self._waiting[call_id]
                entry.reject(error)

    def reject_all(self, error: GatewayClientError) -> None:
        """The client closed for good: no reply will come."""
        waiting, self._waiting = self._waiting, {}
        for entry in waiting.values():
            entry.reject(error)


@dataclass(eq=False)
class _Waiting:
    event: str
    future: asyncio.Future[Any]
    generation: int | None = None
    """The connection the frame went out on; ``None`` while it waits for one."""

    def reject(self, error: GatewayClientError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


async def answer_call(
    handler: Handler | None, frame: InboundFrame, ack: int, codec: Codec = JSON_CODEC
) -> Encoded:
    """Run ``handler`` for a server call and encode its outcome as the ``$ack`` answer: its
    (awaited) result, its exception's message, or "No handler" when there is none."""
    if handler is None:
        return codec.encode_ack_error(ack, f"No handler for server event {frame.event!r}")
    try:
        result = handler(frame.data)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return codec.encode_ack_error(ack, str(exc) or type(exc).__name__)
    return codec.encode_ack_result(ack, result)
