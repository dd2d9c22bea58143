"""``PartitionedLog``: one gateway's history split over several Redis Streams.

One stream carries every frame of a gateway in one order, and on a Redis Cluster that
stream lives on one master. With ``Recovery(partitions=N)`` the history is ``N`` streams
(``RedisLog`` each, keys ``gatewayasgi:{history:<ns>#<p>}``: different hash tags, so a
cluster spreads them over its masters). Which stream a frame goes to depends only on its
targets, the same way in every worker and in the ``Emitter``:

* a frame to one room alone, or to one client id alone: the partition of that name
  (CRC-32 of it, modulo ``N``), so a room's (a client's) frames keep their order;
* everything else (a broadcast, a frame to several rooms or clients): partition 0, the
  shared partition, which every session follows, so each such frame exists once.

A session follows partition 0, its own client id's partition and its rooms'. What is
kept: the order of one room's frames, of one client's, and of the shared partition;
what is not: the order between partitions (a frame to room A and a later broadcast may
arrive either way round).

Every worker reads every partition (one reader each) and delivers to its own clients.

Offsets: inside the process an entry's offset is its stream's offset shifted left by
``PARTITION_BITS`` with the partition in the low bits (``composite``), so the partition
is read off any offset, and two offsets of one partition still compare. On the wire an
offset is ``<p>~<stream id>``; a position (where a session is in every partition it
follows) is those joined with ``_``. Clients keep the last offset per ``<p>~`` prefix.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import deque

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.protocol.targets import Targets
from gatewayasgi.stores.base import (
    PARTITION_BITS,
    PARTITION_MASK,
    SHARED,
    Deliver,
    EmissionLog,
    Entry,
    HistoryGap,
    Reset,
)

MAX_PARTITIONS = 32
"""More would make a session's position (one offset per partition) too long for the
handshake's credential."""
MAX_MARKS = 10_000
"""Appends per partition a fence may still wait for, at most (``RedisLog``'s queue
holds as many)."""
OFFSET_SEPARATOR = "~"
POSITION_SEPARATOR = "_"


def partition_of_name(name: str, partitions: int) -> int:
    """The partition of a room name or a client id (stable across processes)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(name.encode()) % partitions


def partition_of_targets(targets: Targets, partitions: int) -> int:
    """The partition a frame to ``targets`` goes to (see the module docstring)."""
    if partitions <= 1:
        return 0
    rooms, clients = targets
    if len(rooms) + len(clients) != 1:
        return SHARED
    return partition_of_name(rooms[0] if rooms else clients[0], partitions)


def composite(offset: int, partition: int) -> int:
    """A partition's offset as the process keeps it (partition in the low bits)."""
    return (offset << PARTITION_BITS) | partition


