"""Fuzzing the MessagePack decoder: any client input is accepted or refused with a
``FrameError``, never another exception (which would end the connection's task), and
whatever it accepts can be answered (the reply encodes).
"""

from __future__ import annotations

import ormsgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayasgi.protocol.codec import FrameError
from gatewayasgi.protocol.msgpack import MessagePack

FUZZ = settings(max_examples=400, deadline=None)
MSGPACK = MessagePack()

# Pieces a hostile frame is made of: every container and length header (with lengths
# far past the input), ext and timestamp types, the unused 0xc1, bad UTF-8, and the
# envelope's own keys.
PIECES = st.sampled_from(
    [
        b"\x80", b"\x81", b"\x83", b"\x8f", b"\x90", b"\x91", b"\x9f",
        b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xde\x00\x02", b"\xdf\xff\xff\xff\xff",
        b"\xc4\x05", b"\xc5\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xd9\x03", b"\xdb\xff\xff\xff\xff",
        b"\xd4\x01\x00", b"\xd6\xff\x00\x00\x00\x01", b"\xc7\x00\x05", b"\xc1", b"\xc0",
        b"\xc2", b"\xc3", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\xcf" + b"\xff" * 8,
        b"\xd3\x80" + b"\x00" * 7, b"\x7f", b"\xe0", b"\xa2\xff\xfe", b"\xa3\xed\xa0\x80",
        b"\xa5event", b"\xa4data", b"\xa2id", b"\xa5error", b"\xa4$ack", b"\xa4echo",
        b"\xa0",
    ]
)  # fmt: skip
HOSTILE = st.lists(PIECES, max_size=60).map(b"".join)

INTEGERS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | INTEGERS
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "event": st.one_of(st.text(max_size=10), JSONISH),
        "data": JSONISH,
        "id": st.one_of(INTEGERS, st.text(max_size=140), JSONISH),
        "error": JSONISH,
    },
)  # fmt: skip


def check(raw: bytes) -> None:
    """Decode ``raw`` as the session would, and answer it as a handler echoing it would."""
    try:
        frame = MSGPACK.decode(raw)
    except FrameError as exc:
        MSGPACK.encode_error(exc.message, exc.id)
        return
    MSGPACK.encode_reply(frame.event, frame.data, frame.id)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(HOSTILE)
def test_hostile_pieces(raw: bytes) -> None:
    check(raw)
    check(b"\x82\xa5event\xa4echo\xa4data" + raw)
    check(b"\x83\xa5event\xa4$ack\xa2id\x01\xa5error" + raw)


@FUZZ
@given(ENVELOPES)
def test_well_formed_maps_of_any_content(value: dict[str, object]) -> None:
    raw = ormsgpack.packb(value)
    check(raw)
    check(raw[:-1])  # cut short
    check(raw + raw)  # trailing bytes


@FUZZ
@given(st.integers(min_value=0, max_value=3000), st.sampled_from([b"\x91", b"\x81\xa0"]))
def test_any_depth(levels: int, level: bytes) -> None:
    check(b"\x82\xa5event\xa4echo\xa4data" + level * levels + b"\xc0")
