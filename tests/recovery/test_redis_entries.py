"""The pure layers of the Redis history: stream ids as offsets, entries, the outbox."""

from __future__ import annotations

import pytest

from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.stores._redis_entries import decode, encode_targets, id_of, offset_of
from gatewayasgi.stores._redis_outbox import GAP, Outbox


def test_offsets_round_trip_and_order_like_ids() -> None:
    ids = ["0-0", "0-1", "1732531200000-0", "1732531200000-3", "1732531200001-0"]
    offsets = [offset_of(i) for i in ids]
    assert offsets == sorted(offsets)  # type: ignore[type-var]
    assert [id_of(o) for o in offsets if o is not None] == ids
    assert offset_of("1732531200000-1048575") is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "-1-0",
        "1-",
        "-0",
        "1-0 ",
        " 1-0",
        "1-0-0",
        "a-0",
        "1732531200000-1048576",
        "1" * 21 + "-0",
        "\u0661-0",
        "1.0-0",
        "0x1-0",
        "18446744073709551616-0",
    ],
)
def test_parse_refuses_what_it_could_not_have_made(text: str) -> None:
    assert offset_of(text) is None


def test_entries_decode_with_their_targets() -> None:
    targets, exclude = Targets(("r",), ("c_" + "0" * 32,)), Targets(("x",), ())
    fields = {b"f": "é".encode(), b"p": b"1-0", b"t": encode_targets(targets, exclude)}
    item = decode(b"1-1", fields)
    assert item.entry is not None and item.previous == "1-0"
    assert (item.entry.frame, item.entry.targets, item.entry.exclude) == ("é", targets, exclude)
    assert encode_targets(NOBODY, NOBODY) == b""
    assert decode(b"1-2", {b"g": b"3", b"p": b"1-1"}).gap


@pytest.mark.parametrize(
    "fields",
    [
        {b"p": b"0-0"},
        {b"f": b"\xff", b"p": b"0-0"},
        {b"f": b"x", b"t": b"[1]"},
        {b"f": b"x", b"t": b"[[1],[],[],[]]"},
        {b"f": b"x", b"t": b"{"},
    ],
)
def test_malformed_entries_raise_value_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(ValueError):
        decode(b"1-0", fields)


def test_outbox_drops_the_oldest_behind_one_gap_marker() -> None:
    box = Outbox(max_count=3, max_bytes=1000)
    dropped = sum(box.put(f"f{i}".encode(), b"") for i in range(5))
    assert dropped == 2 and len(box) == 3 and box.dropped == 2
    batch = box.batch(10, 10_000)
    assert batch[0].kind == GAP and batch[0].payload == b"2"
    assert [item.payload for item in batch[1:]] == [b"f2", b"f3", b"f4"]
    seqs = [item.seq for item in batch]
    assert seqs == sorted(seqs)
    box.confirm(batch)
    assert not box and box.size == 0


def test_outbox_bytes_bound_and_batches() -> None:
    box = Outbox(max_count=100, max_bytes=25)
    for _ in range(5):
        box.put(b"x" * 10, b"")
    assert len(box) == 2 and box.size == 20
    assert box.put(b"y" * 30, b"") == 3  # larger than the bound: nothing of it stays
    assert len(box) == 0
    for _ in range(2):
        box.put(b"z" * 10, b"")
    marker = box.batch(10, 5)  # a gap marker costs no bytes
    assert [item.kind for item in marker] == [GAP]
    box.confirm(marker)
    assert len(box.batch(10, 5)) == 1  # one frame at least, even over the byte bound


def test_an_entry_names_its_producer_and_number() -> None:
    fields = {b"f": b"{}", b"p": b"1-0", b"n": b"0123abcd:42"}
    item = decode(b"1-1", fields)
    assert (item.producer, item.number) == (b"0123abcd", 42)
    for bad in (b"", b"42", b"tag:", b"tag:x", b"tag:" + b"9" * 21):
        item = decode(b"1-1", {**fields, b"n": bad})
        assert (item.producer, item.number) == (b"", 0), bad  # never skipped
