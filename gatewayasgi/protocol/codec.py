"""Frame codec: wire bytes/text <-> ``{"event", "data", "id"?}`` frames.

Pure functions only. Decoding validates the envelope (object, event, id) and raises
``FrameError`` with the exact message the client will see; encoding serialises once,
so a frame sent to many sockets is the same ``str`` object for all of them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from gatewayasgi._types import JSONValue
from gatewayasgi.protocol.carrier import Carrier, bounded

INVALID_JSON = "Invalid JSON payload"
NOT_AN_OBJECT = "WebSocket message must be a JSON object"
MISSING_EVENT = "WebSocket message is missing an event"
EVENT_NOT_A_STRING = "WebSocket message event must be a string"
TOO_DEEP = "WebSocket message is nested too deeply"
INVALID_ID = "WebSocket message id must be a string or an integer"
ID_TOO_LONG = "WebSocket message id must be at most 128 characters"
UNKNOWN_EVENT = "No handler for WebSocket event '{event}'"
ACCESS_DENIED = "Access denied: insufficient permissions"
INTERNAL_ERROR = "Internal server error"
RATE_LIMITED = "Rate limit exceeded"

ERROR_EVENT = "error"

CANCEL_EVENT = "$cancel"
"""A client's frame cancelling the stream that answers its request ``id``."""
STREAM_NEEDS_ID = "A stream request needs an id"
STREAM_LIMIT = "Too many streams: at most {limit} at once per connection"
STREAM_ID_TAKEN = "A stream with this id is running already"
STREAM_TIMEOUT = "Stream timed out"
STREAM_ITEM_TOO_LARGE = "Stream item larger than the connection's outbox allows"
STREAM_UNSUPPORTED = "Streams are not served over this protocol"
ATTACH_EVENT = "$attach"
"""A client's frame re-attaching to a keyed stream (``key``, after sequence ``after``)."""
MAX_STREAM_KEY = 256
BAD_STREAM_KEY = f"Stream key must be a non-empty string of at most {MAX_STREAM_KEY} characters"
BAD_STREAM_AFTER = "Stream position (after) must be an integer >= 0"
STREAM_MISSING = "No stream runs with this key"
STREAM_ATTACH_REFUSED = "Attaching to this stream is not allowed"
STREAM_KEY_IN_USE = "A stream with this key is running already"
STREAM_TRIMMED = "The stream's items from that position are no longer kept"
ACK_EVENT = "$ack"
"""The event of a client's answer to a server -> client call (``runtime.calls``)."""
GAP_EVENT = "$gap"
"""The server's frame telling a client that frames for it may have been lost on the way
between workers: ``{"event": "$gap", "data": {"reason": "backplane"}}``."""
GAP_BACKPLANE = {"reason": "backplane"}


class Frame(NamedTuple):
    """One decoded client frame. ``id`` is ``None`` when the client sent none."""

    event: str
    data: JSONValue
    id: str | int | None


class Answer(Frame):
    """A decoded ``$ack`` frame (a client's answer to a server -> client call), which
    also carries its ``error`` member, read in the same parse: an answer is parsed once,
    whatever its size. Still the ``(event, data, id)`` tuple every frame is."""

    error: JSONValue
    """The answer's ``error`` member; ``None`` when the client answered with data."""


class StreamFrame(Frame):
    """A frame that names a stream ``key``: a request for a keyed stream (one that
    outlives its connection), or a ``$attach`` to one. Still the ``(event, data, id)``
    tuple every frame is."""

    key: str
    after: int
    """``$attach`` only: the last sequence the client has (0: from the start)."""


def stream_frame(
    event: str, data: JSONValue, frame_id: str | int | None, key: object, after: object = 0
) -> StreamFrame:
    """A ``StreamFrame``, its key and position checked (``FrameError`` otherwise)."""
    if type(key) is not str or not key or len(key) > MAX_STREAM_KEY:
        raise FrameError(BAD_STREAM_KEY, frame_id)
    if type(after) is not int or after < 0:
        raise FrameError(BAD_STREAM_AFTER, frame_id)
    frame = tuple.__new__(StreamFrame, (event, data, frame_id))
    frame.key = key
    frame.after = after
    return frame


