"""A connection's bounded outbox, its writer, and the budget all outboxes share.

Shaped like anyio's memory object stream: ``put_nowait`` enqueues without waiting (or
applies the overflow policy), ``send`` writes straight through when nothing is queued
and otherwise queues, and one writer task drains the queue in order. So one client that
stops reading never delays anyone else, and every frame, reply or fan-out, counts
against the same caps.

Sizes are what a frame really costs while it waits: ``frame_cost`` is its size in
memory (``sys.getsizeof``: a non-ASCII ``str`` takes 2 or 4 bytes a character), counted
from the moment it is handed over until the server's ``send`` returns.
"""

from __future__ import annotations

import heapq
import logging
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import anyio

from gatewayasgi._types import Message, Send
from gatewayasgi.instrumentation import DropReason
from gatewayasgi.runtime import eager
from gatewayasgi.settings import Overflow

logger = logging.getLogger("gatewayasgi")

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]
"""Starts a task, e.g. ``TaskGroup.start_soon``."""

OnOverflow = Callable[[DropReason], None]
"""Told when the outbox gives up on its client: ``slow_consumer`` or ``budget``."""


def frame_cost(payload: str | bytes) -> int:
    """Bytes a queued frame holds in memory."""
    return sys.getsizeof(payload)


class OutboxStatistics(NamedTuple):
    """A snapshot of one outbox."""

    queued: int
    """Frames waiting (the one being written not included)."""
    queued_bytes: int
    """Bytes held: the waiting frames and the one being written."""
    sent: int
    """Frames written."""
    dropped: int
    """Frames discarded by the overflow policy or a close."""


class OutboxBudget:
    """Bytes all outboxes of one middleware may hold together.

    Each outbox charges what it holds. When the total passes ``limit``, the outboxes
    holding the most are told to give up (their clients are closed with 1013) until the
    total is back under 90% of it: an attacker's stalled connections go first, and
    memory has a ceiling whatever the number of connections.
    """

    __slots__ = ("_holders", "limit", "total")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.total = 0
        self._holders: set[Outbox] = set()

    def charge(self, outbox: Outbox, size: int) -> None:
        self.total += size
        self._holders.add(outbox)
        if self.limit is not None and self.total > self.limit:
            self._enforce(self.limit)

    def refund(self, outbox: Outbox, size: int, empty: bool) -> None:
        self.total -= size
        if empty:
            self._holders.discard(outbox)

    def _enforce(self, limit: int) -> None:
        target = limit * 9 // 10
        biggest = heapq.nlargest(len(self._holders), self._holders, key=Outbox.held)
        for outbox in biggest:
            if self.total <= target:
                break
            logger.warning(
                "outbox budget of %d bytes exceeded: closing a client holding %d bytes",
                limit,
                outbox.held(),
            )
            outbox.give_up("budget")


