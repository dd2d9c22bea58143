"""A connection's bounded outbox and the writer that drains it.

Every frame to one socket goes through here, in order. Producers never wait: ``put``
enqueues (or applies the overflow policy) and returns, so one client that stops
reading cannot delay anyone else. When nothing is queued or in flight, ``send`` writes
straight through, which keeps request/reply traffic free of a task switch, and under
asyncio ``put`` does too: it runs the server's send until it would wait, which for a
socket with room is to the end, and only then hands the rest to the writer task. A
fan-out to healthy clients so costs one write each, no task wake-up.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import anyio

from gatewayasgi._types import Message, Send

logger = logging.getLogger("gatewayasgi")

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]
"""Starts a task, e.g. ``TaskGroup.start_soon``."""


class Overflow(str, enum.Enum):
    """What happens when a frame would exceed a connection's outbox caps."""

    CLOSE = "close"
    """Close the slow client with 1013 (try again later); its rooms are released."""
    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued frames until the new one fits."""
    DROP_NEW = "drop_new"
    """Discard the new frame."""


_EMPTY: deque[Any] = deque(maxlen=0)
"""Shared stand-in for a queue that was never needed (stays empty: maxlen=0)."""


class _Signal:
    """A resettable wake-up flag for backends other than asyncio (anyio events are one-shot)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, None]:
    """Finish, in the awaiting task, a coroutine whose first step ran outside any task.

    The task is handed what the coroutine yielded (the future it waits on) and then
    drives it, so waiting, wake-ups and cancellation behave exactly as if this task had
    run it from the start. This is Python 3.12's eager task start, without a Task.
    """
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(value)
        except StopIteration:
            return


_CoroutineType = types.CoroutineType


async def _awaiting(awaitable: Awaitable[Any]) -> None:
    await awaitable


def _signal() -> asyncio.Event | _Signal:
    # asyncio.Event can be cleared and costs a tenth of an anyio.Event to make; the writer
    # of every fan-out recipient waits on one, so it matters under asyncio servers.
    return asyncio.Event() if _on_asyncio() else _Signal()