@dataclass(frozen=True, slots=True)
class FrameError(Exception):
    """A client frame that cannot be dispatched; ``message`` goes out in an error frame."""

    message: str
    id: str | int | None = None


def _default(obj: Any) -> Any:
    # orjson serialises dataclasses, datetimes, UUIDs and enums itself; pydantic
    # models are the one common type it needs help with.
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    if isinstance(obj, tuple):  # a tuple subclass (Socket.IO's ``Arguments``)
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        # Binary data reaches Socket.IO clients as attachments; in JSON it is base64.
        return base64.b64encode(obj).decode()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Serialise any JSON-able value (pydantic models included) to UTF-8 JSON bytes."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


MAX_ID_LENGTH = 128
"""Longest string ``id``: it is echoed on the reply, so it must stay small."""

MAX_DEPTH = 254
"""orjson reads 1024 levels but writes only 254: deeper input could never be echoed."""


def _too_deep(raw: str | bytes, obj: Any) -> bool:
    # Counting brackets runs in C at memory speed; only a frame with enough of them to
    # be that deep pays for the exact check (a trial encode).
    if isinstance(raw, str):
        brackets = raw.count("[") + raw.count("{")
    else:
        brackets = raw.count(b"[") + raw.count(b"{")
    if brackets <= MAX_DEPTH:
        return False
    try:
        orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return True
    return False


def _envelope_error(event: Any, frame_id: Any) -> FrameError:
    # The slow path: work out which rule a frame broke, in the order clients expect.
    if frame_id is not None and type(frame_id) is not str and type(frame_id) is not int:
        return FrameError(INVALID_ID)
    if type(frame_id) is str and len(frame_id) > MAX_ID_LENGTH:
        return FrameError(ID_TOO_LONG)
    if event is None or event == "":
        return FrameError(MISSING_EVENT, frame_id)
    return FrameError(EVENT_NOT_A_STRING, frame_id)


def decode(raw: str | bytes) -> Frame:
    """Parse one text or binary frame into a ``Frame``.

    Raises ``FrameError`` (carrying the frame's id when one could be read) for
    undecodable JSON, non-object messages, nesting deeper than ``MAX_DEPTH``, a
    missing or non-string event, or an id that is neither a string nor an integer.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError(INVALID_JSON) from None
    if type(obj) is not dict:
        raise FrameError(NOT_AN_OBJECT)
    if len(raw) > 2 * MAX_DEPTH and _too_deep(raw, obj):
        frame_id = obj.get("id")
        valid = type(frame_id) is int or (type(frame_id) is str and len(frame_id) <= MAX_ID_LENGTH)
        raise FrameError(TOO_DEEP, frame_id if valid else None)
    event = obj.get("event")
    frame_id = obj.get("id")
    if (
        type(event) is not str
        or not event
        or (
            frame_id is not None
            and (type(frame_id) is not int)
            and (type(frame_id) is not str or len(frame_id) > MAX_ID_LENGTH)
        )
    ):
        raise _envelope_error(event, frame_id)
    if event == ACK_EVENT:
        answer = tuple.__new__(Answer, (event, obj.get("data"), frame_id))
        answer.error = obj.get("error")
        return answer
    if "key" in obj or event == ATTACH_EVENT:
        return stream_frame(event, obj.get("data"), frame_id, obj.get("key"), obj.get("after", 0))
    # NamedTuple's generated __new__ is a Python-level function; tuple.__new__ builds
    # the same Frame without it (measured: 0.1 us of the ~1 us a frame costs).
    return tuple.__new__(Frame, (event, obj.get("data"), frame_id))


def encode(event: str, data: JSONValue, frame_id: str | int | None = None) -> str:
    """Serialise ``{"event", "data"}`` (plus ``"id"`` when given) to a text frame."""
    message = (
        {"event": event, "data": data}
        if frame_id is None
        else {"event": event, "data": data, "id": frame_id}
    )
    return orjson.dumps(message, default=_default, option=_OPTIONS).decode()


def encode_message(message: dict[str, Any], frame_id: str | int | None = None) -> str:
    """Serialise a handler's ready-made ``{"event", "data", ...}`` dict, adding ``"id"``."""
    if frame_id is not None:
        message = {**message, "id": frame_id}
    return dumps(message).decode()


