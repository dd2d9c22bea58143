"""Room stream frames per protocol, and the bounds of ``runtime.room_streams``."""

from __future__ import annotations

import orjson
import ormsgpack
import pytest

from gatewayasgi import WsException
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.msgpack import MESSAGEPACK
from gatewayasgi.protocol.socketio import SOCKETIO
from gatewayasgi.runtime.room_streams import check_stream_id, error_member, new_stream_id

ITEM = {"stream": "s1", "seq": 2}


def test_json_and_msgpack_carry_the_members_and_an_offset_after_them() -> None:
    text = JSON.encode_emit_members("progress", {"a": 1}, ITEM)
    assert orjson.loads(text) == {"event": "progress", "data": {"a": 1}, "stream": "s1", "seq": 2}
    stamped = JSON.with_offset(text, "0-7")
    assert orjson.loads(stamped)["offset"] == "0-7"
    # The canonical frame (history, other workers) transcodes to the same map.
    assert ormsgpack.unpackb(MESSAGEPACK.transcode(stamped)) == orjson.loads(stamped)
    packed = MESSAGEPACK.with_offset(MESSAGEPACK.encode_emit_members("progress", b"x", ITEM), "1")
    assert ormsgpack.unpackb(packed) == {
        "event": "progress",
        "data": b"x",
        "stream": "s1",
        "seq": 2,
        "offset": "1",
    }


def test_socketio_gets_an_ordinary_event_from_either_path() -> None:
    local = SOCKETIO.encode_emit_members("progress", {"a": 1}, ITEM)
    assert local == SOCKETIO.encode_emit("progress", {"a": 1}) == '42["progress",{"a":1}]'
    canonical = JSON.with_offset(JSON.encode_emit_members("progress", {"a": 1}, ITEM), "5")
    assert SOCKETIO.transcode(canonical) == '42["progress",{"a":1},"5"]'


def test_the_error_member_is_bounded() -> None:
    assert error_member(RuntimeError("secret")) == {"message": "Internal server error"}
    assert error_member(WsException("stop", left=0)) == {"message": "stop", "left": 0}
    huge = error_member(WsException("m" * 10_000, blob="b" * 10_000))
    assert huge == {"message": "m" * 512, "truncated": True}
    assert error_member(WsException("odd", thing=object())) == {"message": "odd", "truncated": True}


def test_stream_ids() -> None:
    ids = {new_stream_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 12 for i in ids)
    assert check_stream_id("mine") == "mine"
    for bad in ("", "x" * 129, 7, None):
        with pytest.raises(ValueError):
            check_stream_id(bad)
