"""A sans-I/O RESP2 reader for one Redis pub/sub connection.

Feed it the bytes a socket returned, get back the replies they completed. A bulk string
longer than ``max_bulk_length`` is never buffered: its length header is read, its bytes
are counted and thrown away as they arrive, and it is reported as ``Skipped(length)``.
So the memory one connection holds is bounded by ``max_bulk_length`` plus the chunk
being fed, whatever the server sends. ``push_from`` turns a reply into what a
subscriber acts on (a message, an oversize message, a subscription ack, a pong).

No I/O, no event loop: the shell around it (``_pubsub``) owns the socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

# Redis's own limits on the lines it sends (integers, lengths, status and error text) are
# far below this; a longer line means the peer is not Redis or the stream is corrupt.
MAX_LINE_LENGTH = 64 * 1024
# Pub/sub replies are flat arrays of three or four items.
MAX_ARRAY_LENGTH = 1024
MAX_DEPTH = 8
_CRLF = b"\r\n"


class ProtocolError(ValueError):
    """The bytes are not valid RESP2, or break one of the reader's limits."""


@dataclass(frozen=True, slots=True)
class RespError:
    """An error reply (``-ERR ...``): the text after the dash."""

    message: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A bulk string over the limit: its ``length`` bytes were discarded unread."""

    length: int


RespValue: TypeAlias = bytes | str | int | RespError | Skipped | list["RespValue"] | None
"""A parsed reply: bulk string ``bytes``, simple string ``str``, ``int``, null ``None``."""


class RespReader:
    """Incremental RESP2 parser: ``feed(bytes)`` returns the replies completed so far.

    Once ``feed`` raised ``ProtocolError`` the stream cannot be resynchronised: every
    later call raises too, and the caller must drop the connection.
    """

    def __init__(self, max_bulk_length: int) -> None:
        if max_bulk_length < 0:
            raise ValueError("max_bulk_length must not be negative")
        self.max_bulk_length = max_bulk_length
        self._buffer = bytearray()
        # Arrays being filled, innermost last: [items still expected, items so far].
        self._arrays: list[tuple[int, list[RespValue]]] = []
        self._bulk = -1  # length of the bulk string whose header was read, or -1
        self._skip = 0  # bytes of an oversize bulk string still to discard
        self._skipped = -1  # length of the oversize bulk string being discarded, or -1
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held right now (for tests of the memory bound)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[RespValue]:
        """Take the next bytes of the stream; return every reply they completed."""
        if self._failed is not None:
            raise ProtocolError(f"reader failed earlier: {self._failed}")
        view = memoryview(data)
        if self._skip:
            # Discard straight from the input, so an oversize payload is never copied.
            n = min(self._skip, len(view))
            self._skip -= n
            view = view[n:]
        self._buffer += view
        out: list[RespValue] = []
        try:
            self._parse(out)
        except ProtocolError as exc:
            self._failed = exc
            self._buffer.clear()
            raise
        return out

    def _parse(self, out: list[RespValue]) -> None:
        buffer = self._buffer
        pos = 0
        while True:
            if self._skip:
                n = min(self._skip, len(buffer) - pos)
                self._skip -= n
                pos += n
                if self._skip:
                    break
            if self._skipped >= 0:
                if len(buffer) - pos < 2:
                    break
                _expect_crlf(buffer, pos)
                pos += 2
                self._complete(Skipped(self._skipped), out)
                self._skipped = -1
                continue
            if self._bulk >= 0:
                end = pos + self._bulk
                if len(buffer) < end + 2:
                    break
                _expect_crlf(buffer, end)
                with memoryview(buffer) as view:  # one copy, not a bytearray slice and another
                    value = bytes(view[pos:end])
                pos = end + 2
                self._bulk = -1
                self._complete(value, out)
                continue
            end = buffer.find(_CRLF, pos)
            if end < 0:
                if len(buffer) - pos > MAX_LINE_LENGTH:
                    raise ProtocolError(f"a line longer than {MAX_LINE_LENGTH} bytes")
                break
            if end - pos > MAX_LINE_LENGTH:
                raise ProtocolError(f"a line longer than {MAX_LINE_LENGTH} bytes")
            kind, line = buffer[pos], bytes(buffer[pos + 1 : end])
            pos = end + 2
            self._header(kind, line, out)
        # bytearray deletes from the front in O(1) amortised: no quadratic copying.
        del buffer[:pos]

    def _header(self, kind: int, line: bytes, out: list[RespValue]) -> None:
        """Act on one type-prefixed line: a complete value, or the start of one."""
        if kind == 0x24:  # "$" bulk string
            length = _integer(line)
            if length == -1:
                self._complete(None, out)
            elif length < -1:
                raise ProtocolError(f"invalid bulk string length {length}")
            elif length > self.max_bulk_length:
                self._skip, self._skipped = length, length
            else:
                self._bulk = length
        elif kind == 0x2A:  # "*" array
            length = _integer(line)
            if length == -1:
                self._complete(None, out)
            elif length < -1 or length > MAX_ARRAY_LENGTH:
                raise ProtocolError(f"invalid or too long array length {length}")
            elif length == 0:
                self._complete([], out)
            elif len(self._arrays) >= MAX_DEPTH:
                raise ProtocolError(f"arrays nested deeper than {MAX_DEPTH}")
            else:
                self._arrays.append((length, []))
        elif kind == 0x3A:  # ":" integer
            self._complete(_integer(line), out)
        elif kind == 0x2B:  # "+" simple string
            self._complete(line.decode("utf-8", "replace"), out)
        elif kind == 0x2D:  # "-" error
            self._complete(RespError(line.decode("utf-8", "replace")), out)
        else:
            raise ProtocolError(f"unknown RESP2 type byte {bytes([kind])!r}")

    def _complete(self, value: RespValue, out: list[RespValue]) -> None:
        """File a finished value into the innermost open array, or hand it out."""
        arrays = self._arrays
        while arrays:
            expected, items = arrays[-1]
            items.append(value)
            if len(items) < expected:
                return
            arrays.pop()
            value = items
        out.append(value)


def _integer(line: bytes) -> int:
    # int() would also take "+1", " 1" and "1_0"; RESP allows only an optional minus.
    digits = line[1:] if line[:1] == b"-" else line
    if not digits.isdigit() or len(digits) > 19:
        raise ProtocolError(f"invalid integer {line[:32]!r}")
    return int(line)


def _expect_crlf(buffer: bytearray, pos: int) -> None:
    if buffer[pos : pos + 2] != _CRLF:
        raise ProtocolError("bulk string not terminated by CRLF")


# -- pub/sub pushes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A message published on a subscribed channel."""

    channel: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class OversizeMessage:
    """A message whose payload was over the limit and was discarded unread.

    ``channel`` is ``None`` when the channel name itself was over the limit.
    """

    channel: bytes | None
    length: int