MAX_ERROR_FRAME = 4096
"""Largest error frame in bytes: a bigger one is sent with its message cut and its
details dropped (``"truncated": true``), so no input can make an error reply grow."""
MAX_ERROR_MESSAGE = 512
"""Characters of an error message kept when an error frame has to be cut."""


def encode_error(message: str, frame_id: str | int | None = None, **details: JSONValue) -> str:
    """Serialise an error frame ``{"event": "error", "data": {"message": ..., **details}}``.

    Never longer than ``MAX_ERROR_FRAME`` bytes: details that do not fit are dropped.
    """
    text = encode(ERROR_EVENT, {"message": message, **details}, frame_id)
    if len(text) <= MAX_ERROR_FRAME // 4 or len(text.encode()) <= MAX_ERROR_FRAME:
        return text
    data = {"message": message[:MAX_ERROR_MESSAGE], "truncated": True}
    return encode(ERROR_EVENT, data, frame_id)


def encode_stream_item(event: str, item: Any, frame_id: str | int, sequence: int) -> str:
    """``{"event", "data", "id", "seq"}``: one item of the stream answering ``frame_id``."""
    message = {"event": event, "data": item, "id": frame_id, "seq": sequence}
    return orjson.dumps(message, default=_default, option=_OPTIONS).decode()


def encode_stream_missing(frame_id: str | int) -> str:
    """``{"event": "$attach", "data": null, "id", "end": true, "missing": true}``: no
    stream runs (or recently ran) with the key a ``$attach`` named."""
    return dumps(
        {"event": ATTACH_EVENT, "data": None, "id": frame_id, "end": True, "missing": True}
    ).decode()


def encode_stream_end(event: str, value: Any, frame_id: str | int, cancelled: bool) -> str:
    """``{"event", "data", "id", "end": true}`` (plus ``"cancelled": true``)."""
    frame: dict[str, Any] = {"event": event, "data": value, "id": frame_id, "end": True}
    if cancelled:
        frame["cancelled"] = True
    return dumps(frame).decode()


def is_reply_message(value: Any) -> bool:
    """True when a handler's return value is a complete ``{"event", "data"}`` message."""
    return type(value) is dict and "event" in value and "data" in value


TRACE_MEMBER = "trace"
"""The frame member a client puts propagation fields in: ``{"event": "say", "data": ..,
"trace": {"traceparent": "00-...-01"}}`` (``protocol.carrier`` bounds it)."""


def trace_carrier(raw: str | bytes) -> Carrier | None:
    """The ``trace`` member of a frame that ``decode`` accepted, or ``None`` when it has
    none or it is not a small object of strings (ignored: the frame is handled anyway).

    Only a frame whose text holds ``"trace"`` is parsed again (a scan in C): the others,
    and every frame while no instrument wraps handlers, pay nothing for it.
    """
    if type(raw) is str:
        if '"trace"' not in raw:
            return None
    elif b'"trace"' not in raw:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return bounded(obj.get(TRACE_MEMBER)) if type(obj) is dict else None


def answer_error(raw: str | bytes) -> JSONValue:
    """The ``error`` member of a ``$ack`` frame that ``decode`` accepted (``None`` when
    the client answered with data), parsing ``raw`` again: the session reads it from
    the ``Answer`` that ``decode`` returned instead (one parse)."""
    obj = orjson.loads(raw)
    return obj.get("error") if type(obj) is dict else None
