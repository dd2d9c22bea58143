"""Stream ids as offsets, and log entries as stream fields: pure, no I/O.

A Redis Stream id is ``<ms>-<seq>``: the server's clock in milliseconds and a counter
within that millisecond. In the process it is the ``int`` ``(ms << 20) | seq``, which
orders like the id as long as ``seq < 2**20``; the append script keeps it so (it moves
to the next millisecond before a counter gets that far, see ``_redis_scripts``), and an
id that breaks the rule anyway (something else wrote the stream) is refused here. On the
wire an offset is the id itself (``"1732531200000-3"``).

An entry's fields (short names keep every entry small):

``f``  the encoded frame (UTF-8)
``p``  the id of the entry before it in the stream (``"0-0"`` for the first): a reader
       or a replay that finds ``p`` different from the id it last saw knows entries
       were removed in between (trimmed, deleted, or the stream lost)
``t``  rooms, clients, excluded rooms, excluded clients: ``[[..], [..], [..], [..]]``
       (orjson), absent when all four are empty
``g``  a gap marker instead of a frame: how many appends this process dropped (its
       queue overflowed while Redis was away); readers treat it like a trimmed range
``n``  ``<producer tag>:<sequence number>``: which process appended it, and its number
       there (readers skip a number they delivered already: ``_redis_scripts``)
``o``  a marker instead of a frame too large for the history (over ``max_frame_bytes``):
       the frame's size in bytes. The frame itself waits a few seconds, for the readers
       to deliver it live, in the entry of the same id in ``<stream key>:live``; a
       replay yields the marker (an ``Entry`` whose frame is empty)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.stores.base import Entry

SEQ_BITS = 20
MAX_SEQ = (1 << SEQ_BITS) - 1
# 13 digits of milliseconds last until the year 2286; 20 allows any 64-bit value.
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})\Z")
_MAX_MS = (1 << 64) - 1
ZERO_ID = "0-0"


def offset_of(stream_id: str) -> int | None:
    """The offset of a stream id; ``None`` when it is malformed or its seq is too large."""
    match = _STREAM_ID.match(stream_id)
    if match is None or not stream_id.isascii():
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _MAX_MS or seq > MAX_SEQ:
        return None
    return (ms << SEQ_BITS) | seq


def id_of(offset: int) -> str:
    """The stream id of an offset (``offset_of``'s inverse)."""
    if offset < 0:
        raise ValueError("offsets are not negative")
    return f"{offset >> SEQ_BITS}-{offset & MAX_SEQ}"


def encode_targets(targets: Targets, exclude: Targets) -> bytes:
    """The ``t`` field, or ``b""`` when nobody in particular is addressed or excluded."""
    if not targets and not exclude:
        return b""
    return orjson.dumps([targets.rooms, targets.clients, exclude.rooms, exclude.clients])


@dataclass(frozen=True, slots=True)
class Decoded:
    """One stream entry read back: an ``Entry`` or a gap marker, and its predecessor."""

    stream_id: str
    previous: str
    entry: Entry | None
    """``None`` for a gap marker or an entry that could not be decoded."""
    gap: bool = False
    oversized: bool = False
    """An ``o`` marker: ``entry.frame`` is empty, the frame is in the live stream."""
    producer: bytes = b""
    """The appending process's tag (``n``), empty for an entry without one."""
    number: int = 0
    """Its number at that producer (``n``)."""


def _names(value: object) -> tuple[str, ...]:
    if type(value) is not list or not all(type(item) is str for item in value):
        raise ValueError("a target list must hold strings")
    return tuple(value)


def decode(stream_id: bytes, fields: dict[bytes, bytes]) -> Decoded:
    """Read one entry; raises ``ValueError`` when it is not one that ``RedisLog`` wrote."""
    sid = stream_id.decode("ascii")
    offset = offset_of(sid)
    if offset is None:
        raise ValueError(f"stream id {sid!r} does not fit an offset")
    previous = fields.get(b"p", b"").decode("ascii", errors="replace")
    if b"g" in fields:
        return Decoded(sid, previous, None, gap=True)
    frame = fields.get(b"f")
    oversized = frame is None and b"o" in fields
    if oversized:
        frame = b""
    elif frame is None:
        raise ValueError(f"stream entry {sid} has no frame")
    targets = exclude = NOBODY
    packed = fields.get(b"t")
    if packed:
        lists = orjson.loads(packed)
        if type(lists) is not list or len(lists) != 4:
            raise ValueError(f"stream entry {sid} has malformed targets")
        rooms, clients, ex_rooms, ex_clients = (_names(item) for item in lists)
        targets, exclude = Targets(rooms, clients), Targets(ex_rooms, ex_clients)
    entry = Entry(offset, frame.decode(), targets, exclude)
    producer, number = _producer(fields.get(b"n"))
    return Decoded(sid, previous, entry, oversized=oversized, producer=producer, number=number)


def _producer(value: bytes | None) -> tuple[bytes, int]:
    """``n``'s tag and number; nothing for a missing or malformed one (never skipped)."""
    if not value:
        return b"", 0
    tag, _, number = value.rpartition(b":")
    if not tag or not number.isdigit() or len(number) > 20:
        return b"", 0
    return tag, int(number)
