"""The sans-I/O RESP2 reader of the Redis subscriber: no event loop, no network."""

from __future__ import annotations

import pytest

from gatewayasgi.brokers._pubsub import command
from gatewayasgi.brokers._resp import (
    MAX_ARRAY_LENGTH,
    MAX_DEPTH,
    MAX_LINE_LENGTH,
    Message,
    OversizeMessage,
    Pong,
    ProtocolError,
    Reply,
    RespError,
    RespReader,
    RespValue,
    Skipped,
    SubscriptionAck,
    push_from,
)


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def message(channel: bytes, data: bytes) -> bytes:
    return b"*3\r\n" + bulk(b"message") + bulk(channel) + bulk(data)


def feed_all(reader: RespReader, *chunks: bytes) -> list[RespValue]:
    out: list[RespValue] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out


# A conversation as Redis sends it on a subscribed connection, binary payloads included.
STREAM = (
    b"+OK\r\n"
    + b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    + message(b"news", b"hello")
    + message(b"news", b"\r\n$3\r\n*1\r\n")  # payload that looks like RESP
    + message(b"news", b"")
    + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    + b"-ERR something\r\n"
    + b"$-1\r\n*-1\r\n*0\r\n:-42\r\n"
)
EXPECTED: list[RespValue] = [
    "OK",
    [b"subscribe", b"news", 1],
    [b"message", b"news", b"hello"],
    [b"message", b"news", b"\r\n$3\r\n*1\r\n"],
    [b"message", b"news", b""],
    [b"pong", b""],
    RespError("ERR something"),
    None,
    None,
    [],
    -42,
]


def test_every_reply_type_is_parsed() -> None:
    assert RespReader(1024).feed(STREAM) == EXPECTED


@pytest.mark.parametrize("split", range(1, len(STREAM)))
def test_the_stream_split_at_any_byte_parses_the_same(split: int) -> None:
    reader = RespReader(1024)
    assert feed_all(reader, STREAM[:split], STREAM[split:]) == EXPECTED
    assert reader.buffered == 0


def test_the_stream_fed_byte_by_byte_parses_the_same() -> None:
    reader = RespReader(1024)
    chunks = [STREAM[i : i + 1] for i in range(len(STREAM))]
    assert feed_all(reader, *chunks) == EXPECTED


def test_nested_arrays_are_parsed() -> None:
    data = b"*2\r\n*2\r\n:1\r\n*1\r\n$1\r\na\r\n:2\r\n"
    assert RespReader(10).feed(data) == [[[1, [b"a"]], 2]]


# -- the size limit ----------------------------------------------------------------------


def test_a_bulk_string_at_the_limit_is_kept_one_byte_over_is_skipped() -> None:
    reader = RespReader(7)  # the length of "message"
    assert reader.feed(message(b"c", b"x" * 7)) == [[b"message", b"c", b"x" * 7]]
    assert reader.feed(message(b"c", b"x" * 8)) == [[b"message", b"c", Skipped(8)]]


def test_an_oversize_payload_is_skipped_without_buffering_it() -> None:
    """1 MiB through a 64 KiB limit in 4 KiB chunks: the reader never holds more than one."""
    limit, chunk = 64 * 1024, 4096
    stream = message(b"big", b"y" * (1024 * 1024)) + message(b"small", b"after")
    reader = RespReader(limit)
    out: list[RespValue] = []
    most = 0
    for start in range(0, len(stream), chunk):
        out += reader.feed(stream[start : start + chunk])
        most = max(most, reader.buffered)
    assert out == [[b"message", b"big", Skipped(1024 * 1024)], [b"message", b"small", b"after"]]
    assert most < chunk


@pytest.mark.parametrize("split", range(1, len(message(b"ch", b"z" * 12) + message(b"ch", b"ok"))))
def test_skipping_survives_a_split_at_any_byte(split: int) -> None:
    stream = message(b"ch", b"z" * 12) + message(b"ch", b"ok")
    reader = RespReader(len(b"message"))
    out = feed_all(reader, stream[:split], stream[split:])
    assert out == [[b"message", b"ch", Skipped(12)], [b"message", b"ch", b"ok"]]


def test_a_skipped_payload_must_still_end_with_crlf() -> None:
    with pytest.raises(ProtocolError, match="CRLF"):
        RespReader(2).feed(b"$4\r\nabcdXX")


# -- malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"?what\r\n",  # unknown type byte
        b":+1\r\n",  # RESP integers take no plus sign
        b": 1\r\n",
        b":1_0\r\n",  # Python's int() would take this one
        b":abc\r\n",
        b":\r\n",
        b":" + b"9" * 20 + b"\r\n",
        b"$-2\r\n",
        b"$3\r\nabcXX",  # bulk string not terminated by CRLF
        b"*%d\r\n" % (MAX_ARRAY_LENGTH + 1),
        b"*1\r\n" * (MAX_DEPTH + 1),
        b"+" + b"a" * (MAX_LINE_LENGTH + 1),  # no CRLF in sight
        b"+" + b"a" * (MAX_LINE_LENGTH + 1) + b"\r\n",
    ],
    ids=lambda data: repr(data[:16]),
)
def test_malformed_input_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        RespReader(10).feed(data)


def test_a_failed_reader_refuses_further_input() -> None:
    reader = RespReader(10)
    with pytest.raises(ProtocolError):
        reader.feed(b"?\r\n")
    with pytest.raises(ProtocolError, match="failed earlier"):
        reader.feed(b"+OK\r\n")


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        RespReader(-1)


# -- pushes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "push"),
    [
        ([b"message", b"c", b"data"], Message(b"c", b"data")),
        ([b"message", b"c", Skipped(9)], OversizeMessage(b"c", 9)),
        ([b"message", Skipped(9), Skipped(3)], OversizeMessage(None, 3)),
        ([b"message", Skipped(9), b"abc"], OversizeMessage(None, 12)),
        ([b"subscribe", b"c", 1], SubscriptionAck("subscribe", b"c")),
        ([b"unsubscribe", b"c", 0], SubscriptionAck("unsubscribe", b"c")),
        ([b"pong", b""], Pong()),
        ("OK", Reply("OK")),
        (RespError("NOAUTH"), Reply(RespError("NOAUTH"))),
        ([b"pmessage", b"p*", b"c", b"d"], Reply([b"pmessage", b"p*", b"c", b"d"])),
        ([b"message", b"c"], Reply([b"message", b"c"])),
        ([], Reply([])),
    ],
)
def test_push_from_classifies_pubsub_replies(value: RespValue, push: object) -> None:
    assert push_from(value) == push


def test_commands_are_encoded_as_resp_arrays_the_reader_parses() -> None:
    encoded = command(b"SUBSCRIBE", b"a b", b"\r\n")
    assert encoded == b"*3\r\n$9\r\nSUBSCRIBE\r\n$3\r\na b\r\n$2\r\n\r\n\r\n"
    assert RespReader(100).feed(encoded) == [[b"SUBSCRIBE", b"a b", b"\r\n"]]