@dataclass(frozen=True, slots=True)
class SubscriptionAck:
    """Redis confirming a SUBSCRIBE or UNSUBSCRIBE of one channel."""

    kind: str
    channel: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a PING sent on a subscribed connection."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Anything else: a status or error reply (``AUTH``), or an unexpected push."""

    value: RespValue


Push = Message | OversizeMessage | SubscriptionAck | Pong | Reply


def push_from(value: RespValue) -> Push:
    """What a reply read on a pub/sub connection means to a subscriber."""
    if not isinstance(value, list) or not value or not isinstance(value[0], bytes):
        return Reply(value)
    kind = value[0]
    if kind == b"message" and len(value) == 3:
        channel, data = value[1], value[2]
        if isinstance(channel, bytes) and isinstance(data, bytes):
            return Message(channel, data)
        if isinstance(data, Skipped):
            return OversizeMessage(channel if isinstance(channel, bytes) else None, data.length)
        if isinstance(channel, Skipped) and isinstance(data, bytes):
            return OversizeMessage(None, channel.length + len(data))
    elif kind in (b"subscribe", b"unsubscribe") and len(value) == 3:
        if isinstance(value[1], bytes):
            return SubscriptionAck(kind.decode(), value[1])
    elif kind == b"pong":
        return Pong()
    return Reply(value)
