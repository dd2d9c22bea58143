"""The pure MessagePack wire protocol: frames, bounds, offsets, transcoding."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum

import orjson
import ormsgpack
import pydantic
import pytest

from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import ACK_EVENT, MAX_ERROR_FRAME, Answer, FrameError
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.msgpack import (
    INVALID_MSGPACK,
    MAX_DEPTH,
    NOT_A_MAP,
    NOT_BINARY,
    MessagePack,
)
from gatewayasgi.protocol.socketio import Arguments

MSGPACK = MessagePack()


def pack(value: object) -> bytes:
    return ormsgpack.packb(value)


def unpack(raw: bytes | str | None) -> object:
    assert isinstance(raw, bytes)
    return ormsgpack.unpackb(raw, option=ormsgpack.OPT_NON_STR_KEYS)


def nested(depth: int) -> object:
    value: object = None
    for _ in range(depth):
        value = [value]
    return value


def deep(levels: int, frame_id: object) -> bytes:
    """A frame whose data is ``levels`` arrays deep (the encoder cannot write it)."""
    head = b"\x83" + pack("event") + pack("echo") + pack("id") + pack(frame_id) + pack("data")
    return head + b"\x91" * levels + b"\xc0"


@pytest.mark.parametrize(
    ("value", "event", "data", "frame_id"),
    [
        ({"event": "echo"}, "echo", None, None),
        ({"event": "echo", "data": {"a": [1, 2.5, None]}}, "echo", {"a": [1, 2.5, None]}, None),
        ({"event": "echo", "data": b"\x00\xff", "id": 7}, "echo", b"\x00\xff", 7),
        ({"event": "echo", "data": "x", "id": "a" * 128}, "echo", "x", "a" * 128),
        ({"event": "echo", "id": -(2**63)}, "echo", None, -(2**63)),
    ],
)  # fmt: skip
def test_decode(value: object, event: str, data: object, frame_id: object) -> None:
    frame = MSGPACK.decode(pack(value))
    assert (frame.event, frame.data, frame.id) == (event, data, frame_id)
    assert type(frame.data) is type(data)


def test_decode_reads_an_answer_once() -> None:
    frame = MSGPACK.decode(pack({"event": ACK_EVENT, "id": 3, "error": {"message": "no"}}))
    assert type(frame) is Answer
    assert (frame.id, frame.data, frame.error) == (3, None, {"message": "no"})


@pytest.mark.parametrize(
    ("raw", "message", "frame_id"),
    [
        (b"", INVALID_MSGPACK, None),
        (b"\xc1", INVALID_MSGPACK, None),  # the one byte MessagePack never uses
        (b"\x82\xa5event", INVALID_MSGPACK, None),  # cut short
        (b"\xdd\xff\xff\xff\xff\xc0", INVALID_MSGPACK, None),  # a 4 G-element array, 1 byte
        (b"\xdf\xff\xff\xff\xff", INVALID_MSGPACK, None),
        (b"\xc6\xff\xff\xff\xff\x00", INVALID_MSGPACK, None),  # a 4 GiB bin, 1 byte
        (b"\xdb\xff\xff\xff\xff\x00", INVALID_MSGPACK, None),
        (b"\xa2\xff\xfe", INVALID_MSGPACK, None),  # bad UTF-8
        (b"\xd4\x05\x01", INVALID_MSGPACK, None),  # an ext type
        (b"\xd6\xff\x00\x00\x00\x01", INVALID_MSGPACK, None),  # a timestamp
        (b"\x81\x01\x02", INVALID_MSGPACK, None),  # an integer key
        (b"\x81\xc4\x01a\x02", INVALID_MSGPACK, None),  # a bin key
        (pack([1, 2]), NOT_A_MAP, None),
        (pack("echo"), NOT_A_MAP, None),
        (pack({"data": 1}), codec.MISSING_EVENT, None),
        (pack({"event": "", "id": 2}), codec.MISSING_EVENT, 2),
        (pack({"event": 1, "id": "x"}), codec.EVENT_NOT_A_STRING, "x"),
        (pack({"event": b"echo"}), codec.EVENT_NOT_A_STRING, None),
        (pack({"event": "echo", "id": 1.5}), codec.INVALID_ID, None),
        (pack({"event": "echo", "id": True}), codec.INVALID_ID, None),
        (pack({"event": "echo", "id": b"1"}), codec.INVALID_ID, None),
        (pack({"event": "echo", "id": "a" * 129}), codec.ID_TOO_LONG, None),
        (b"\x91" * 100_000, codec.TOO_DEEP, None),  # past ormsgpack's own limit
        (deep(MAX_DEPTH, 4), codec.TOO_DEEP, 4),
        (deep(1000, "k"), codec.TOO_DEEP, "k"),
    ],
)
def test_decode_refuses_with_a_frame_error(raw: bytes, message: str, frame_id: object) -> None:
    with pytest.raises(FrameError) as caught:
        MSGPACK.decode(raw)
    assert (caught.value.message, caught.value.id) == (message, frame_id)


def test_text_frames_are_refused() -> None:
    with pytest.raises(FrameError) as caught:
        MSGPACK.decode('{"event":"echo"}')
    assert caught.value.message == NOT_BINARY


def test_the_deepest_frame_it_reads_can_be_echoed() -> None:
    data = nested(MAX_DEPTH - 1)
    frame = MSGPACK.decode(pack({"event": "echo", "id": 1, "data": data}))
    assert unpack(MSGPACK.encode_reply("echo", frame.data, frame.id)) == {
        "event": "echo",
        "data": data,
        "id": 1,
    }


def test_many_containers_side_by_side_are_not_depth() -> None:
    frame = MSGPACK.decode(pack({"event": "echo", "data": [[]] * 5000 + [{"a": {}}] * 5000}))
    assert len(frame.data) == 10_000  # type: ignore[arg-type]


def test_bin_full_of_container_bytes_is_not_depth() -> None:
    blob = bytes(range(0x80, 0xA0)) * 1000
    assert MSGPACK.decode(pack({"event": "up", "data": blob})).data == blob


def test_encode_reply_emit_and_call() -> None:
    assert unpack(MSGPACK.encode_reply("echo", {"a": 1}, None)) == {
        "event": "echo",
        "data": {"a": 1},
    }
    assert unpack(MSGPACK.encode_reply("echo", b"\x01", "k")) == {
        "event": "echo",
        "data": b"\x01",
        "id": "k",
    }
    ready = {"event": "other", "data": [1], "extra": True}
    assert unpack(MSGPACK.encode_reply("echo", ready, 2)) == {**ready, "id": 2}
    assert unpack(MSGPACK.encode_emit("tick", None)) == {"event": "tick", "data": None}
    assert unpack(MSGPACK.encode_call("ask", [1], 9)) == {"event": "ask", "data": [1], "ack": 9}


def test_encode_keeps_bytes_where_json_sends_base64() -> None:
    class Blob(pydantic.BaseModel):
        name: str
        body: bytes

    data = {"raw": b"\x00\xff", "model": Blob(name="a", body=b"\x01\x02")}
    assert unpack(MSGPACK.encode_emit("up", data)) == {
        "event": "up",
        "data": {"raw": b"\x00\xff", "model": {"name": "a", "body": b"\x01\x02"}},
    }
    assert orjson.loads(JSON.encode_emit("up", data))["data"]["raw"] == "AP8="


def test_encode_serialises_what_json_does() -> None:
    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    class Price(pydantic.BaseModel):
        amount: decimal.Decimal
        tags: set[str]

    data = {
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "colour": Colour.RED,
        "point": Point(1, 2),
        "price": Price(amount=decimal.Decimal("1.50"), tags={"a"}),
        "args": Arguments((1, 2)),
        "keys": {1: "one"},
    }
    assert unpack(MSGPACK.encode_emit("x", data))["data"] == {  # type: ignore[index]
        "when": "2024-01-02T03:04:05",
        "colour": "red",
        "point": {"x": 1, "y": 2},
        "price": {"amount": "1.50", "tags": ["a"]},
        "args": [1, 2],
        "keys": {1: "one"},
    }


def test_encode_refuses_unknown_objects_with_a_type_error() -> None:
    with pytest.raises(TypeError):
        MSGPACK.encode_emit("x", {"o": object()})
    with pytest.raises(TypeError):
        MSGPACK.encode_emit("x", 2**70)


def test_error_frames_are_bounded() -> None:
    small = unpack(MSGPACK.encode_error("bad", 3, {"errors": [1]}))
    assert small == {"event": "error", "data": {"message": "bad", "errors": [1]}, "id": 3}
    huge = MSGPACK.encode_error("m" * 10_000, "i", {"errors": ["x" * 100] * 1000})
    assert isinstance(huge, bytes) and len(huge) <= MAX_ERROR_FRAME
    assert unpack(huge) == {
        "event": "error",
        "data": {"message": "m" * codec.MAX_ERROR_MESSAGE, "truncated": True},
        "id": "i",
    }


def test_with_offset_adds_the_member() -> None:
    frame = MSGPACK.encode_emit("tick", {"n": 1})
    assert unpack(MSGPACK.with_offset(frame, "12-3")) == {
        "event": "tick",
        "data": {"n": 1},
        "offset": "12-3",
    }
    # Any map works, not only the two-entry one encode_emit writes.
    wide = pack({f"k{i}": i for i in range(20)})
    assert unpack(MSGPACK.with_offset(wide, "7"))["offset"] == "7"  # type: ignore[index]


def test_transcode_from_the_canonical_frame() -> None:
    canonical = JSON.with_offset(JSON.encode_emit("tick", {"n": [1, "2"]}), "5")
    assert unpack(MSGPACK.transcode(canonical)) == {
        "event": "tick",
        "data": {"n": [1, "2"]},
        "offset": "5",
    }
    session = JSON.encode_emit("$session", {"id": "x", "recovered": False})
    assert unpack(MSGPACK.transcode(session.encode())) == {
        "event": "$session",
        "data": {"id": "x", "recovered": False},
    }


def test_trace_carrier() -> None:
    fields = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    assert MSGPACK.carrier(pack({"event": "x", "trace": fields})) == fields
    assert MSGPACK.carrier(pack({"event": "x", "data": "trace"})) is None
    assert MSGPACK.carrier(pack({"event": "x", "trace": {"a": 1}})) is None  # not strings
    assert MSGPACK.carrier(pack({"event": "x", "trace": {"a": "b" * 10_000}})) is None
    assert MSGPACK.carrier(pack({"event": "x"})) is None
    assert MSGPACK.carrier('{"event":"x","trace":{"a":"b"}}') is None


def test_answer_error() -> None:
    assert MSGPACK.answer_error(pack({"event": ACK_EVENT, "id": 1, "error": "e"})) == "e"
    assert MSGPACK.answer_error(pack({"event": ACK_EVENT, "id": 1, "data": 2})) is None
    assert MSGPACK.answer_error(b"\xc1") is None


def test_messages_are_binary() -> None:
    assert MSGPACK.message(MSGPACK.encode_emit("x", 1))["bytes"] == pack({"event": "x", "data": 1})
    assert MSGPACK.subprotocol == "gatewayasgi.msgpack"
    assert MSGPACK.name == "msgpack"
