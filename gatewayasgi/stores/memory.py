"""History and sessions kept in the process: the default when no broker provides them.

``MemoryLog`` is a ring of the last ``max_frames`` frames no older than ``max_age``
seconds and of at most ``max_bytes`` in all, offsets counting from 1; its epoch is random
per process, so a restart is seen as a lost history. ``MemorySessionStore`` is a dict
with owner checks; sessions resume on the same process only.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from itertools import islice

from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.stores.base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FRAME_BYTES,
    WRONG_IDENTITY,
    EmissionLog,
    Entry,
    HistoryGap,
    SessionRecord,
    SessionStore,
    WrongIdentity,
)

_MAX_OFFSET_DIGITS = 19


class MemoryLog(EmissionLog):
    """A bounded ring of one gateway's frames (count, bytes and age); offsets are 1, 2, 3 ...

    ``max_bytes`` bounds the frames' total size (UTF-8 bytes), oldest out first; a frame
    over ``max_frame_bytes`` keeps its offset, targets and exclusions as a marker with an
    empty frame (the caller still delivers it live), and a client it was addressed to
    cannot replay past it.
    """

    carries = False

    def __init__(
        self,
        max_frames: int,
        max_age: float,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_bytes <= 0 or max_frame_bytes <= 0:
            raise ValueError("max_bytes and max_frame_bytes must be positive")
        self.epoch = uuid.uuid4().hex
        self.max_frames = max_frames
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.max_frame_bytes = min(max_frame_bytes, max_bytes)
        # (monotonic time, size in bytes, entry), oldest first.
        self._entries: deque[tuple[float, int, Entry]] = deque()
        self._bytes = 0
        self._last = 0
        self._hole = 0  # the offset of the newest hole (``lost``)

    def format_offset(self, offset: int) -> str:
        return str(offset)

    def parse_offset(self, text: str) -> int | None:
        if not (0 < len(text) <= _MAX_OFFSET_DIGITS and text.isascii() and text.isdigit()):
            return None
        return int(text)

    @property
    def head(self) -> int:
        return self._last

    @property
    def size(self) -> int:
        """Bytes of the frames held (markers count nothing)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def stamp(self, frame: str, targets: Targets, exclude: Targets) -> int:
        """``append`` without the coroutine (for the backplane's synchronous path)."""
        self._last += 1
        now = time.monotonic()
        size = frame_size(frame)
        if size > self.max_frame_bytes:
            frame, size = "", 0  # a marker: the offset and whom it was for, not the frame
        entries = self._entries
        entries.append((now, size, Entry(self._last, frame, targets, exclude)))
        self._bytes += size
        while len(entries) > self.max_frames or self._bytes > self.max_bytes:
            self._bytes -= entries.popleft()[1]
        self._trim(now)
        return self._last

    async def append(self, frame: str, targets: Targets, exclude: Targets) -> int:
        return self.stamp(frame, targets, exclude)

    def _trim(self, now: float) -> None:
        entries = self._entries
        oldest = now - self.max_age
        while entries and entries[0][0] < oldest:
            self._bytes -= entries.popleft()[1]

    def lost(self) -> int:
        """Mark a hole here (frames of other processes that never arrived): a marker for
        everyone, and no replay from before it (``trimmed``). Its offset."""
        self._hole = self.stamp("", NOBODY, NOBODY)
        return self._hole

    async def replay(self, after: int, limit: int) -> list[Entry]:
        if after > self._last:
            raise HistoryGap("invalid")
        if after < self._hole:
            raise HistoryGap("trimmed")
        self._trim(time.monotonic())
        entries = self._entries
        first = entries[0][2].offset if entries else self._last + 1
        if after + 1 < first:
            raise HistoryGap("trimmed")
        start = after + 1 - first  # offsets are contiguous in the ring
        return [entry for _, _, entry in islice(entries, start, start + limit)]


def frame_size(frame: str) -> int:
    """``frame``'s size in UTF-8 bytes (without encoding it when it is ASCII)."""
    return len(frame) if frame.isascii() else len(frame.encode())


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
        self,
        client_id: str,
        token_hash: str,
        owner: str,
        ttl: float,
        *,
        identity: str | None = None,
        new_token_hash: str | None = None,
    ) -> SessionRecord | WrongIdentity | None:
        held = self._live(client_id)
        if held is None or held[0].token_hash != token_hash:
            return None
        record = held[0]
        if record.identity != identity:
            return WRONG_IDENTITY
        if new_token_hash is not None:
            record.token_hash = new_token_hash
        self._records[client_id] = (record, owner, time.monotonic() + ttl)
        return record

    async def drop(self, client_id: str, owner: str) -> bool:
        held = self._records.get(client_id)
        if held is None or held[1] != owner:
            return False
        del self._records[client_id]
        return True
