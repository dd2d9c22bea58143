"""Engine.IO v4 framing and the Socket.IO packet header (pure: no I/O).

Engine.IO packets are one character of type then data: ``0`` open, ``1`` close, ``2``
ping, ``3`` pong, ``4`` message, ``5`` upgrade, ``6`` noop. HTTP long-polling joins
several in one body with ``\\x1e``, binary ones as ``b`` + base64; WebSocket sends one a
message, binary ones as binary messages.
"""

from __future__ import annotations

import base64
import re
from typing import NamedTuple

import orjson

from gatewayasgi.protocol.socketio import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
    MAX_ACK_ID_DIGITS,
    MAX_ATTACHMENTS,
    SEPARATOR,
)

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
PROBE = "probe"
MAX_NAMESPACE = 256
"""Longest namespace a client may name."""
_DIGITS = re.compile(r"[0-9]+")
"""ASCII digits only: ``str.isdigit`` also takes ``"²"`` and ``"٣"``, which ``int`` refuses."""


class Malformed(ValueError):
    """A packet no Engine.IO / Socket.IO peer would send: the connection is closed."""


def open_packet(
    sid: str, upgrades: list[str], ping_interval: float, ping_timeout: float, max_payload: int
) -> str:
    body = {
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": round(ping_interval * 1000),
        "pingTimeout": round(ping_timeout * 1000),
        "maxPayload": max_payload,
    }
    return OPEN + orjson.dumps(body).decode()


def decode_payload(body: bytes) -> list[str | bytes]:
    """The packets of an HTTP long-polling request body."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise Malformed("payload is not UTF-8") from None
    packets: list[str | bytes] = []
    for part in text.split(SEPARATOR):
        if part.startswith("b"):
            try:
                packets.append(base64.b64decode(part[1:], validate=True))
            except ValueError:  # binascii.Error, or a character beyond ASCII
                raise Malformed("bad base64 packet") from None
        elif part:
            packets.append(part)
        else:
            raise Malformed("empty packet")
    return packets


class Header(NamedTuple):
    """What routing needs of a Socket.IO packet (``4`` + packet) before its data."""

    kind: str
    attachments: int
    namespace: str
    cut: tuple[int, int]
    """The span of ``/namespace,`` in the text (empty for the main namespace)."""
    data: int
    """Where the ack id (if any) and the payload start."""


def parse_header(text: str) -> Header:
    """Read and check a packet's header; raises ``Malformed`` (the connection closes)."""
    kind = text[1:2]
    index = 2
    attachments = 0
    if kind in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", 2, 2 + 4)
        count = text[2:dash]
        if dash < 0 or not (count.isascii() and count.isdigit()):
            raise Malformed("bad attachment count")
        attachments = int(count)
        if not 0 < attachments <= MAX_ATTACHMENTS:
            raise Malformed("bad attachment count")
        index = dash + 1
    elif kind not in (CONNECT, DISCONNECT, EVENT, ACK):
        raise Malformed("unknown packet type")  # CONNECT_ERROR is the server's
    namespace, cut = "/", (index, index)
    if text[index : index + 1] == "/":
        comma = text.find(",", index, index + MAX_NAMESPACE + 1)
        end = comma if comma >= 0 else len(text)
        if end - index > MAX_NAMESPACE:
            raise Malformed("namespace too long")
        namespace = text[index:end]
        cut = (index, end + 1 if comma >= 0 else end)
        index = cut[1]
    if kind == CONNECT:
        rest = text[index:]
        if rest and not rest.startswith("{"):
            raise Malformed("bad CONNECT payload")
    elif kind == DISCONNECT:
        if index != len(text):
            raise Malformed("bad DISCONNECT packet")
    else:
        found = _DIGITS.match(text, index, index + MAX_ACK_ID_DIGITS + 1)
        digits = index if found is None else found.end()
        if digits - index > MAX_ACK_ID_DIGITS:
            raise Malformed("ack id too long")
        if kind in (ACK, BINARY_ACK) and digits == index:
            raise Malformed("ACK without an id")
        if text[digits : digits + 1] != "[":
            raise Malformed("payload is not an array")
    return Header(kind, attachments, namespace, cut, index)


def connect_payload(text: str, header: Header) -> dict[str, object]:
    """The auth object of a CONNECT packet (``{}`` when none); ``Malformed`` otherwise."""
    rest = text[header.data :]
    if not rest:
        return {}
    try:
        value = orjson.loads(rest)
    except orjson.JSONDecodeError:
        raise Malformed("bad CONNECT payload") from None
    if type(value) is not dict:
        raise Malformed("bad CONNECT payload")
    return value


def connect_error(namespace: str, message: str) -> str:
    return f"4{CONNECT_ERROR}{prefix(namespace)}" + orjson.dumps({"message": message}).decode()


def prefix(namespace: str) -> str:
    """``/chat,`` for a namespace, nothing for the main one."""
    return "" if namespace == "/" else f"{namespace},"


def with_namespace(frame: str, namespace_prefix: str) -> str:
    """A frame of ``protocol.socketio`` (no namespace) with ``/namespace,`` put in."""
    kind = frame[1:2]
    index = 2
    if kind in (BINARY_EVENT, BINARY_ACK):
        index = frame.index("-", 2) + 1
    return f"{frame[:index]}{namespace_prefix}{frame[index:]}"
