"""Backplane envelopes: round trip, separate room and client fields, malformed input."""

from __future__ import annotations

import pytest

from gatewayasgi.backplane.envelope import Envelope, EnvelopeError, channel_for, pack, unpack
from gatewayasgi.protocol.targets import Targets, new_client_id


def test_round_trip_keeps_every_field() -> None:
    client = new_client_id()
    envelope = Envelope(
        "node1",
        '{"event":"e","data":"é\\n"}',
        Targets(("room",), (client,)),
        Targets(("muted",), (new_client_id(),)),
    )
    assert unpack(pack(envelope), 1 << 20) == envelope


def test_round_trip_without_targets() -> None:
    envelope = Envelope("n", "{}")
    assert envelope.kind == "all"
    assert unpack(pack(envelope), 1 << 20) == envelope


def test_rooms_and_clients_travel_in_separate_fields() -> None:
    """A room named like a client id could never be read back as a client target."""
    client = new_client_id()
    header = pack(Envelope("n", "{}", Targets(("lobby",), (client,)))).split(b"\n")[0]
    assert b'"r":["lobby"]' in header and f'"c":["{client}"]'.encode() in header


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
        b'{"n": "a", "k": "to", "r": "room"}\n{}',
        b'{"n": "a", "k": "to", "c": [1]}\n{}',
        b'{"n": "a", "k": "to"}\n{}',
        b'{"n": "a", "k": "all", "r": ["room"]}\n{}',
        b'{"n": "a", "k": "all"}\n\xff',
    ],
)
def test_malformed_envelopes_raise(message: bytes) -> None:
    with pytest.raises(EnvelopeError):
        unpack(message, 1 << 20)


def test_channel_names_the_namespace() -> None:
    assert channel_for("/chat") == "gatewayasgi:/chat"
