"""Streams the client reads: a request whose handler yields (``GatewayClient.stream``).

The server answers a stream request (``{"event", "data", "id"}``) with items
``{"event", "data", "id", "seq"}``, then one end ``{"event", "data", "id", "end": true}``
(``"cancelled": true`` when the client cancelled it), or an error frame with the
request's ``id``. ``{"event": "$cancel", "id": N}`` cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from gatewayasgi.client.errors import CallError, GatewayClientError
from gatewayasgi.client.frames import ERROR_EVENT, InboundFrame, error_parts

_END = object()


class StreamTimeout(GatewayClientError, TimeoutError):
    """No item (nor the end) of a stream within its timeout."""

    def __init__(self, event: str, timeout: float) -> None:
        super().__init__(f"no item of stream {event!r} within {timeout:g} s")
        self.event = event
        self.timeout = timeout


class Stream:
    """The items of one stream, in order: ``async for item in client.stream(...)``.

    Leaving the loop early (``break``, an exception, ``aclose()``) cancels the stream on
    the server. The end frame's data is ``result`` once the loop ended; an error frame
    raises ``CallError`` (as ``call`` does).
    """

    def __init__(
        self,
        event: str,
        stream_id: int,
        timeout: float | None,
        start: Callable[[], Awaitable[None]],
        cancel: Callable[[], Awaitable[None]],
        forget: Callable[[], None],
    ) -> None:
        self.event = event
        self.id = stream_id
        self.timeout = timeout
        self.result: Any = None
        """The end frame's data (a ``StreamEnd`` value on the server), once ended."""
        self.cancelled = False
        self.missing = False
        """A re-attach found no stream with its key (it ended at once)."""
        self.lasting = False
        """An unkeyed stream of a client with ``recover=True``: it outlives a reconnect
        that resumes the session (and fails with the session if it is not recovered)."""
        self._start = start
        self._cancel = cancel
        self._forget = forget
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._started = False
        self._done = False

    def __aiter__(self) -> AsyncGenerator[Any, None]:
        # An async generator: when a loop leaves it early (``break``, an exception), it is
        # finalized (closed) as soon as nothing refers to it, and its ``finally`` cancels
        # the stream on the server. ``async with`` (or ``aclose()``) does it at once.
        return self._items_until_end()

    async def _items_until_end(self) -> AsyncGenerator[Any, None]:
        try:
            while True:
                try:
                    item = await self._next()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await self.aclose()

    async def _next(self) -> Any:
        if not self._started:
            self._started = True
            await self._start()
        while not self._items:
            if self._done:
                raise StopAsyncIteration
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self.timeout)
            except asyncio.TimeoutError:
                await self.aclose()
                raise StreamTimeout(self.event, self.timeout or 0) from None
        item = self._items.popleft()
        if item is _END:
            self._finish()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._finish()
            raise item
        return item

    async def aclose(self) -> None:
        """Stop reading; the server closes the generator (``$cancel``) if it still runs."""
        if self._done or not self._started:
            self._finish()
            return
        self._finish()
        # A connection that is gone took the stream with it on the server.
        with contextlib.suppress(GatewayClientError):
            await self._cancel()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the reader's side ------------------------------------------------------------

    def feed(self, frame: InboundFrame) -> None:
        """A frame with this stream's id: an item, the end, or an error."""
        if self._done:
            return
        if frame.event == ERROR_EVENT and frame.seq is None and not frame.end:
            message, details = error_parts(frame.data)
            self._items.append(CallError(self.event, message, details))
            self._done = True
        elif frame.end:
            self.result = frame.data
            self.cancelled = frame.cancelled
            self.missing = frame.missing
            self._items.append(_END)
            self._done = True
        else:
            self._items.append(frame.data)
        self._ready.set()

    def fail(self, error: GatewayClientError) -> None:
        """The connection the stream ran on closed: the stream ends with ``error``."""
        if self._done:
            return
        self._items.append(error)
        self._done = True
        self._ready.set()

    def _finish(self) -> None:
        self._done = True
        self._forget()
