"""History and sessions kept in the process: the default when no broker provides them.

``MemoryLog`` is a ring of the last ``max_frames`` frames no older than ``max_age``
seconds, offsets counting from 1; its epoch is random per process, so a restart is seen
as a lost history. ``MemorySessionStore`` is a dict with owner checks; sessions resume
on the same process only.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from itertools import islice

from gatewayasgi.protocol.targets import Targets
from gatewayasgi.recovery.base import EmissionLog, Entry, HistoryGap, SessionRecord, SessionStore

_MAX_OFFSET_DIGITS = 19


class MemoryLog(EmissionLog):
    """A bounded ring of one gateway's frames (count and age); offsets are 1, 2, 3 ..."""

    carries = False

    def __init__(self, max_frames: int, max_age: float) -> None:
        self.epoch = uuid.uuid4().hex
        self.max_frames = max_frames
        self.max_age = max_age
        self._entries: deque[tuple[float, Entry]] = deque()
        self._last = 0

    def format_offset(self, offset: int) -> str:
        return str(offset)

    def parse_offset(self, text: str) -> int | None:
        if not (0 < len(text) <= _MAX_OFFSET_DIGITS and text.isascii() and text.isdigit()):
            return None
        return int(text)

    @property
    def head(self) -> int:
        return self._last

    def stamp(self, frame: str, targets: Targets, exclude: Targets) -> int:
        """``append`` without the coroutine (for the backplane's synchronous path)."""
        self._last += 1
        now = time.monotonic()
        entries = self._entries
        entries.append((now, Entry(self._last, frame, targets, exclude)))
        if len(entries) > self.max_frames:
            entries.popleft()
        self._trim(now)
        return self._last

    async def append(self, frame: str, targets: Targets, exclude: Targets) -> int:
        return self.stamp(frame, targets, exclude)

    def _trim(self, now: float) -> None:
        entries = self._entries
        oldest = now - self.max_age
        while entries and entries[0][0] < oldest:
            entries.popleft()

    async def replay(self, after: int, limit: int) -> list[Entry]:
        if after > self._last:
            raise HistoryGap("invalid")
        self._trim(time.monotonic())
        entries = self._entries
        first = entries[0][1].offset if entries else self._last + 1
        if after + 1 < first:
            raise HistoryGap("trimmed")
        start = after + 1 - first  # offsets are contiguous in the ring
        return [entry for _, entry in islice(entries, start, start + limit)]


class MemorySessionStore(SessionStore):
    """Sessions of one process, each changed only by its owner."""

    shared = False

    def __init__(self) -> None:
        self._records: dict[str, tuple[SessionRecord, str, float]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _live(self, client_id: str) -> tuple[SessionRecord, str, float] | None:
        held = self._records.get(client_id)
        if held is not None and held[2] < time.monotonic():
            del self._records[client_id]
            return None
        return held

    async def save(self, record: SessionRecord, owner: str, ttl: float) -> bool:
        held = self._live(record.id)
        if held is not None and held[1] != owner:
            return False
        self._records[record.id] = (record, owner, time.monotonic() + ttl)
        return True

    async def claim(
        self, client_id: str, token_hash: str, owner: str, ttl: float
    ) -> SessionRecord | None:
        held = self._live(client_id)
        if held is None or held[0].token_hash != token_hash:
            return None
        self._records[client_id] = (held[0], owner, time.monotonic() + ttl)
        return held[0]

    async def drop(self, client_id: str, owner: str) -> bool:
        held = self._records.get(client_id)
        if held is None or held[1] != owner:
            return False
        del self._records[client_id]
        return True
