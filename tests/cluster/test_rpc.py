"""The pure layers of cluster requests: message checks, reply parts, node liveness."""

from __future__ import annotations

import orjson
import pytest

from gatewayasgi.backplane import rpc
from gatewayasgi.backplane.peers import Peers
from gatewayasgi.protocol.targets import Targets

MAX = 1 << 20


def test_requests_round_trip_with_their_fields() -> None:
    call = rpc.Request(
        rpc.CALL, "n1", 7, Targets(("r",), ()), Targets((), ("c_" + "a" * 32,)),
        event="ping", data={"x": [1]}, timeout=2.5,
    )  # fmt: skip
    assert rpc.unpack_request(rpc.pack_request(call), MAX) == call
    order = rpc.Request(rpc.DISCONNECT, "n1", targets=Targets(("r",), ()), code=4000, reason="x")
    assert rpc.unpack_request(rpc.pack_request(order), MAX) == order
    for stream in (7, "req-7"):
        cancel = rpc.Request(rpc.CANCEL, "n1", targets=Targets((), ("c1",)), data=stream)
        assert rpc.unpack_request(rpc.pack_request(cancel), MAX) == cancel
    too_long = rpc.Request(rpc.CANCEL, "n1", targets=Targets((), ("c1",)), data="x" * 129)
    with pytest.raises(rpc.RpcError):
        rpc.unpack_request(rpc.pack_request(too_long), MAX)
    beat = rpc.Request(rpc.HEARTBEAT, "n2", hello=True)
    assert rpc.unpack_request(rpc.pack_request(beat), MAX) == beat


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"o": "ids"}',
        b'{"o": "nope", "n": "a"}',
        b'{"o": "join", "n": "a", "r": ["r"]}',
        b'{"o": "join", "n": "a", "room": 5}',
        b'{"o": "ids", "n": "a", "r": [1]}',
        b'{"o": "ids", "n": "a", "q": -1}',
        b'{"o": "disconnect", "n": "a", "code": 1011}',
        b'{"o": "call", "n": "a", "e": "x", "t": 301}',
        b'{"o": "call", "n": "a", "e": "", "t": 1}',
        b'{"o": "cancel", "n": "a", "c": ["c1"]}',
        b'{"o": "cancel", "n": "a", "c": ["c1", "c2"], "d": 1}',
        b'{"o": "cancel", "n": "a", "r": ["r"], "c": ["c1"], "d": 1}',
        b'{"o": "cancel", "n": "a", "c": ["c1"], "d": [1]}',
        b'{"o": "cancel", "n": "a", "c": ["c1"], "d": -1}',
    ],
)
def test_malformed_or_out_of_bounds_requests_are_refused(body: bytes) -> None:
    with pytest.raises(rpc.RpcError):
        rpc.unpack_request(body, MAX)


def test_oversize_messages_are_refused_before_parsing() -> None:
    with pytest.raises(rpc.RpcError, match="exceeds"):
        rpc.unpack_request(b" " * 101, 100)


def test_long_answers_are_cut_in_parts_under_the_cap_and_put_back_in_order() -> None:
    ids = [f"c_{n:032x}" for n in range(20_000)]
    parts = rpc.pack_replies("node", 3, [*ids, "x" * rpc.MAX_PART_BYTES])
    assert len(parts) > 1
    assert all(len(part) <= rpc.MAX_PART_BYTES for part in parts)
    replies = [rpc.unpack_reply(part, MAX) for part in reversed(parts)]
    assert {reply.parts for reply in replies} == {len(parts)}
    items = [item for reply in sorted(replies, key=lambda r: r.part) for item in reply.items]
    assert items == ids  # the item too large for any part is left out
    empty = rpc.pack_replies("node", 4, [])
    assert [orjson.loads(part)["i"] for part in empty] == [[]]


def test_a_node_is_live_until_its_heartbeats_stop_for_the_timeout() -> None:
    peers = Peers(timeout=3.0)
    assert peers.heard("/ns", "a", 10.0) is True
    assert peers.heard("/ns", "a", 11.0) is False
    peers.heard("/ns", "b", 12.0)
    assert peers.live("/ns", 13.5) == {"a", "b"}
    assert peers.live("/ns", 14.5) == {"b"}
    assert peers.live("/other", 11.0) == set()
    peers.gone("/ns", "b")
    assert peers.live("/ns", 12.0) == {"a"}