class PartitionedLog(EmissionLog):
    """A history over several ``RedisLog`` (see the module docstring); ``parts[p]`` is
    partition ``p``'s stream. Usually made by ``RedisBroker.history(..., partitions=N)``."""

    carries = True

    def __init__(self, parts: list[EmissionLog]) -> None:
        if not 1 < len(parts) <= MAX_PARTITIONS:
            raise ValueError(f"a partitioned history has 2 to {MAX_PARTITIONS} partitions")
        self.parts = parts
        self.partitions = len(parts)
        self.epoch = ""
        self._appends = 0
        # Per partition: (this log's append number, the partition's own mark) of appends
        # a fence may still wait for, oldest first.
        self._marks: list[deque[tuple[int, int]]] = [deque() for _ in parts]
        self._reset: Reset | None = None

    # -- offsets and positions -------------------------------------------------------

    def partition_of(self, offset: int) -> int:
        return offset & PARTITION_MASK

    def room_partition(self, room: str) -> int:
        return partition_of_name(room, self.partitions)

    def format_offset(self, offset: int) -> str:
        part = offset & PARTITION_MASK
        return f"{part}{OFFSET_SEPARATOR}{self.parts[part].format_offset(offset >> PARTITION_BITS)}"

    def parse_offset(self, text: str) -> int | None:
        head, sep, rest = text.partition(OFFSET_SEPARATOR)
        if not sep or not head.isdigit() or len(head) > 2:
            return None
        part = int(head)
        if part >= self.partitions:
            return None
        inner = self.parts[part].parse_offset(rest)
        return None if inner is None else composite(inner, part)

    def format_position(self, position: dict[int, int]) -> str:
        return POSITION_SEPARATOR.join(
            self.format_offset(position[part]) for part in sorted(position)
        )

    def parse_position(self, text: str) -> dict[int, int] | None:
        items = text.split(POSITION_SEPARATOR)
        if len(items) > self.partitions:
            return None
        position: dict[int, int] = {}
        for item in items:
            offset = self.parse_offset(item)
            if offset is None:
                return None
            part = offset & PARTITION_MASK
            if part in position:
                return None
            position[part] = offset
        return position

    @property
    def head(self) -> int:
        return composite(self.parts[SHARED].head, SHARED)

    def heads(self) -> dict[int, int]:
        return {part: composite(log.head, part) for part, log in enumerate(self.parts)}

    # -- writing and reading ---------------------------------------------------------

    async def append(self, frame: str, targets: Targets, exclude: Targets) -> int | None:
        part = partition_of_targets(targets, self.partitions)
        log = self.parts[part]
        await log.append(frame, targets, exclude)
        self._appends += 1
        marks = self._marks[part]
        marks.append((self._appends, log.mark()))
        if len(marks) > MAX_MARKS:
            # Only while Redis is away (nothing delivered, so nothing passed): fences
            # return at once then anyway.
            marks.popleft()
        return None

    def mark(self) -> int:
        return self._appends

    async def reached(self, mark: int) -> None:
        """Wait until every partition delivered this log's appends up to ``mark`` (each
        partition's own bound applies)."""
        for part, marks in enumerate(self._marks):
            log = self.parts[part]
            while marks and log.passed(marks[0][1]):  # delivered already: no one waits
                marks.popleft()
            inner = 0
            for number, own in marks:  # another fence may wait for a later one: keep all
                if number > mark:
                    break
                inner = own
            if inner:
                await log.reached(inner)

    async def replay(self, after: int, limit: int) -> list[Entry]:
        """The entries after ``after`` of ``after``'s partition (see ``EmissionLog``)."""
        part = after & PARTITION_MASK
        if part >= self.partitions:
            raise HistoryGap("invalid")
        entries = await self.parts[part].replay(after >> PARTITION_BITS, limit)
        return [_shifted(entry, part) for entry in entries]

    async def follow(self, deliver: Deliver, reset: Reset, task_group: TaskGroup) -> None:
        """Follow every partition (in parallel: each waits for its first connection)."""
        self._reset = reset

        def delivering(part: int) -> Deliver:
            def shifted(entry: Entry) -> None:
                deliver(_shifted(entry, part))

            return shifted

        def resetting(_epoch: str) -> None:
            self._update_epoch()
            if self._reset is not None:
                self._reset(self.epoch)

        async with anyio.create_task_group() as starting:
            for part, log in enumerate(self.parts):
                starting.start_soon(log.follow, delivering(part), resetting, task_group)
        self._update_epoch()

    def _update_epoch(self) -> None:
        """The history's epoch: made of every partition's (any one lost changes it)."""
        epochs = [log.epoch for log in self.parts]
        if all(epochs):
            self.epoch = hashlib.sha256("_".join(epochs).encode()).hexdigest()[:32]

    async def close(self) -> None:
        async with anyio.create_task_group() as closing:
            for log in self.parts:
                closing.start_soon(log.close)


def _shifted(entry: Entry, part: int) -> Entry:
    return Entry(composite(entry.offset, part), entry.frame, entry.targets, entry.exclude)
