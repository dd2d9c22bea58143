"""The MessagePack wire protocol: the JSON protocol's frames, in binary (pure).

A client that offers the ``gatewayasgi.msgpack`` subprotocol speaks it (when the
middleware registers it: ``GatewayMiddleware(..., protocols=[MessagePack()])``). Frames
are the same maps as the JSON protocol's (``{"event", "data", "id"?}``, ``$ack`` answers,
``$session``, error frames, ``"offset"`` on recoverable frames), each one binary
WebSocket message, and ``bytes`` travel as MessagePack ``bin`` both ways (the JSON
protocol sends them as base64 text).

Frames kept in the history or carried by the backplane are in the canonical (JSON) form:
this protocol transcodes them (once per fan-out), so ``bytes`` emitted on another worker,
or replayed, arrive as the base64 text JSON carries. A local emit is encoded from its data.

Decoding is bounded as the JSON codec's is: anything but a map with a string ``event``
and a string (at most 128 characters) or integer ``id`` is a ``FrameError``; so is
MessagePack that fails to parse (ext types and timestamps included: frames hold data
only), a map key that is not a string, and nesting deeper than ``MAX_DEPTH`` (deeper data
could never be echoed back). Needs ``pip install "gatewayasgi[msgpack]"`` (``ormsgpack``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gatewayasgi._types import JSONValue
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.carrier import Carrier, bounded
from gatewayasgi.protocol.codec import (
    ACK_EVENT,
    ERROR_EVENT,
    MAX_ERROR_FRAME,
    MAX_ERROR_MESSAGE,
    MAX_ID_LENGTH,
    TOO_DEEP,
    Answer,
    Frame,
    FrameError,
)

try:
    import ormsgpack
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'gatewayasgi.protocol.msgpack needs ormsgpack: pip install "gatewayasgi[msgpack]"'
    ) from exc

SUBPROTOCOL = "gatewayasgi.msgpack"
"""Offered by clients that speak MessagePack; the server selects it when it serves it."""

INVALID_MSGPACK = "Invalid MessagePack payload"
NOT_A_MAP = "WebSocket message must be a MessagePack map"
NOT_BINARY = "MessagePack frames must be binary WebSocket messages"

MAX_DEPTH = 255
"""Levels of nesting a frame may have, its own map included: ormsgpack reads 1,022 but
writes 255, and a reply puts the data at the depth it came in."""

_CONTAINERS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
"""The first bytes of MessagePack maps and arrays: every level of nesting takes one."""
_NOT_CONTAINERS = bytes(byte for byte in range(256) if byte not in _CONTAINERS)
_OFFSET_KEY = ormsgpack.packb("offset")
_TRACE_KEY = ormsgpack.packb(codec.TRACE_MEMBER)


def _default(obj: Any) -> Any:
    # ormsgpack writes dataclasses, datetimes, UUIDs, enums and bytes itself. Pydantic
    # models are dumped in Python mode, so their ``bytes`` stay bytes; whatever that
    # leaves (sets, Decimal, paths) comes back here and is made JSON-like.
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump()
    if isinstance(obj, (tuple, set, frozenset)):  # tuple subclasses: Socket.IO's Arguments
        return list(obj)
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(obj)
    except PydanticSerializationError:
        raise TypeError(
            f"Object of type {type(obj).__name__} is not MessagePack serializable"
        ) from None


_OPTIONS = ormsgpack.OPT_NON_STR_KEYS


def packb(value: Any) -> bytes:
    """Serialise any JSON-able value (``bytes`` as ``bin``, pydantic models too)."""
    return ormsgpack.packb(value, default=_default, option=_OPTIONS)


def _too_deep(raw: bytes, obj: Any) -> bool:
    # Counting the container bytes runs in C; only a frame with enough of them to be that
    # deep pays for the exact check (a trial encode, which fails past 255 levels).
    if len(raw.translate(None, _NOT_CONTAINERS)) <= MAX_DEPTH:
        return False
    try:
        ormsgpack.packb(obj)
    except ormsgpack.MsgpackEncodeError:
        return True
    return False


def decode(raw: str | bytes) -> Frame:
    """Parse one binary frame into a ``Frame`` (see the module docstring for the rules)."""
    if type(raw) is not bytes:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw)
        else:
            raise FrameError(NOT_BINARY)
    try:
        obj = ormsgpack.unpackb(raw)
    except ormsgpack.MsgpackDecodeError as exc:
        # ormsgpack refuses past 1,022 levels with "Recursion limit reached".
        raise FrameError(TOO_DEEP if "ecursion" in str(exc) else INVALID_MSGPACK) from None
    if type(obj) is not dict:
        raise FrameError(NOT_A_MAP)
    event = obj.get("event")
    frame_id = obj.get("id")
    if len(raw) > MAX_DEPTH and _too_deep(raw, obj):
        valid = type(frame_id) is int or (type(frame_id) is str and len(frame_id) <= MAX_ID_LENGTH)
        raise FrameError(TOO_DEEP, frame_id if valid else None)
    if (
        type(event) is not str
        or not event
        or (
            frame_id is not None
            and (type(frame_id) is not int)
            and (type(frame_id) is not str or len(frame_id) > MAX_ID_LENGTH)
        )
    ):
        raise codec._envelope_error(event, frame_id)
    if event == ACK_EVENT:
        answer = tuple.__new__(Answer, (event, obj.get("data"), frame_id))
        answer.error = obj.get("error")
        return answer
    if "key" in obj or event == codec.ATTACH_EVENT:
        return codec.stream_frame(
            event, obj.get("data"), frame_id, obj.get("key"), obj.get("after", 0)
        )
    return tuple.__new__(Frame, (event, obj.get("data"), frame_id))


def encode(event: str, data: Any, frame_id: str | int | None = None) -> bytes:
    """``{"event", "data"}`` (plus ``"id"`` when given) as one MessagePack map."""
    message = (
        {"event": event, "data": data}
        if frame_id is None
        else {"event": event, "data": data, "id": frame_id}
    )
    return ormsgpack.packb(message, default=_default, option=_OPTIONS)


def encode_error(message: str, frame_id: str | int | None = None, **details: Any) -> bytes:
    """An error frame, never longer than ``MAX_ERROR_FRAME`` bytes (as the JSON one)."""
    frame = encode(ERROR_EVENT, {"message": message, **details}, frame_id)
    if len(frame) <= MAX_ERROR_FRAME:
        return frame
    data = {"message": message[:MAX_ERROR_MESSAGE], "truncated": True}
    return encode(ERROR_EVENT, data, frame_id)


class MessagePack(WireProtocol):
    """The JSON protocol's frames in MessagePack, selected by ``gatewayasgi.msgpack``.

    Register it with ``GatewayMiddleware(..., protocols=[MessagePack()])``: every gateway
    then serves it beside JSON (and Socket.IO), from the same rooms and history.
    """

    name = "msgpack"
    subprotocol = SUBPROTOCOL

    def __repr__(self) -> str:
        return "MessagePack()"

    def decode(self, raw: str | bytes) -> Frame:
        return decode(raw)

    def encode_reply(self, event: str, result: Any, frame_id: str | int | None) -> bytes:
        if type(result) is dict and "event" in result and "data" in result:
            message = result if frame_id is None else {**result, "id": frame_id}
            return packb(message)
        return encode(event, result, frame_id)

    def encode_error(
        self, message: str, frame_id: str | int | None = None, details: dict[str, Any] | None = None
    ) -> bytes:
        return encode_error(message, frame_id, **(details or {}))

    def encode_emit(self, event: str, data: JSONValue) -> bytes:
        return encode(event, data)

    def encode_emit_members(
        self, event: str, data: JSONValue, members: Mapping[str, JSONValue]
    ) -> bytes:
        return packb({"event": event, "data": data, **members})

    def encode_call(self, event: str, data: JSONValue, number: int) -> bytes:
        return packb({"event": event, "data": data, "ack": number})

    streams = True
    emit_streams = True

    def encode_stream_item(
        self, event: str, item: Any, frame_id: str | int, sequence: int
    ) -> bytes:
        return packb({"event": event, "data": item, "id": frame_id, "seq": sequence})

    def encode_stream_end(
        self, event: str, value: Any, frame_id: str | int, *, cancelled: bool = False
    ) -> bytes:
        frame: dict[str, Any] = {"event": event, "data": value, "id": frame_id, "end": True}
        if cancelled:
            frame["cancelled"] = True
        return packb(frame)

    def encode_stream_missing(self, event: str, frame_id: str | int) -> bytes:
        return packb(
            {
                "event": codec.ATTACH_EVENT,
                "data": None,
                "id": frame_id,
                "end": True,
                "missing": True,
            }
        )

    def answer_error(self, raw: str | bytes) -> JSONValue:
        if isinstance(raw, str):
            return None
        try:
            obj = ormsgpack.unpackb(raw)
        except ormsgpack.MsgpackDecodeError:
            return None
        return obj.get("error") if type(obj) is dict else None

    def carrier(self, raw: str | bytes) -> Carrier | None:
        # As JSON's: only a frame holding the key is parsed again (a scan in C).
        if type(raw) is not bytes or _TRACE_KEY not in raw:
            return None
        try:
            obj = ormsgpack.unpackb(raw)
        except ormsgpack.MsgpackDecodeError:
            return None
        return bounded(obj.get(codec.TRACE_MEMBER)) if type(obj) is dict else None

    def with_offset(self, frame: str | bytes, offset: str) -> bytes:
        # ``encode_emit`` writes a fixmap of two entries: one more entry is one more in
        # its first byte, and the pair appended. One concatenation per fan-out.
        body = frame.encode() if isinstance(frame, str) else frame
        head = body[0] if body else 0
        if 0x80 <= head < 0x8F:
            return bytes((head + 1,)) + body[1:] + _OFFSET_KEY + ormsgpack.packb(offset)
        message = ormsgpack.unpackb(body)
        message["offset"] = offset
        return packb(message)

    def transcode(self, frame: Payload) -> bytes:
        # A canonical frame (JSON text, with its offset when it has one), from the
        # history or another worker: the same map in MessagePack.
        return ormsgpack.packb(orjson.loads(frame), option=_OPTIONS)


MESSAGEPACK = MessagePack()
"""A shared instance (stateless)."""
