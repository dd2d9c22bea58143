"""Backplane envelopes: round trip, size checks, malformed input."""

from __future__ import annotations

import pytest

from gatewayasgi.protocol.envelope import (
    KIND_ALL,
    KIND_TO,
    Envelope,
    EnvelopeError,
    channel_for,
    pack,
    unpack,
)


def test_round_trip_keeps_every_field() -> None:
    envelope = Envelope("node1", KIND_TO, '{"event":"e","data":"é\\n"}', ("room",), ("c1",))
    assert unpack(pack(envelope), 1 << 20) == envelope


def test_round_trip_without_targets() -> None:
    envelope = Envelope("n", KIND_ALL, "{}")
    assert unpack(pack(envelope), 1 << 20) == envelope


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(EnvelopeError, match="exceeds"):
        unpack(b"x" * 100, 99)


@pytest.mark.parametrize(
    "message",
    [
        b"no newline",
        b"not json\n{}",
        b"[1]\n{}",
        b'{"n": 1, "k": "all"}\n{}',
        b'{"n": "a", "k": "weird"}\n{}',
        b'{"n": "a", "k": "to", "t": "room"}\n{}',
        b'{"n": "a", "k": "to", "t": [1]}\n{}',
        b'{"n": "a", "k": "all"}\n\xff',
    ],
)
def test_malformed_envelopes_raise(message: bytes) -> None:
    with pytest.raises(EnvelopeError):
        unpack(message, 1 << 20)


def test_channel_names_the_namespace() -> None:
    assert channel_for("/chat") == "gatewayasgi:/chat"
