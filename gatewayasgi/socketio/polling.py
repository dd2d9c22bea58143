"""HTTP long-polling's way out: what waits for a client's next ``GET``, and its bounds.

A polling client takes its packets when it polls. Until then they wait here, bounded per
connection (``POLL_BUFFER``) and for all connections together (``PollBudget``): past
either, writers wait, so what a client does not fetch stays in the gateway outboxes,
where the process-wide outbox budget and the slow-client policy bound it.
"""

from __future__ import annotations

from time import monotonic

import anyio

from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.socketio import SEPARATOR

POLL_BUFFER = 256 * 1024
"""Bytes waiting for one polling client's next GET before writers wait."""


class PollBudget:
    """Bytes all polling connections of an endpoint hold for their next GET, together."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.total = 0
        self._space = anyio.Event()

    def full(self) -> bool:
        return self.limit is not None and self.total >= self.limit

    async def wait(self) -> None:
        if self._space.is_set():
            self._space = anyio.Event()
        await self._space.wait()

    def take(self, size: int) -> None:
        self.total += size

    def give(self, size: int) -> None:
        self.total -= size
        if not self.full():
            self._space.set()


class PollQueue:
    """The frames waiting for one polling client's next GET."""

    def __init__(self, budget: PollBudget) -> None:
        self.budget = budget
        self.size = 0
        """Characters waiting (what the budget is charged)."""
        self.open_get = False
        """A GET waits for frames now."""
        self._frames: list[str] = []
        self._noop = False
        self._closed = False
        self._ready = anyio.Event()
        self._space = anyio.Event()

    async def put(self, frame: str, control: bool) -> None:
        """Queue ``frame``; waits while this queue or the budget is full, unless the frame
        is ``control`` (a namespace's end: the client learns it at its next poll)."""
        budget = self.budget
        while not self._closed and not control:
            if self.size >= POLL_BUFFER:
                self._space = anyio.Event()
                await self._space.wait()
            elif budget.full():
                await budget.wait()
            else:
                break
        if self._closed:
            return
        self._frames.append(frame)
        self.size += len(frame)
        budget.take(len(frame))
        self._ready.set()

    def drain(self) -> list[str]:
        """Take every frame waiting (a GET answers them, or the upgrade sends them)."""
        frames, self._frames = self._frames, []
        self.budget.give(self.size)
        self.size = 0
        self._space.set()
        return frames

    async def take(self) -> str | None:
        """A GET's answer: the frames waiting (after waiting for one), or a noop when the
        transport is being replaced or closes. ``None`` when a GET is open already."""
        if self.open_get:
            return None
        self.open_get = True
        try:
            while not self._frames and not self._noop and not self._closed:
                self._ready = anyio.Event()
                await self._ready.wait()
            self._noop = False
            frames = self.drain()
            return SEPARATOR.join(frames) if frames else engineio.NOOP
        finally:
            self.open_get = False

    def wake(self) -> None:
        """Answer the open GET, if any, at once (a noop if nothing waits)."""
        if self.open_get:
            self._noop = True
            self._ready.set()

    def close(self) -> None:
        """No more frames; the budget gets back what waits (a last GET may still take it)."""
        self._closed = True
        self.budget.give(self.size)
        self.size = 0
        self._ready.set()
        self._space.set()


class LastPolls:
    """Polling connections the client closed while no GET was open, for ``grace`` seconds:
    a client that sends its close packet and a GET together (engine.io's own close does)
    gets a noop for the GET even when the close arrives first, as it would had the GET
    been waiting. At most ``limit`` at once (the oldest go first); each answers once."""

    def __init__(self, grace: float = 1.0, limit: int = 4096) -> None:
        self.grace = grace
        self.limit = limit
        self._until: dict[str, float] = {}

    def note(self, sid: str) -> None:
        until = self._until
        now = monotonic()
        while until and (next(iter(until.values())) <= now or len(until) >= self.limit):
            del until[next(iter(until))]
        until[sid] = now + self.grace

    def take(self, sid: str) -> bool:
        """Whether a GET of ``sid`` gets its noop now (once)."""
        return self._until.pop(sid, 0.0) > monotonic()
