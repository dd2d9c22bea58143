"""The pure Socket.IO / Engine.IO layers: packets, headers, attachments, transcoding."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.codec import ACK_EVENT, MAX_ERROR_FRAME, FrameError
from gatewayasgi.protocol.engineio import Malformed, parse_header
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.socketio import SOCKETIO, Arguments, join_frame, split_frame


@pytest.mark.parametrize(
    ("raw", "event", "data", "ack"),
    [
        ('42["chat"]', "chat", None, None),
        ('42["chat",1]', "chat", 1, None),
        ('42["chat",1,"2",{"3":[true]}]', "chat", Arguments((1, "2", {"3": [True]})), None),
        ('4212["chat",{"a":1}]', "chat", {"a": 1}, 12),
        ('437["answer"]', ACK_EVENT, "answer", 7),
        ("437[]", ACK_EVENT, None, 7),
    ],
)
def test_decode(raw: str, event: str, data: object, ack: int | None) -> None:
    frame = SOCKETIO.decode(raw)
    assert (frame.event, frame.data, frame.id) == (event, data, ack)
    assert type(frame.data) is type(data)


def test_decode_binary_attachments_anywhere() -> None:
    head = '452-3["up",{"_placeholder":true,"num":1},{"nested":[{"_placeholder":true,"num":0}]}]'
    frame = SOCKETIO.decode(join_frame(head, [b"\x00\x01", b"\xff"]))
    assert frame == ("up", Arguments((b"\xff", {"nested": [b"\x00\x01"]})), 3)


@pytest.mark.parametrize(
    "raw",
    [
        "42[",  # not JSON
        '42{"a":1}',  # not an array
        "42[]",  # no event
        "42[1]",  # event not a string
        '451-["x",{"_placeholder":true,"num":5}]\x1ebAA==',  # placeholder out of range
    ],
)
def test_decode_refuses(raw: str) -> None:
    with pytest.raises(FrameError):
        SOCKETIO.decode(raw)


def test_encode_emit_spreads_arguments_and_attaches_bytes() -> None:
    assert SOCKETIO.encode_emit("x", Arguments((1, 2))) == '42["x",1,2]'
    assert SOCKETIO.encode_emit("x", [1, 2]) == '42["x",[1,2]]'
    frame = SOCKETIO.encode_emit("x", {"blob": b"\x01\x02", "n": 1})
    head, attachments = split_frame(frame)
    assert head == '451-["x",{"blob":{"_placeholder":true,"num":0},"n":1}]'
    assert attachments == [b"\x01\x02"]


def test_reply_answers_the_ack_only() -> None:
    assert SOCKETIO.encode_reply("x", {"ok": True}, 5) == '435[{"ok":true}]'
    assert SOCKETIO.encode_reply("x", Arguments((1, "2")), 5) == '435[1,"2"]'
    assert SOCKETIO.encode_reply("x", {"ok": True}, None) is None
    # As NestJS: a ``{"event", "data"}`` result is emitted even without an ack.
    assert SOCKETIO.encode_reply("x", {"event": "y", "data": 1}, None) == '42["y",1]'
    head, attachments = split_frame(SOCKETIO.encode_reply("x", b"\x07", 9) or "")
    assert (head, attachments) == ('461-9[{"_placeholder":true,"num":0}]', [b"\x07"])


def test_errors_are_bounded_and_answer_the_ack() -> None:
    assert SOCKETIO.encode_error("bad", 4) == '434[{"error":{"message":"bad"}}]'
    assert SOCKETIO.encode_error("bad") == '42["error",{"message":"bad"}]'
    huge = SOCKETIO.encode_error("bad", 4, {"detail": "x" * 100_000})
    assert len(huge.encode()) <= MAX_ERROR_FRAME + 32
    assert orjson.loads(huge[3:])[0]["error"]["truncated"] is True


def test_offsets_are_the_last_argument() -> None:
    assert SOCKETIO.with_offset('42["x",1]', "17") == '42["x",1,"17"]'
    binary = SOCKETIO.encode_emit("x", b"\x01")
    head, attachments = split_frame(SOCKETIO.with_offset(binary, "3-0"))
    assert head == '451-["x",{"_placeholder":true,"num":0},"3-0"]'
    assert attachments == [b"\x01"]


def test_transcode_from_the_canonical_frame() -> None:
    canonical = JSON.with_offset(JSON.encode_emit("x", {"a": [1]}), "8")
    assert SOCKETIO.transcode(canonical) == '42["x",{"a":[1]},"8"]'
    assert SOCKETIO.transcode(JSON.encode_emit("x", None)) == '42["x",null]'


def test_session_frame_is_the_connect_answer() -> None:
    session = {"id": "c_" + "a" * 32, "token": "t" * 43, "epoch": "e1", "offset": "5"}
    answer = orjson.loads(SOCKETIO.encode_emit("$session", session)[2:])
    assert answer == {"sid": session["id"], "pid": f"c_{'a' * 32}.{'t' * 43}.e1.5"}


def test_server_calls_carry_an_ack_id() -> None:
    assert SOCKETIO.encode_call("ask", Arguments((1, 2)), 3) == '423["ask",1,2]'
    assert SOCKETIO.answer_error('433["x"]') is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text() | st.binary(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_emit_then_decode_round_trips(value: object) -> None:
    frame = SOCKETIO.encode_emit("e", value)
    assert SOCKETIO.decode(frame) == ("e", value, None)


# -- Engine.IO and the packet header ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "namespace", "stripped"),
    [
        ("40", "0", "/", "40"),
        ('40{"token":"1"}', "0", "/", '40{"token":"1"}'),
        ("40/custom", "0", "/custom", "40"),
        ('40/custom,{"a":1}', "0", "/custom", '40{"a":1}'),
        ("41/custom,", "1", "/custom", "41"),
        ('42/chat,12["x"]', "2", "/chat", '4212["x"]'),
        ('452-/chat,["x",{"_placeholder":true,"num":0},{}]', "5", "/chat", None),
        ('433["y"]', "3", "/", '433["y"]'),
    ],
)
def test_header(text: str, kind: str, namespace: str, stripped: str | None) -> None:
    header = parse_header(text)
    assert (header.kind, header.namespace) == (kind, namespace)
    start, end = header.cut
    if stripped is not None:
        assert text[:start] + text[end:] == stripped


@pytest.mark.parametrize(
    "text",
    [
        "4abc",  # unknown type
        "44",  # CONNECT_ERROR is the server's
        "42{}",  # payload not an array
        '42abc["x"]',  # ack id not digits
        '43["x"]',  # ACK without an id
        "4" + "2" + "9" * 16 + '["x"]',  # ack id too long
        '45-["x"]',  # no attachment count
        '4599-["x"]',  # more attachments than allowed
        "41/a,1",  # DISCONNECT with data
        "40x",  # CONNECT payload not an object
        "42/" + "n" * 300 + ',["x"]',  # namespace too long
    ],
)
def test_header_refuses(text: str) -> None:
    with pytest.raises(Malformed):
        parse_header(text)


def test_namespace_goes_back_in_after_the_type_and_attachments() -> None:
    assert engineio.with_namespace('4212["x"]', "/chat,") == '42/chat,12["x"]'
    assert engineio.with_namespace("451-[1]", "/chat,") == "451-/chat,[1]"
    assert engineio.connect_error("/x", "Invalid namespace") == (
        '44/x,{"message":"Invalid namespace"}'
    )


def test_polling_payloads() -> None:
    assert engineio.decode_payload(b'42["a"]\x1ebAQI=\x1e3') == ['42["a"]', b"\x01\x02", "3"]
    for bad in (b"\xff", b"2\x1e\x1e3", b"b!!!"):
        with pytest.raises(Malformed):
            engineio.decode_payload(bad)


def test_open_packet() -> None:
    opening = engineio.open_packet("abc", ["websocket"], 0.3, 0.2, 1_000_000)
    assert opening[0] == "0"
    assert orjson.loads(opening[1:]) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 300,
        "pingTimeout": 200,
        "maxPayload": 1_000_000,
    }
