"""The frame codec: pure, no event loop."""

from __future__ import annotations

import dataclasses
import datetime

import orjson
import pytest
from pydantic import BaseModel

from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import Frame, FrameError


def test_decode_text_and_bytes_give_the_same_frame() -> None:
    raw = '{"event": "chat", "data": {"a": 1}, "id": 7}'
    assert codec.decode(raw) == codec.decode(raw.encode()) == Frame("chat", {"a": 1}, 7)


def test_decode_without_data_or_id() -> None:
    assert codec.decode('{"event": "ping"}') == Frame("ping", None, None)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", codec.INVALID_JSON),
        (b"\xff\xfe", codec.INVALID_JSON),
        ("", codec.INVALID_JSON),
        ("[1, 2]", codec.NOT_AN_OBJECT),
        ("42", codec.NOT_AN_OBJECT),
        ('"text"', codec.NOT_AN_OBJECT),
        ("null", codec.NOT_AN_OBJECT),
        ('{"data": 1}', codec.MISSING_EVENT),
        ('{"event": ""}', codec.MISSING_EVENT),
        ('{"event": null}', codec.MISSING_EVENT),
        ('{"event": 5}', codec.EVENT_NOT_A_STRING),
        ('{"event": "x", "id": 1.5}', codec.INVALID_ID),
        ('{"event": "x", "id": true}', codec.INVALID_ID),
        ('{"event": "x", "id": [1]}', codec.INVALID_ID),
    ],
)
def test_decode_rejects_with_the_documented_message(raw: str | bytes, message: str) -> None:
    with pytest.raises(FrameError) as info:
        codec.decode(raw)
    assert info.value.message == message


def test_frame_error_keeps_a_readable_id() -> None:
    with pytest.raises(FrameError) as info:
        codec.decode('{"id": "abc", "data": 1}')
    assert info.value.id == "abc"


def test_error_messages_match_the_seed_table() -> None:
    assert codec.NOT_AN_OBJECT == "WebSocket message must be a JSON object"
    assert codec.MISSING_EVENT == "WebSocket message is missing an event"
    assert codec.UNKNOWN_EVENT.format(event="x") == "No handler for WebSocket event 'x'"
    assert codec.ACCESS_DENIED == "Access denied: insufficient permissions"


def test_encode_adds_id_only_when_given() -> None:
    assert orjson.loads(codec.encode("e", [1])) == {"event": "e", "data": [1]}
    assert orjson.loads(codec.encode("e", None, "r1")) == {"event": "e", "data": None, "id": "r1"}


def test_encode_message_keeps_the_dict_and_adds_id() -> None:
    message = {"event": "ack", "data": {"x": 1}, "extra": True}
    assert orjson.loads(codec.encode_message(message, 3)) == {**message, "id": 3}
    assert "id" not in message


def test_encode_error_merges_details() -> None:
    frame = orjson.loads(codec.encode_error("bad", 9, field="room"))
    assert frame == {"event": "error", "data": {"message": "bad", "field": "room"}, "id": 9}


class Model(BaseModel):
    name: str
    when: datetime.date


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_encode_serialises_models_dataclasses_and_datetimes() -> None:
    data = {
        "model": Model(name="a", when=datetime.date(2026, 1, 2)),
        "point": Point(1, 2),
        "at": datetime.datetime(2026, 1, 2, 3, 4, 5),
    }
    assert orjson.loads(codec.encode("e", data))["data"] == {
        "model": {"name": "a", "when": "2026-01-02"},
        "point": {"x": 1, "y": 2},
        "at": "2026-01-02T03:04:05",
    }


def test_encode_refuses_unknown_objects_with_the_type_name() -> None:
    with pytest.raises(TypeError, match="object"):
        codec.encode("e", object())


def test_is_reply_message_needs_event_and_data() -> None:
    assert codec.is_reply_message({"event": "a", "data": None})
    assert not codec.is_reply_message({"event": "a"})
    assert not codec.is_reply_message({"data": 1})
    assert not codec.is_reply_message([("event", 1)])


def test_nesting_the_encoder_cannot_write_is_refused_at_decode() -> None:
    deep = '{"event": "x", "id": 4, "data": ' + "[" * 300 + "]" * 300 + "}"
    with pytest.raises(FrameError) as info:
        codec.decode(deep)
    assert (info.value.message, info.value.id) == (codec.TOO_DEEP, 4)
    shallow = '{"event": "x", "data": ' + "[" * 250 + "]" * 250 + "}"
    assert codec.decode(shallow.encode()).event == "x"


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = '{"event": "x", "data": [' + ",".join(["[]"] * 400) + "]}"
    assert len(codec.decode(wide).data) == 400
