"""Fuzzing the Socket.IO / Engine.IO decoders: any client input is accepted or refused
with the protocol's own error (``FrameError`` / ``Malformed``), never another exception.

Another exception escaping a decoder would end the connection's task (and, before the
endpoint isolated connections, the task group it shared with every polling client).
"""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.codec import FrameError
from gatewayasgi.protocol.engineio import Malformed
from gatewayasgi.protocol.socketio import SEPARATOR, SOCKETIO, Arguments, join_frame, pack

FUZZ = settings(max_examples=400, deadline=None)

# Pieces a hostile packet is made of: types, ASCII and other Unicode digits, the
# separators the formats use, JSON fragments and binary placeholders.
PIECES = st.sampled_from(
    [
        "0", "1", "2", "3", "4", "5", "6", "9", "²", "٣", "\u06f1", "\u1369", "\U0001d7d8",
        "Ⅻ", "½",
        "-", "/", ",", "[", "]", "{", "}", '"', ":", "b", "\x1e", "\x00", "\\", "é",
        '"_placeholder":true', '"num":', '{"_placeholder":true,"num":0}', "null", "1e999",
        "/chat", "/chat,", '["echo",1]', "AAAA", "=", "probe",
    ]
)  # fmt: skip
HOSTILE = st.lists(PIECES, max_size=40).map("".join)
TEXT = st.one_of(st.text(max_size=200), HOSTILE)


def nested(depth: int, leaf: str = '{"_placeholder":true,"num":0}') -> str:
    return "[" * depth + leaf + "]" * depth


def decode(raw: str | bytes) -> None:
    with contextlib.suppress(FrameError):
        SOCKETIO.decode(raw)


def engine(text: str) -> None:
    """What the endpoint does with one text packet: header, then CONNECT's payload."""
    try:
        header = engineio.parse_header(text)
        if header.kind == "0":
            engineio.connect_payload(text, header)
    except Malformed:
        pass


@FUZZ
@given(TEXT)
def test_socketio_decode_raises_only_frame_error(body: str) -> None:
    for raw in (body, "4" + body, "42" + body, "43" + body, "451-" + body, "46" + body):
        decode(raw)


@FUZZ
@given(TEXT, st.lists(st.binary(max_size=8), max_size=3), st.lists(TEXT, max_size=2))
def test_socketio_decode_of_binary_frames(
    body: str, attachments: list[bytes], raw_parts: list[str]
) -> None:
    decode(join_frame(f"45{len(attachments)}-" + body, attachments))
    decode(SEPARATOR.join(["451-" + body, *("b" + part for part in raw_parts)]))


@FUZZ
@given(st.binary(max_size=300), TEXT, st.lists(st.binary(max_size=8), max_size=3))
def test_socketio_decode_of_packed_frames(raw: bytes, body: str, attachments: list[bytes]) -> None:
    decode(raw)
    decode(pack(f"45{len(attachments)}-" + body, attachments))
    decode(pack("42" + body, attachments))
    decode(pack("451-" + body, attachments)[:-1])


def test_packed_frames_decode_as_joined_ones() -> None:
    head = '452-3["up",{"_placeholder":true,"num":1},[{"_placeholder":true,"num":0}]]'
    parts = [b"\x00\x1e\x01", b"\xff" * 1000]
    assert SOCKETIO.decode(pack(head, parts)) == SOCKETIO.decode(join_frame(head, parts))
    assert SOCKETIO.decode(pack(head, parts)) == ("up", Arguments((parts[1], [parts[0]])), 3)
    assert len(pack(head, parts)) == len(head) + 4 + sum(len(part) + 4 for part in parts)


@FUZZ
@given(TEXT)
def test_engineio_header_and_connect_raise_only_malformed(body: str) -> None:
    for text in (body, "4" + body, "40" + body, "42" + body, "451-" + body, "43/a," + body):
        engine(text)


@FUZZ
@given(st.one_of(st.binary(max_size=300), TEXT.map(str.encode)))
def test_engineio_decode_payload_raises_only_malformed(body: bytes) -> None:
    try:
        packets = engineio.decode_payload(body)
    except Malformed:
        return
    for packet in packets:
        if isinstance(packet, str):
            engine(packet)
            decode(packet)


@pytest.mark.parametrize(
    "raw",
    [
        '42²["echo",1]',
        '43٣["echo",1]',
        "42" + "9" * 5000 + '["echo"]',  # past int()'s digit limit
        '45["echo"]',  # a binary type without its count
        "451-" + nested(500),  # nested placeholders (not an event name): a RecursionError
        "451-" + nested(1000),
        "451-" + nested(2000),
        "451-[" + '{"a":' * 900 + "0" + "}" * 900 + "]",
    ],
)
def test_known_crashes_are_frame_errors(raw: str) -> None:
    with pytest.raises(FrameError):
        SOCKETIO.decode(join_frame(raw, [b"x"]) if raw.startswith("45") else raw)


def test_deep_placeholders_still_decode() -> None:
    """Nesting below orjson's limit is served: the walk is iterative, not recursive."""
    frame = SOCKETIO.decode(join_frame('451-["up",' + nested(900) + "]", [b"\x01"]))
    value = frame.data
    for _ in range(900):
        assert type(value) is list
        value = value[0]
    assert value == b"\x01"


@pytest.mark.parametrize(
    "text",
    ["42²[1]", '42/open,²["echo",1]', "45²-[]", "45٣-[]", "4" + "0" * 20 + "[]", "4" + "5"],
)
def test_engineio_unicode_digits_are_malformed(text: str) -> None:
    with pytest.raises(Malformed):
        engineio.parse_header(text)


def test_engineio_payload_of_known_crashes() -> None:
    body = SEPARATOR.join(['42/open,²["echo",1]', "b" + base64.b64encode(b"x").decode()])
    packets = engineio.decode_payload(body.encode())
    with pytest.raises(Malformed):
        engineio.parse_header(str(packets[0]))


def test_deep_server_data_with_bytes_is_bounded() -> None:
    """The server side: deep data with bytes is refused with orjson's ``TypeError``
    (not a ``RecursionError``); data within the bound is sent."""
    from gatewayasgi.protocol.socketio import EVENT, packet

    value: object = b"x"
    for _ in range(100):
        value = [value]
    assert packet(EVENT, ["deep", value]).startswith("451-")
    for _ in range(2000):
        value = [value]
    with pytest.raises(TypeError):
        packet(EVENT, ["deep", value])
    cyclic: list[object] = [b"x"]
    cyclic.append(cyclic)
    with pytest.raises(TypeError):
        packet(EVENT, ["cyclic", cyclic])
