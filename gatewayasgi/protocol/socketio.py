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


def _deconstruct(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        attachments.append(bytes(value))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(value, (list, tuple)):
        return [_deconstruct(item, attachments) for item in value]
    if isinstance(value, dict):
        return {key: _deconstruct(item, attachments) for key, item in value.items()}
    dump = getattr(value, "model_dump", None)
    if dump is not None:  # a pydantic model holding bytes
        return _deconstruct(dump(), attachments)
    return value


def _reconstruct(value: Any, attachments: list[bytes]) -> Any:
    if type(value) is dict:
        if value.get("_placeholder") is True and len(value) == 2:
            number = value.get("num")
            if type(number) is int and 0 <= number < len(attachments):
                return attachments[number]
            raise FrameError("Invalid binary placeholder")
        return {key: _reconstruct(item, attachments) for key, item in value.items()}
    if type(value) is list:
        return [_reconstruct(item, attachments) for item in value]
    return value


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


class SocketIOProtocol(WireProtocol):
    """Socket.IO v5 packets in Engine.IO v4 message frames (namespace left out)."""

    name = "socketio"

    def decode(self, raw: str | bytes) -> Frame:
        if type(raw) is not str:
            raise FrameError("Socket.IO packets are text")
        attachments: list[bytes] = []
        kind = raw[1:2]
        start = 2
        if kind in (BINARY_EVENT, BINARY_ACK):  # only these carry attachments
            raw, attachments = split_frame(raw)
            start = raw.index("-", 2) + 1
        end = start
        while end < len(raw) and raw[end].isdigit():
            end += 1
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