class Outbox:
    """Bounded FIFO of ASGI send messages with a single writer.

    ``max_messages`` and ``max_bytes`` cap what may wait, the frame being written
    included. ``on_overflow`` is called once when the outbox gives up on its client
    (``CLOSE`` policy tripped, or the shared budget); ``on_gone`` when a send fails
    because the peer went away; ``on_drop(count)`` whenever frames are discarded.
    """

    __slots__ = (
        "_budget",
        "_busy",
        "_bytes",
        "_eager",
        "_event",
        "_flushed",
        "_on_drop",
        "_on_gone",
        "_on_overflow",
        "_pending",
        "_queue",
        "_send",
        "_spawn",
        "_waiter",
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
        on_overflow: OnOverflow,
        on_gone: Callable[[], None],
        *,
        max_messages: int,
        max_bytes: int,
        overflow: Overflow,
        budget: OutboxBudget | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._send = send
        self._on_overflow = on_overflow
        self._on_gone = on_gone
        self._on_drop = on_drop
        self._budget = budget
        # The queue and the events are made on first need: most connections never
        # queue anything, and each costs hundreds of bytes.
        self._queue: deque[tuple[Message, int]] | None = None
        self._bytes = 0  # held: queued frames plus the one being written
        self._busy = False  # a send is in progress (straight through or by the writer)
        self._event: anyio.Event | None = None  # wakes the writer; None: no writer yet
        self._flushed: anyio.Event | None = None
        self._spawn: Spawn | None = None
        self._eager = eager.available()
        self._pending: tuple[eager.Started, Message, int] | None = None
        self._waiter: tuple[int, anyio.Event] | None = None  # ``wait_below``
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.overflow = overflow
        self.closed = False
        """No more frames are taken (sealed, closed, or given up)."""
        self.flushed = False
        """A close frame has been written."""
        self.sent = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def filling(self, size: int) -> bool:
        """Whether a producer that must not outrun the socket (a stream) should wait
        before adding ``size`` bytes: half the frames, or half the bytes, wait already."""
        queue = self._queue
        if not queue:
            return False
        return len(queue) >= self.max_messages // 2 or self._bytes + size > self.max_bytes // 2

    def held(self) -> int:
        """Bytes held now: queued frames plus the one being written."""
        return self._bytes

    def statistics(self) -> OutboxStatistics:
        """Counters of this outbox."""
        return OutboxStatistics(len(self), self._bytes, self.sent, self.dropped)

    def attach(self, spawn: Spawn) -> None:
        """Give the outbox a way to start its writer (the connection's task group)."""
        self._spawn = spawn

    # -- producers ------------------------------------------------------------------

    def put_nowait(self, message: Message, size: int) -> bool:
        """Queue ``message`` without waiting; False when it was not queued."""
        if self.closed:
            return False
        if size > self.max_bytes:
            return self._refuse()
        if not self._busy and not self._queue:
            if self._eager:
                self._write_eagerly(message, size)
                return True
        elif not self._fits(size) and not self._make_room(size):
            return False
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append((message, size))
        self._hold(size)
        if not self._busy:
            self._wake()
        return True

    async def send(self, message: Message, size: int) -> None:
        """Send in order: straight through when idle, else behind what is queued."""
        if self._busy or self._queue or self.closed or size > self.max_bytes:
            self.put_nowait(message, size)
            return
        # Every reply passes here, so the accounting is inlined. The frame being written
        # counts toward the budget's total; it is one frame per connection at most (the
        # connection's receive loop waits for it), so it is not a holder to close.
        self._busy = True
        self._bytes += size
        budget = self._budget
        if budget is not None:
            budget.total += size
        try:
            await self._send(message)
        except Exception as exc:
            self._failed(exc)
        else:
            self._written(message)
        finally:
            self._busy = False
            self._bytes -= size
            if budget is not None:
                budget.total -= size
        if self._queue:
            self._wake()

    def _fits(self, size: int) -> bool:
        queue = self._queue
        queued = len(queue) if queue is not None else 0
        return queued < self.max_messages and self._bytes + size <= self.max_bytes

    def _write_eagerly(self, message: Message, size: int) -> None:
        """Start the server's send now; hand it to the writer if it has to wait."""
        try:
            started = eager.start(self._send(message))
        except Exception as exc:
            self._failed(exc)
            return
        if started is None:
            self._written(message)
            return
        self._busy = True  # later frames queue behind this one
        self._pending = (started, message, size)
        self._hold(size)
        self._wake()

    # -- policy ---------------------------------------------------------------------

    def _make_room(self, size: int) -> bool:
        """Apply the overflow policy to a frame of ``size`` that does not fit."""
        if self.overflow is not Overflow.DROP_OLDEST:
            return self._refuse()
        queue = self._queue
        dropped = 0
        while queue and not self._fits(size):
            self._release(queue.popleft()[1])
            dropped += 1
        self._count_drop(dropped)
        return self._fits(size) or self._refuse()

    def _refuse(self) -> bool:
        """The new frame is not taken: drop it, and with ``CLOSE`` give up on the client."""
        self._count_drop(1)
        if self.overflow is Overflow.CLOSE:
            self.give_up("slow_consumer")
        return False

    def give_up(self, reason: DropReason) -> None:
        """Stop serving this client: forget what is queued and tell ``on_overflow`` (once)."""
        was_open = not self.closed
        self._count_drop(len(self))
        self.close()
        if was_open:
            self._on_overflow(reason)

    def _count_drop(self, count: int) -> None:
        if not count:
            return
        if self.dropped == 0 and self.overflow is not Overflow.CLOSE:
            logger.warning("outbox full: dropping frames (policy %s)", self.overflow.value)
        self.dropped += count
        if self._on_drop is not None:
            self._on_drop(count)

    # -- accounting -----------------------------------------------------------------

    def _hold(self, size: int) -> None:
        self._bytes += size
        if self._budget is not None:
            self._budget.charge(self, size)

    def _release(self, size: int) -> None:
        self._bytes -= size
        if self._budget is not None:
            self._budget.refund(self, size, self._bytes == 0)
        waiter = self._waiter
        if waiter is not None and len(self) < waiter[0]:
            self._waiter = None
            waiter[1].set()

    async def wait_below(self, count: int) -> None:
        """Wait until fewer than ``count`` frames are queued, or the outbox closed: a
        producer that must not drop (a replay) goes at the pace of the socket."""
        while len(self) >= count and not self.closed:
            event = anyio.Event()
            self._waiter = (count, event)
            with anyio.move_on_after(1.0):  # a close wakes nobody: look again
                await event.wait()

    # -- the writer -----------------------------------------------------------------

    def _wake(self) -> None:
        # The writer task is started on first need: an idle connection, or one that
        # only gets direct replies, never pays for it.
        if self._event is not None:
            self._event.set()
        elif self._spawn is not None:
            self._event = anyio.Event()
            self._spawn(self._run)

    async def _run(self) -> None:
        """The writer: drain the queue, then sleep until something arrives."""
        while True:
            self._busy = True
            try:
                pending = self._pending
                if pending is not None:
                    self._pending = None
                    started, message, size = pending
                    await self._complete(eager.resume(started), message, size)
                queue = self._queue
                while queue:
                    message, size = queue.popleft()
                    await self._complete(self._send(message), message, size)
            finally:
                self._busy = False
            assert self._event is not None
            await self._event.wait()
            self._event = anyio.Event()

    async def _complete(self, sending: Any, message: Message, size: int) -> None:
        # A peer that went away must never raise into user code. Servers differ
        # (uvicorn raises ClientDisconnected/OSError, hypercorn returns silently,
        # granian raises RuntimeError); all mean the same here.
        try:
            await sending
        except Exception as exc:
            self._failed(exc)
        else:
            self._written(message)
        finally:
            self._release(size)

    def _written(self, message: Message) -> None:
        self.sent += 1
        if message["type"] == "websocket.close":
            self.flushed = True
            if self._flushed is not None:
                self._flushed.set()

    def _failed(self, exc: Exception) -> None:
        logger.debug("send failed, peer gone: %r", exc)
        self.close()
        self._on_gone()

    async def wait_flushed(self) -> None:
        """Wait until a close frame has been written."""
        if not self.flushed:
            if self._flushed is None:
                self._flushed = anyio.Event()
            await self._flushed.wait()

    # -- ending ---------------------------------------------------------------------

    def seal(self) -> None:
        """Refuse further frames but send what is queued (a close frame is last)."""
        self.closed = True

    def release(self) -> None:
        """``close``, and let go of the transport and the task group: the connection's
        object outlives its socket (a session waiting for its client) and must not keep
        the server's stream, its buffers and the ended task alive."""
        self.close()
        self._send = _gone
        self._spawn = None
        self._event = self._flushed = None
        self._waiter = None

    def close(self) -> None:
        """Refuse further frames and forget queued ones."""
        self.closed = True
        pending, self._pending = self._pending, None
        if pending is not None:
            # No writer has taken up the half-done send: abandon it (the peer is going).
            eager.abandon(pending[0])
            self._release(pending[2])
        queue = self._queue
        if queue:
            self._release(sum(size for _, size in queue))
            queue.clear()


async def _gone(message: Message) -> None:
    """The ``send`` of a released outbox: the transport is gone."""
