"""The gatewayasgi JSON wire protocol, client side (pure: no I/O).

Client -> server: ``{"event", "data", "id"?}``; the server puts the same ``id`` on its reply
(an automatic response, or an error frame ``{"event": "error", "data": {"message", ...}}``):
that is the acknowledgement ``call`` waits for. Server -> client calls are
``{"event", "data", "ack": N}``, answered with ``{"event": "$ack", "id": N, "data": R}`` or
``{"event": "$ack", "id": N, "error": {"message": ...}}``. Frames a session can recover
carry an opaque ``"offset"`` string (see ``docs/recovery.md``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeAlias

import orjson

ERROR_EVENT = "error"
ACK_EVENT = "$ack"
SESSION_EVENT = "$session"
GAP_EVENT = "$gap"
"""Frames for this client may have been lost between the server's workers:
``{"event": "$gap", "data": {"reason": "backplane"}}``."""
ATTACH_EVENT = "$attach"
"""Re-attaches to a keyed stream (``key``, after sequence ``after``)."""
CANCEL_EVENT = "$cancel"
"""Cancels the stream whose request carried the frame's ``id``."""
END_FRAME = '{"event":"$end"}'
"""Sent before a deliberate close: the server ends the session (``docs/recovery.md``)."""

FrameId: TypeAlias = "str | int"


class InboundFrame(NamedTuple):
    """One decoded server frame."""

    event: str
    data: Any
    id: FrameId | None = None
    """Present on the reply to a client frame that carried an id."""
    ack: int | None = None
    """Present when the server calls the client and waits for a ``$ack`` answer."""
    offset: str | None = None
    """The frame's position in the session's history (recovery on)."""
    seq: int | None = None
    """Present on an item of a stream (numbered from 1); ``id`` names the stream."""
    end: bool = False
    """True on the end of a stream (``cancelled`` when the client cancelled it)."""
    cancelled: bool = False
    missing: bool = False
    """True on the end answering a ``$attach`` whose key names no stream."""


class Message(NamedTuple):
    """A server event as ``receive()`` returns it: ``event, data = await client.receive()``."""

    event: str
    data: Any


def decode(raw: str | bytes) -> InboundFrame | None:
    """Parse a text or binary message; ``None`` for anything but a ``{"event": str}`` object."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return frame_of(value)


def frame_of(value: Any) -> InboundFrame | None:
    """A parsed message as a frame; ``None`` for anything but a ``{"event": str}`` map."""
    if not isinstance(value, dict):
        return None
    event = value.get("event")
    if not isinstance(event, str) or not event:
        return None
    frame_id = value.get("id")
    if not isinstance(frame_id, (str, int)) or isinstance(frame_id, bool):
        frame_id = None
    ack = value.get("ack")
    if not isinstance(ack, int) or isinstance(ack, bool):
        ack = None
    offset = value.get("offset")
    if not isinstance(offset, str):
        offset = None
    seq = value.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        seq = None
    end = value.get("end") is True
    cancelled = value.get("cancelled") is True
    missing = value.get("missing") is True
    return InboundFrame(
        event, value.get("data"), frame_id, ack, offset, seq, end, cancelled, missing
    )


def encode_frame(frame: dict[str, Any]) -> str:
    """Any frame map as JSON text. Raises ``TypeError`` for non-JSON data."""
    return _dumps(frame)


def encode_event(event: str, data: Any, frame_id: FrameId | None = None) -> str:
    """``{"event", "data"}`` plus ``"id"`` when given. Raises ``TypeError`` for non-JSON data."""
    frame: dict[str, Any] = {"event": event, "data": data}
    if frame_id is not None:
        frame["id"] = frame_id
    return _dumps(frame)


def encode_ack_result(ack: int, result: Any) -> str:
    """The answer to a server call whose handler returned ``result``."""
    try:
        return _dumps({"event": ACK_EVENT, "id": ack, "data": result})
    except TypeError as exc:
        return encode_ack_error(ack, f"Answer is not JSON-serialisable: {exc}")


def encode_ack_error(ack: int, message: str) -> str:
    """The answer to a server call whose handler raised or does not exist: only the message."""
    return _dumps({"event": ACK_EVENT, "id": ack, "error": {"message": message}})


def error_parts(data: Any) -> tuple[str, dict[str, Any]]:
    """An error frame's ``data`` as ``(message, details)``; ``message`` is always a string."""
    if isinstance(data, dict):
        message = data.get("message")
        details = {key: value for key, value in data.items() if key != "message"}
        return (message if isinstance(message, str) else "Server error"), details
    return (data if isinstance(data, str) else "Server error"), {}


def _dumps(frame: dict[str, Any]) -> str:
    try:
        return orjson.dumps(frame).decode()
    except orjson.JSONEncodeError as exc:  # a TypeError subclass; say what failed
        raise TypeError(f"frame {frame.get('event')!r} is not JSON-serialisable: {exc}") from exc
