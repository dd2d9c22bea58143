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
from typing import TYPE_CHECKING, Any

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

_DONE = object()
"""What a ``def`` generator's ``next`` gives back when it is exhausted."""


class _Stream:
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
        self._running: dict[str | int, _Stream] = {}
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
        stream = self._running[frame_id] = _Stream()
        self._spawn(self._run, stream, event, frame_id, source, qualname)

    def cancel(self, frame_id: object) -> bool:
        """The client's ``$cancel``: end that stream now; False (counted) if none runs."""
        stream = None
        if type(frame_id) is str or type(frame_id) is int:
            stream = self._running.get(frame_id)
        if stream is None:
            self.unknown_cancels += 1
            return False
        stream.cancelled = True
        stream.scope.cancel()
        return True

    async def _run(
        self, stream: _Stream, event: str, frame_id: str | int, source: Any, qualname: str
    ) -> None:
        client, protocol, settings = self._client, self._protocol, self._settings
        items: Any = source if hasattr(source, "__anext__") else _threaded(source)
        end: Payload | None = None
        try:
            with stream.scope:
                timeout = settings.stream_timeout
                with anyio.fail_after(timeout) if timeout is not None else _nothing():
                    end = await self._pump(items, event, frame_id)
        except TimeoutError:
            end = protocol.encode_error(codec.STREAM_TIMEOUT, frame_id)
        except WsException as exc:
            end = protocol.encode_error(exc.message, frame_id, exc.data)
        except _TooLarge:
            end = protocol.encode_error(codec.STREAM_ITEM_TOO_LARGE, frame_id)
        except Exception as exc:
            logger.error("stream %s of event %r failed", qualname, event[:200], exc_info=exc)
            end = protocol.encode_error(codec.INTERNAL_ERROR, frame_id)
        finally:
            del self._running[frame_id]
            # The generator is closed here, at its current ``await`` (``finally`` blocks
            # and ``async with`` exits run), whatever ended the stream: its end, an error,
            # a cancel, or the connection's end.
            with anyio.CancelScope(shield=True), anyio.move_on_after(settings.close_timeout):
                if items is not source:
                    await items.aclose()
                await _close(source)
        if stream.cancelled:
            end = protocol.encode_stream_end(event, None, frame_id, cancelled=True)
        if end is not None and not client.closed:
            await client.outbox.send(protocol.message(end), frame_cost(end))

    async def _pump(self, items: AsyncIterator[Any], event: str, frame_id: str | int) -> Payload:
        client, protocol = self._client, self._protocol
        outbox = client.outbox
        half = max(1, outbox.max_messages // 2)
        sequence = 0
        async for item in items:
            if isinstance(item, StreamEnd):
                return protocol.encode_stream_end(event, item.value, frame_id)
            sequence += 1
            payload = protocol.encode_stream_item(event, item, frame_id, sequence)
            size = frame_cost(payload)
            if size > outbox.max_bytes:
                raise _TooLarge
            # Never ahead of the reader: past half the outbox, the generator waits.
            if len(outbox) >= half or outbox.held() + size > outbox.max_bytes // 2:
                await outbox.wait_below(max(1, half // 2))
            if client.closed:
                break
            await outbox.send(protocol.message(payload), size)
        return protocol.encode_stream_end(event, None, frame_id)


class _TooLarge(Exception):
    """An item larger than the connection's outbox allows."""


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def _threaded(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """The items of a ``def`` generator, each taken in the worker thread pool (as ``def``
    handlers run: one that blocks holds its stream, not the event loop)."""
    while True:
        item = await anyio.to_thread.run_sync(next, iterator, _DONE)
        if item is _DONE:
            return
        yield item


async def _close(source: Any) -> None:
    if hasattr(source, "aclose"):
        await source.aclose()
    elif hasattr(source, "close"):
        await anyio.to_thread.run_sync(source.close)
