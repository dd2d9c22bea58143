"""Streams: a generator handler's items, sent to the requester as they come.

A request to a stream handler starts a stream, keyed by the request's ``id``. It runs in
its own task of the connection's task group, so the connection goes on handling other
frames (a ``$cancel``, a second request) while it runs, and it ends with exactly one
frame: the end (``"end": true``, with the value of a yielded ``StreamEnd``), the end
marked ``cancelled``, or an error frame carrying the request's ``id``. The wire is in
``docs/guide/streaming.md``.

What a client can make it cost is bounded:

- at most ``Settings.max_streams`` streams per connection at once (one more is answered
  with an error frame);
- an item waits while the client's outbox is half full: a stream never outruns its
  reader, and nothing grows without bound (``Settings.stream_timeout`` ends a stream
  whose reader stopped for good);
- an item larger than the outbox allows ends its stream with an error frame;
- a ``$cancel`` closes the generator at its current ``await`` (its ``finally`` blocks and
  ``async with`` exits run) within ``Settings.close_timeout``; an unknown one is counted.

When the connection ends, its task group is cancelled and every stream is closed the
same way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import Payload
from gatewayasgi.runtime.outbox import frame_cost

if TYPE_CHECKING:
    from gatewayasgi.protocol.base import WireProtocol
    from gatewayasgi.runtime.connection import Connection
    from gatewayasgi.settings import Settings

logger = logging.getLogger("gatewayasgi")

Spawn = Callable[..., Any]
Reply = Callable[[Payload], Any]


class KeyedCancel(Protocol):
    """Where a ``$cancel`` naming no unkeyed stream goes next (``runtime.keyed_streams``)."""

    def cancel(self, client: Connection, frame_id: str | int) -> bool: ...


_DONE = object()
"""What a ``def`` generator's ``next`` gives back when it is exhausted."""


class StreamState:
    __slots__ = ("cancelled", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.cancelled = False


class Streams:
    """The streams of one connection (made on its first stream request)."""

    __slots__ = ("_client", "_protocol", "_running", "_settings", "_spawn", "unknown_cancels")

    def __init__(
        self, client: Connection, protocol: WireProtocol, settings: Settings, spawn: Spawn
    ) -> None:
        self._client = client
        self._protocol = protocol
        self._settings = settings
        self._spawn = spawn
        self._running: dict[str | int, StreamState] = {}
        self.unknown_cancels = 0
        """``$cancel`` frames naming no running stream (late, repeated or forged)."""

    def __len__(self) -> int:
        return len(self._running)

    def refusal(self, frame_id: str | int | None) -> str | None:
        """Why a stream request with this id cannot start now (``None``: it can)."""
        if frame_id is None:
            return codec.STREAM_NEEDS_ID
        if not self._protocol.streams:
            return codec.STREAM_UNSUPPORTED
        if frame_id in self._running:
            return codec.STREAM_ID_TAKEN
        if len(self._running) >= self._settings.max_streams:
            return codec.STREAM_LIMIT.format(limit=self._settings.max_streams)
        return None

    def start(self, event: str, frame_id: str | int, source: Any, qualname: str) -> None:
        """Run ``source`` (the generator a stream handler returned) as the stream that
        answers request ``frame_id`` (``refusal`` said it may start)."""
        stream = self._running[frame_id] = StreamState()
        self._spawn(self._run, stream, event, frame_id, source, qualname)

    def cancel(self, frame_id: object, hub: KeyedCancel | None = None) -> bool:
        """The client's ``$cancel``: end that stream now (a keyed one this connection
        started or attached to, too); False (counted) if none runs."""
        stream = None
        if type(frame_id) is str or type(frame_id) is int:
            stream = self._running.get(frame_id)
            if stream is None and hub is not None and hub.cancel(self._client, frame_id):
                return True
        if stream is None:
            self.unknown_cancels += 1
            return False
        stream.cancelled = True
        stream.scope.cancel()
        return True

    async def _run(
        self, stream: StreamState, event: str, frame_id: str | int, source: Any, qualname: str
    ) -> None:
        client, protocol, settings = self._client, self._protocol, self._settings
        items: Any = source if hasattr(source, "__anext__") else threaded_items(source)
        end: Payload | None = None
        start = protocol.encode_stream_start(event, frame_id)
        if start is not None:
            await send(client, start)
        try:
            with stream.scope:
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                    end = await self._pump(items, event, frame_id)
        except Exception as exc:
            message, details = failure(exc, qualname)
            end = protocol.encode_error(message, frame_id, details)
        finally:
            del self._running[frame_id]
            # The generator is closed here, at its current ``await`` (``finally`` blocks
            # and ``async with`` exits run), whatever ended the stream: its end, an error,
            # a cancel, or the connection's end.
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                await close_source(items, source, qualname)
        if stream.cancelled:
            end = protocol.encode_stream_end(event, None, frame_id, cancelled=True)
        if end is not None and not client.closed:
            await client.outbox.send(protocol.message(end), frame_cost(end))

    async def _pump(self, items: AsyncIterator[Any], event: str, frame_id: str | int) -> Payload:
        client, protocol = self._client, self._protocol
        outbox = client.outbox
        send, encode, message = outbox.send, protocol.encode_stream_item, protocol.message
        max_bytes = outbox.max_bytes
        half = max(1, outbox.max_messages // 2)
        sequence = 0
        async for item in items:
            if type(item) is StreamEnd:
                return protocol.encode_stream_end(event, item.value, frame_id)
            sequence += 1
            payload = encode(event, item, frame_id, sequence)
            size = frame_cost(payload)
            if size > max_bytes:
                raise TooLarge
            # Never ahead of the reader: past half the outbox, the generator waits.
            if outbox.filling(size):
                await outbox.wait_below(max(1, half // 2))
            if outbox.closed:
                break
            await send(message(payload), size)
        return protocol.encode_stream_end(event, None, frame_id)


class TooLarge(Exception):
    """An item larger than the connection's outbox allows."""


def failure(exc: Exception, qualname: str) -> tuple[str, dict[str, Any] | None]:
    """What the client is told when a stream failed (bounded by the protocol's error
    frame): the stream timeout, a ``WsException`` it raised, an item too large, or an
    internal error (logged)."""
    if isinstance(exc, TimeoutError):
        return codec.STREAM_TIMEOUT, None
    if isinstance(exc, WsException):
        return exc.message, exc.data
    if isinstance(exc, TooLarge):
        return codec.STREAM_ITEM_TOO_LARGE, None
    logger.error("stream %s failed", qualname, exc_info=exc)
    return codec.INTERNAL_ERROR, None


async def threaded_items(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """The items of a ``def`` generator, each taken in the worker thread pool (as ``def``
    handlers run: one that blocks holds its stream, not the event loop)."""
    while True:
        item = await anyio.to_thread.run_sync(next, iterator, _DONE)
        if item is _DONE:
            return
        yield item


async def close_source(items: Any, source: Any, qualname: str) -> None:
    """Close the generator (and the wrapper taking a ``def`` generator's items): what
    its ``finally`` raises is logged, never raised into a task group others share."""
    try:
        if items is not source:
            await items.aclose()
        if hasattr(source, "aclose"):
            await source.aclose()
        elif hasattr(source, "close"):
            await anyio.to_thread.run_sync(source.close)
    except Exception as exc:
        logger.error("closing stream %s failed", qualname, exc_info=exc)


async def send(client: Connection, payload: Payload) -> None:
    if not client.closed:
        await client.outbox.send(client.protocol.message(payload), frame_cost(payload))