class Outbox:
    """Bounded FIFO of ASGI send messages with a single writer.

    ``max_messages`` and ``max_bytes`` cap what may wait; ``on_overflow_close`` is
    called (once) when the ``CLOSE`` policy trips. ``sent``, ``dropped`` count frames.
    """

    __slots__ = (
        "_busy",
        "_bytes",
        "_eager",
        "_event",
        "_flushed",
        "_on_close",
        "_on_gone",
        "_pending",
        "_queue",
        "_send",
        "_spawn",
        "closed",
        "dropped",
        "flushed",
        "max_bytes",
        "max_messages",
        "overflow",
        "sent",
    )

    def __init__(
        self,
        send: Send,
        on_overflow_close: Callable[[], None],
        on_gone: Callable[[], None],
        *,
        max_messages: int,
        max_bytes: int,
        overflow: Overflow,
    ) -> None:
        self._send = send
        self._on_gone = on_gone
        # The queue and the events are made on first need: most connections never
        # queue anything, and each of these costs hundreds of bytes.
        self._queue: deque[tuple[Message, int]] = _EMPTY
        self._bytes = 0
        self._busy = False
        self._event: asyncio.Event | _Signal | None = None
        self._flushed: asyncio.Event | _Signal | None = None
        self._spawn: Spawn | None = None
        self._eager = _on_asyncio()
        self._pending: tuple[Coroutine[Any, Any, Any], Any, Message] | None = None
        self._on_close = on_overflow_close
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.overflow = overflow
        self.closed = False
        self.flushed = False
        self.sent = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, message: Message, size: int) -> bool:
        """Queue ``message`` without waiting; False when it was not queued."""
        if self.closed:
            return False
        if self._eager and not self._busy and not self._queue:
            self._write_eagerly(message)
            return True
        queue = self._queue
        if queue is _EMPTY:
            queue = self._queue = deque()
        full = len(queue) >= self.max_messages or self._bytes + size > self.max_bytes
        if full and not self._make_room(size):
            return False
        queue.append((message, size))
        self._bytes += size
        if not self._busy:
            self._wake()
        return True

    def _write_eagerly(self, message: Message) -> None:
        """Run the send now, up to its first wait; the writer task finishes it if it waits.

        The server's own send coroutine is driven directly (no wrapper coroutine): this
        runs once per fan-out recipient.
        """
        coro = self._send(message)
        if type(coro) is not _CoroutineType:
            coro = _awaiting(coro)  # a server whose send returns some other awaitable
        try:
            yielded = coro.send(None)
        except StopIteration:
            self._written(message)
            return
        except Exception as exc:
            self._failed(exc)
            return
        self._busy = True  # later frames queue behind this one
        self._pending = (coro, yielded, message)
        self._wake()

    def _written(self, message: Message) -> None:
        self.sent += 1
        if message["type"] == "websocket.close":
            self._mark_flushed()

    def attach(self, spawn: Spawn) -> None:
        """Give the outbox a way to start its writer (the connection's task group)."""
        self._spawn = spawn

    def _wake(self) -> None:
        # The writer task is started on first need: an idle connection, or one that
        # only gets direct replies, never pays for it.
        if self._event is not None:
            self._event.set()
        elif self._spawn is not None:
            self._event = _signal()
            self._spawn(self._run)

    def _make_room(self, size: int) -> bool:
        if self.overflow is Overflow.CLOSE:
            self.dropped += 1
            self.close()
            self._on_close()
            return False
        if self.overflow is Overflow.DROP_NEW or size > self.max_bytes:
            self._count_drop(1)
            return False
        queue = self._queue
        dropped = 0
        while queue and (len(queue) >= self.max_messages or self._bytes + size > self.max_bytes):
            self._bytes -= queue.popleft()[1]
            dropped += 1
        self._count_drop(dropped)
        return True

    def _count_drop(self, count: int) -> None:
        if self.dropped == 0 and count:
            logger.warning("outbox full: dropping frames (policy %s)", self.overflow.value)
        self.dropped += count

    async def send(self, message: Message, size: int) -> None:
        """Send in order: straight through when idle, else behind what is queued."""
        if self._busy or self._queue:
            self.put(message, size)
            return
        if self.closed:
            return
        self._busy = True
        try:
            await self._send(message)
        except Exception as exc:  # as in _complete, inlined: this is the reply hot path
            self._failed(exc)
        else:
            self.sent += 1
            if message["type"] == "websocket.close":
                self._mark_flushed()
        finally:
            self._busy = False
        if self._queue:
            self._wake()

    async def _complete(self, sending: Awaitable[Any], message: Message) -> None:
        """Await one send of ``message``: a new one, or one ``_write_eagerly`` started."""
        # A peer that went away must never raise into user code. Servers differ
        # (uvicorn raises ClientDisconnected/OSError, hypercorn returns silently,
        # granian raises RuntimeError); all mean the same here.
        try:
            await sending
        except Exception as exc:
            self._failed(exc)
            return
        self._written(message)

    def _failed(self, exc: Exception) -> None:
        logger.debug("send failed, peer gone: %r", exc)
        self.close()
        self._on_gone()

    def _mark_flushed(self) -> None:
        self.flushed = True
        if self._flushed is not None:
            self._flushed.set()

    async def wait_flushed(self) -> None:
        """Wait until a close frame has been written."""
        if not self.flushed:
            if self._flushed is None:
                self._flushed = _signal()
            await self._flushed.wait()

    async def _run(self) -> None:
        """The writer: drain the queue, then sleep until something arrives."""
        event = self._event
        assert event is not None
        while True:
            self._busy = True
            try:
                pending = self._pending
                if pending is not None:
                    self._pending = None
                    coro, yielded, message = pending
                    await self._complete(_resume(coro, yielded), message)
                queue = self._queue
                while queue:
                    message, size = queue.popleft()
                    self._bytes -= size
                    await self._complete(self._send(message), message)
            finally:
                self._busy = False
            await event.wait()
            event.clear()

    def seal(self) -> None:
        """Refuse further frames but send what is queued (a close frame is last)."""
        self.closed = True

    def close(self) -> None:
        """Refuse further frames and forget queued ones."""
        self.closed = True
        if self._pending is not None:
            # No writer has taken up the half-done send yet: abandon it (the peer is going).
            self._pending[0].close()
            self._pending = None
        self._queue.clear()
        self._bytes = 0
