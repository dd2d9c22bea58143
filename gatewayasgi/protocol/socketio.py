"""The Socket.IO v5 wire protocol over Engine.IO v4 message packets (pure).

A packet is ``<type>[<attachments>-][/<namespace>,][<ack id>][<JSON array>]``; on the
wire it travels in an Engine.IO message packet (``4`` + packet). Frames here are that
Engine.IO text *without* the namespace: the namespace is the transport's business
(``gatewayasgi.socketio.links`` strips it on the way in and adds it on the way out), so
one encoding serves every connection of a gateway.

Binary attachments travel as separate Engine.IO packets after their packet. A frame with
attachments is kept as one ``str``: the packet, then each attachment as ``b`` + base64,
joined with ``\\x1e`` (the record separator HTTP long-polling joins packets with, which
orjson never writes unescaped). Polling sends such a frame as it is; WebSocket sends the
packet as text and each attachment as a binary message.

Mapping to gateway frames (``docs/socketio.md``): an event's arguments become the data
(``None``, the one argument, or an ``Arguments`` of several); the ack id becomes the
frame id; a handler's result answers the ack; an ``Arguments`` is spread into arguments.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from gatewayasgi._types import JSONValue
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.codec import ACK_EVENT, Frame, FrameError
from gatewayasgi.protocol.resume import SESSION_EVENT

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = "0123456"
SEPARATOR = "\x1e"
"""Between a packet and its attachments in one frame (and between polling packets)."""
MAX_ACK_ID_DIGITS = 15
"""Ack ids are integers below 10**15 (JavaScript's safe integers are 2**53)."""
MAX_ATTACHMENTS = 64
NOT_AN_ARRAY = "Socket.IO packet payload must be an array"
_ACK_ID = re.compile(r"[0-9]+")
"""An ack id: ASCII digits (``str.isdigit`` also takes ``"²"``, ``"٣"``...)."""


class Arguments(tuple):  # type: ignore[type-arg]
    """Several Socket.IO event arguments: the data of an event sent with more than one,
    and a value that ``emit``, a handler's result or an ack spreads into several.

    Native-JSON clients see it as a JSON array.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Arguments{tuple.__repr__(self)}"


class _Binary(Exception):
    """orjson met ``bytes``: the packet needs attachments."""


def _default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raise _Binary
    if isinstance(obj, tuple):
        return list(obj)
    return codec._default(obj)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _arguments(data: Any) -> list[Any]:
    """The argument list a value is sent as: an ``Arguments`` spreads."""
    return list(data) if type(data) is Arguments else [data]


MAX_DEPTH = 255
"""Deepest nesting a binary packet's arguments may have (orjson writes no deeper)."""


def _deconstruct(value: Any, attachments: list[bytes]) -> Any:
    """A copy of ``value`` with each ``bytes`` replaced by a placeholder (appended to
    ``attachments``, in document order). Iterative: the depth is bounded by
    ``MAX_DEPTH`` (a ``TypeError``, as orjson raises), not by the interpreter's stack."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    while stack:
        target, key, item, depth = stack.pop()
        if isinstance(item, (bytes, bytearray, memoryview)):
            attachments.append(bytes(item))
            target[key] = {"_placeholder": True, "num": len(attachments) - 1}
            continue
        if depth > MAX_DEPTH:
            raise TypeError("binary packet nested too deep")
        if isinstance(item, (list, tuple)):
            items: list[Any] = [None] * len(item)
            target[key] = items
            stack.extend((items, i, x, depth + 1) for i, x in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            copy = dict.fromkeys(item)
            target[key] = copy
            stack.extend((copy, k, x, depth + 1) for k, x in reversed(list(item.items())))
        else:
            dump = getattr(item, "model_dump", None)
            if dump is not None:  # a pydantic model holding bytes
                stack.append((target, key, dump(), depth + 1))
            else:
                target[key] = item
    return root[0]


def _reconstruct(args: list[Any], attachments: list[bytes]) -> list[Any]:
    """``args`` (just parsed: ours to change) with each placeholder replaced by its
    attachment, in place. Iterative: orjson parses 1,024 levels, more than the
    interpreter's stack holds in recursion."""
    stack: list[list[Any] | dict[Any, Any]] = [args]
    while stack:
        container = stack.pop()
        pairs = container.items() if type(container) is dict else enumerate(container)
        for key, value in list(pairs):
            if type(value) is dict:
                if value.get("_placeholder") is True and len(value) == 2:
                    number = value.get("num")
                    if type(number) is not int or not 0 <= number < len(attachments):
                        raise FrameError("Invalid binary placeholder")
                    container[key] = attachments[number]
                else:
                    stack.append(value)
            elif type(value) is list:
                stack.append(value)
    return args


def packet(kind: str, args: list[Any], ack: int | str | None = None) -> str:
    """An Engine.IO message carrying a Socket.IO packet of ``kind`` (EVENT or ACK) with
    ``args``; ``bytes`` among them become attachments (BINARY_EVENT / BINARY_ACK)."""
    number = "" if ack is None else str(ack)
    try:
        return f"4{kind}{number}{_dumps(args)}"
    except TypeError as exc:  # orjson wraps what ``default`` raised
        if not isinstance(exc.__cause__, _Binary):
            raise
    attachments: list[bytes] = []
    body = _dumps(_deconstruct(args, attachments))
    binary = BINARY_EVENT if kind == EVENT else BINARY_ACK
    parts = [f"4{binary}{len(attachments)}-{number}{body}"]
    parts.extend("b" + base64.b64encode(item).decode() for item in attachments)
    return SEPARATOR.join(parts)


def split_frame(frame: str) -> tuple[str, list[bytes]]:
    """A frame's packet text and its attachments (none for most frames)."""
    if SEPARATOR not in frame:
        return frame, []
    head, *rest = frame.split(SEPARATOR)
    return head, [base64.b64decode(part[1:]) for part in rest]


def join_frame(head: str, attachments: list[bytes]) -> str:
    """The inverse of ``split_frame``: a packet and its attachments as one frame."""
    if not attachments:
        return head
    parts = [head]
    parts.extend("b" + base64.b64encode(item).decode() for item in attachments)
    return SEPARATOR.join(parts)


def pack(head: str, attachments: list[bytes]) -> bytes:
    """A client's binary packet as its namespace's session reads it: the packet and each
    attachment, each after its length (4 bytes, big-endian). Its size is what the client
    sent, not base64's 4/3 of it, so ``max_message_size`` counts the attachments' bytes
    (a packet within ``max_payload`` is not refused for its encoding)."""
    encoded = head.encode()
    parts = [len(encoded).to_bytes(4, "big"), encoded]
    for attachment in attachments:
        parts.append(len(attachment).to_bytes(4, "big"))
        parts.append(attachment)
    return b"".join(parts)


def unpack(raw: bytes) -> tuple[str, list[bytes]]:
    """The inverse of ``pack``; ``FrameError`` for anything else."""
    parts: list[bytes] = []
    index, end = 0, len(raw)
    while index < end:
        if index + 4 > end:
            raise FrameError("Invalid binary packet")
        size = int.from_bytes(raw[index : index + 4], "big")
        index += 4
        if index + size > end:
            raise FrameError("Invalid binary packet")
        parts.append(raw[index : index + size])
        index += size
    if not parts:
        raise FrameError("Invalid binary packet")
    try:
        head = parts[0].decode()
    except UnicodeDecodeError:
        raise FrameError("Invalid binary packet") from None
    return head, parts[1:]


class SocketIOProtocol(WireProtocol):
    """Socket.IO v5 packets in Engine.IO v4 message frames (namespace left out)."""

    name = "socketio"
    rotates_token = False

    def decode(self, raw: str | bytes) -> Frame:
        attachments: list[bytes] = []
        if type(raw) is bytes:  # a binary packet from a Link (``pack``)
            raw, attachments = unpack(raw)
            if raw[1:2] not in (BINARY_EVENT, BINARY_ACK):
                raise FrameError("Invalid binary packet")
        elif type(raw) is not str:
            raise FrameError("Socket.IO packets are text")
        kind = raw[1:2]
        start = 2
        if kind in (BINARY_EVENT, BINARY_ACK):  # only these carry attachments
            if not attachments:
                try:
                    raw, attachments = split_frame(raw)
                except ValueError:  # bad base64
                    raise FrameError("Invalid binary attachment") from None
            start = raw.find("-", 2) + 1
            if start == 0:
                raise FrameError("Invalid binary packet")
        # ASCII digits only: ``"²".isdigit()`` is true, but ``int("²")`` fails.
        found = _ACK_ID.match(raw, start)
        end = found.end() if found is not None else start
        if end - start > MAX_ACK_ID_DIGITS:
            raise FrameError(codec.INVALID_ID)
        ack = int(raw[start:end]) if end > start else None
        try:
            args = orjson.loads(raw[end:])
        except orjson.JSONDecodeError:
            raise FrameError(codec.INVALID_JSON, ack) from None
        if type(args) is not list:
            raise FrameError(NOT_AN_ARRAY, ack)
        if attachments:
            args = _reconstruct(args, attachments)
        if kind in (EVENT, BINARY_EVENT):
            if not args:
                raise FrameError(codec.MISSING_EVENT, ack)
            event = args[0]
            if type(event) is not str:
                raise FrameError(codec.EVENT_NOT_A_STRING, ack)
            rest = args[1:]
        else:  # an ACK answering a server -> client call
            event, rest = ACK_EVENT, args
        if not rest:
            data: Any = None
        elif len(rest) == 1:
            data = rest[0]
        else:
            data = Arguments(rest)
        if event == codec.CANCEL_EVENT and ack is None:
            # ``socket.emit("$cancel", ackId)``: the stream answering that ack id ends.
            return Frame(event, None, data if type(data) is int else None)
        return Frame(event, data, ack)

    def encode_reply(self, event: str, result: Any, frame_id: str | int | None) -> Payload | None:
        if frame_id is not None:
            return packet(ACK, _arguments(result), frame_id)
        # As NestJS's Socket.IO adapter: without an ack, only a ``{"event", "data"}``
        # result is sent (as that event); other results have nobody to answer.
        if codec.is_reply_message(result):
            return self.encode_emit(result["event"], result["data"])
        return None

    def encode_error(
        self, message: str, frame_id: str | int | None = None, details: dict[str, Any] | None = None
    ) -> str:
        # The native error frame, bounded there: ``{"event":"error","data":<error>}``.
        native = codec.encode_error(message, None, **(details or {}))
        error = native[len('{"event":"error","data":') : -1]
        if frame_id is None:
            return f'42["error",{error}]'
        return f'43{frame_id}[{{"error":{error}}}]'

    def encode_emit(self, event: str, data: JSONValue) -> str:
        if event == SESSION_EVENT:
            return _connect_answer(data)
        return packet(EVENT, [event, *_arguments(data)])

    def encode_call(self, event: str, data: JSONValue, number: int) -> str:
        return packet(EVENT, [event, *_arguments(data)], number)

    # Streams: a request with an ack id; each item an event of the request's name with
    # ``{"id": <ack id>, "seq": n}`` as its last argument; the ack answers the end: the
    # final value, or ``null, {"cancelled": true}``; an error acks ``{"error": ...}``.
    streams = True

    def encode_stream_item(self, event: str, item: Any, frame_id: str | int, sequence: int) -> str:
        return packet(EVENT, [event, *_arguments(item), {"id": frame_id, "seq": sequence}])

    def encode_stream_end(
        self, event: str, value: Any, frame_id: str | int, *, cancelled: bool = False
    ) -> str:
        if cancelled:
            return packet(ACK, [None, {"cancelled": True}], frame_id)
        return packet(ACK, _arguments(value), frame_id)

    def encode_stream_missing(self, event: str, frame_id: str | int) -> str:
        return packet(ACK, [None, {"missing": True}], frame_id)

    def with_offset(self, frame: str | bytes, offset: str) -> str:
        # ``42[..]`` -> ``42[..,"<offset>"]``: socket.io's connection state recovery sends
        # the offset as the last argument.
        text = frame if isinstance(frame, str) else frame.decode()
        cut = text.find(SEPARATOR)
        if cut < 0:
            return f'{text[:-1]},"{offset}"]'
        return f'{text[: cut - 1]},"{offset}"]{text[cut:]}'

    def transcode(self, frame: Payload) -> str:
        obj = orjson.loads(frame)
        args = [obj["event"], obj.get("data")]
        if "offset" in obj:
            args.append(obj["offset"])
        return packet(EVENT, args)

    def answer_error(self, raw: str | bytes) -> JSONValue:
        return None  # a Socket.IO ack carries arguments only


def _connect_answer(session: Any) -> str:
    """The CONNECT answer of a gateway with recovery, from its ``$session`` data: ``sid``
    is the session's id, ``pid`` what the client offers back to resume it."""
    pid = f"{session['id']}.{session['token']}.{session['epoch']}.{session['offset']}"
    return "40" + _dumps({"sid": session["id"], "pid": pid})


SOCKETIO = SocketIOProtocol()
"""The protocol instance (stateless, shared)."""
