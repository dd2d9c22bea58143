"""``RedisLog``'s queue of appends not yet in Redis: bounded by count and bytes.

Every append gets the next sequence number of this process's producer and waits here
until the writer has it in the stream (normally a millisecond; while Redis is away, until
it is back). Past either bound the oldest append is dropped and a gap marker takes its
place at the head, so the stream itself records the loss and every reader is told.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice

# A gap marker is a few bytes; it is not counted against the byte bound.
FRAME = b"f"
GAP = b"g"
OVERSIZED = b"o"
"""A frame over the history's ``max_frame_bytes``: delivered live, kept as a marker."""


@dataclass(slots=True)
class Pending:
    """One append waiting for Redis (or a gap marker standing for dropped ones)."""

    seq: int
    kind: bytes
    payload: bytes
    """The frame, or for a gap marker the number of appends it stands for."""
    targets: bytes
    dropped: int = 0

    @property
    def size(self) -> int:
        return 0 if self.kind == GAP else len(self.payload) + len(self.targets)


class Outbox:
    """A FIFO of ``Pending`` with ``max_count`` and ``max_bytes`` bounds (oldest dropped)."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        if max_count <= 0 or max_bytes <= 0:
            raise ValueError("the pending bounds must be positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._items: deque[Pending] = deque()
        self._seq = 0
        self._count = 0  # frames held (gap markers not counted)
        self._bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def last_seq(self) -> int:
        """The sequence number of the last frame put (0: none yet)."""
        return self._seq

    @property
    def size(self) -> int:
        """Bytes of frames and targets held."""
        return self._bytes

    def put(self, frame: bytes, targets: bytes, kind: bytes = FRAME) -> int:
        """Queue one frame (``FRAME`` or ``OVERSIZED``); returns how many older ones were
        dropped to make room."""
        self._seq += 1
        item = Pending(self._seq, kind, frame, targets)
        self._items.append(item)
        self._count += 1
        self._bytes += item.size
        dropped = 0
        while self._count > self.max_count or (self._bytes > self.max_bytes and self._count > 1):
            self._drop_oldest()
            dropped += 1
        if self._bytes > self.max_bytes:  # one frame larger than the whole bound
            self._drop_oldest()
            dropped += 1
        return dropped

    def _drop_oldest(self) -> None:
        items = self._items
        marker = items.popleft() if items[0].kind == GAP else None
        victim = items.popleft()
        self._count -= 1
        self._bytes -= victim.size
        self.dropped += 1
        if marker is None:
            # The marker takes the victim's sequence number: numbers stay increasing.
            marker = Pending(victim.seq, GAP, b"", b"")
        marker.dropped += 1
        marker.payload = str(marker.dropped).encode()
        items.appendleft(marker)

    def batch(self, max_count: int, max_bytes: int) -> list[Pending]:
        """The oldest items, at least one (when any), within the given bounds; kept here."""
        batch: list[Pending] = []
        size = 0
        for item in islice(self._items, max_count):
            if batch and size + item.size > max_bytes:
                break
            batch.append(item)
            size += item.size
        return batch

    def confirm(self, batch: list[Pending]) -> None:
        """Remove ``batch`` (Redis has it), unless drops already took some of it."""
        items = self._items
        for item in batch:
            if not items or items[0] is not item:
                continue
            items.popleft()
            if item.kind != GAP:
                self._count -= 1
                self._bytes -= item.size

    def clear(self) -> int:
        """Drop everything; returns how many frames were held."""
        held = self._count
        self.dropped += held
        self._items.clear()
        self._count = self._bytes = 0
        return held
