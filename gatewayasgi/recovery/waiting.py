"""What sessions waiting for their client cost, and the ceilings on it.

A session whose socket went away keeps its id, rooms and ``state`` for the recovery
window (``recovery.keeper``). Three bounds keep what a client can make the server hold:

- ``session_cost``: one session's bytes (``Recovery.max_session_bytes``);
- ``WaitingBudget``: every waiting session of a middleware, all gateways together
  (``waiting_budget``); past it the oldest waiting session anywhere ends early;
- per client address, in the keeper (``Recovery.max_sessions_per_address``).

``QuotaBucket`` is the per-client bound on history appends (``Recovery.client_share``),
and ``LogLimiter`` keeps what an attacker can make the server log to one line per
interval.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from time import monotonic
from typing import Any

import orjson

SESSION_COST = 12_000
"""Bytes a waiting session costs beyond its rooms, state and handshake headers: about
5 KB live (its connection object, scope and records: tracemalloc under hypercorn), about
14 KB of the process's RSS once the allocator's leftovers of its socket are counted
(``docs/recovery.md``)."""
HEADER_COST = 100
"""Bytes per handshake header beyond its name and value (the scope keeps them)."""
ROOM_COST = 200
"""Bytes a waiting session holds per room beyond the name itself (its slot in the
session's rooms and join marks)."""


def session_cost(
    rooms: Iterable[str], state: dict[str, Any], headers: Iterable[tuple[bytes, bytes]] = ()
) -> int:
    """An estimate of the bytes a waiting session with ``rooms``, ``state`` and the
    handshake's ``headers`` holds."""
    size = SESSION_COST
    for name, value in headers:
        size += len(name) + len(value) + HEADER_COST
    for room in rooms:
        size += sys.getsizeof(room) + ROOM_COST
    return size + _state_size(state)


def _state_size(state: dict[str, Any]) -> int:
    if not state:
        return 0
    try:
        return len(orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS))
    except TypeError:
        pass
    size = 0
    for key, value in state.items():
        try:
            size += len(orjson.dumps({str(key): value}))
        except TypeError:
            size += sys.getsizeof(key) + sys.getsizeof(value)
    return size


class WaitingBudget:
    """The bytes all waiting sessions of a middleware hold, against one limit.

    Entries are kept oldest first; ``oldest`` names what to end when ``over``.
    """

    __slots__ = ("_held", "limit", "used")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self._held: dict[tuple[int, str], tuple[Any, int]] = {}

    def add(self, owner: Any, client_id: str, cost: int) -> None:
        key = (id(owner), client_id)
        self.remove(owner, client_id)
        self._held[key] = (owner, cost)
        self.used += cost

    def remove(self, owner: Any, client_id: str) -> None:
        held = self._held.pop((id(owner), client_id), None)
        if held is not None:
            self.used -= held[1]

    def over(self) -> bool:
        return self.limit is not None and self.used > self.limit and bool(self._held)

    def oldest(self) -> tuple[Any, str]:
        """The owner (a keeper) and id of the session waiting longest."""
        (_, client_id), (owner, _) = next(iter(self._held.items()))
        return owner, client_id

    def __len__(self) -> int:
        return len(self._held)


class QuotaBucket:
    """Two token buckets, frames and bytes, refilled over one period (no clock inside)."""

    __slots__ = ("_bytes", "_frames", "_stamp", "byte_capacity", "frame_capacity", "period")

    def __init__(self, frames: float, size: float, period: float, now: float) -> None:
        self.frame_capacity = frames
        self.byte_capacity = size
        self.period = period
        self._frames = frames
        self._bytes = size
        self._stamp = now

    def take(self, size: int, now: float) -> bool:
        """Spend one frame and ``size`` bytes, if both are there."""
        elapsed = now - self._stamp
        self._stamp = now
        refill = elapsed / self.period
        frames = min(self.frame_capacity, self._frames + refill * self.frame_capacity)
        size_left = min(self.byte_capacity, self._bytes + refill * self.byte_capacity)
        if frames < 1.0 or size_left < size:
            self._frames, self._bytes = frames, size_left
            return False
        self._frames, self._bytes = frames - 1.0, size_left - size
        return True


class LogLimiter:
    """One log line per ``interval`` seconds at most; the lines left out are counted
    and told with the next one."""

    __slots__ = ("_logger", "_next", "_suppressed", "interval")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def log(self, level: int, message: str, *args: object) -> None:
        now = monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self.interval
        if self._suppressed:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, self._suppressed, self.interval)
            self._suppressed = 0
        self._logger.log(level, message, *args)
