"""JSON abuse: megabytes of ``[``, deep nesting, huge strings, bad UTF-8, lone surrogates.

Each case is answered with a documented error frame (or a 1009 close when too big),
never a crash, a recursion error or a hang, and the connection (when still open)
keeps working. In-process first, then the wire cases on real servers.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from gatewayasgi.protocol import codec
from gatewayasgi.testing import GatewayTestClient, TestWebSocket, WebSocketClosed
from tests.reliability import eventually, gateway_errors, still_works
from tests.servers import connect, run_server

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
INVALID_JSON = {"event": "error", "data": {"message": codec.INVALID_JSON}}


@WebSocketGateway("/abuse")
class AbuseGateway:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return data


def app(**settings: Any) -> GatewayMiddleware:
    return GatewayMiddleware(None, gateways=[AbuseGateway], **settings)


async def send(ws: TestWebSocket, raw: str | bytes) -> None:
    if isinstance(raw, bytes):
        await ws.send_bytes(raw)
    else:
        await ws.send_text(raw)


async def answer(raw: str | bytes, **settings: Any) -> Any:
    """The reply to one frame on a fresh in-process connection; checks it still works."""
    async with GatewayTestClient(app(**settings), lifespan=False, timeout=10) as client:
        async with client.websocket_connect("/abuse") as ws:
            await send(ws, raw)
            reply = await ws.receive_json()
            await still_works(ws)
            return reply


@pytest.fixture(autouse=True)
def no_gateway_errors(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Any:
    """Nothing here may log at ERROR (xfail tests check it themselves)."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    yield
    if request.node.get_closest_marker("xfail") is None:
        assert gateway_errors(caplog, "call") == []


@pytest.mark.parametrize("binary", [False, True])
async def test_two_megabytes_of_brackets_close_with_1009(binary: bool) -> None:
    """2 MB of ``[`` is over the 1 MiB default: closed with 1009 before decoding."""
    raw: str | bytes = b"[" * (2 * MIB) if binary else "[" * (2 * MIB)
    async with GatewayTestClient(app(), lifespan=False) as client:
        async with client.websocket_connect("/abuse") as ws:
            await send(ws, raw)
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive_json()
    assert closed.value.code == 1009


async def test_two_megabytes_of_brackets_under_a_raised_limit_get_an_error_frame() -> None:
    """With max_message_size above 2 MB the decoder's depth limit answers, no RecursionError."""
    assert await answer("[" * (2 * MIB), max_message_size=4 * MIB) == INVALID_JSON


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        '{"event": "echo", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"event": "echo", "data": ' + "[" * 100_000 + "}",
    ],
    ids=["arrays", "objects", "in-data", "unbalanced"],
)
async def test_hundred_thousand_deep_nesting_is_invalid_json(raw: str) -> None:
    """100k-deep nesting (well within 1 MiB) gets "Invalid JSON payload"."""
    assert len(raw.encode()) < MIB
    assert await answer(raw) == INVALID_JSON


async def test_nesting_the_decoder_accepts_is_echoed_or_refused_without_an_internal_error() -> None:
    """Depth 200 (what orjson writes back) echoes; nothing leads to a 1011."""
    nested: Any = "leaf"
    for _ in range(200):
        nested = [nested]
    assert await answer(orjson.dumps({"event": "echo", "data": nested})) == {
        "event": "echo",
        "data": nested,
    }


async def test_nesting_deeper_than_the_encoder_writes_gets_an_error_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Depth 300: decodable, not re-encodable. Expect a documented error frame, not 1011."""
    raw = '{"event": "echo", "data": ' + "[" * 300 + "]" * 300 + "}"
    reply = await answer(raw)
    assert reply["event"] == "error"
    assert reply["data"]["message"] != codec.INTERNAL_ERROR
    assert gateway_errors(caplog) == []


async def test_a_900_kb_string_echoes_back_intact() -> None:
    """A 900 KB string in data is under the limit and comes back byte for byte."""
    text = "é" * 1000 + "x" * (900 * 1024 - 2000)
    reply = await answer(orjson.dumps({"event": "echo", "data": text}).decode())
    assert reply == {"event": "echo", "data": text}


async def test_a_900_kb_event_name_is_not_echoed_back_in_full() -> None:
    """An unknown huge event name is answered with a short error (no amplification)."""
    event = "e" * (900 * 1024)
    reply = await answer(orjson.dumps({"event": event, "data": None, "id": 1}))
    assert reply == {
        "event": "error",
        "data": {"message": f"No handler for WebSocket event '{'e' * 200}'"},
        "id": 1,
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\xfd",
        b'{"event": "echo", "data": "\xc3\x28"}',
        b'{"event": "echo", "data": "\xed\xa0\x80"}',  # a UTF-8-encoded lone surrogate
        b"\x80" * 1000,
        b'{"event": "echo", "data": "ok"}\x00\xff',
    ],
    ids=["garbage", "bad-continuation", "encoded-surrogate", "continuations", "trailing"],
)
async def test_non_utf8_binary_frames_get_invalid_json(raw: bytes) -> None:
    """Bytes that are not UTF-8 JSON in a binary frame: "Invalid JSON payload"."""
    assert await answer(raw) == INVALID_JSON


@pytest.mark.parametrize(
    "raw",
    [
        '{"event": "echo", "data": "\ud800"}',
        '{"event": "echo", "data": "\udfff tail"}',
        '{"event": "echo\udc00", "data": 1}',
        '{"event": "echo", "data": "\\ud800"}',
        '{"event": "echo", "data": "\\udc00\\ud800"}',
    ],
    ids=["raw-high", "raw-low", "raw-in-event", "escaped-high", "escaped-reversed"],
)
async def test_lone_surrogates_get_invalid_json(raw: str) -> None:
    """Lone surrogates, raw in the text or as escapes: "Invalid JSON payload"."""
    assert await answer(raw) == INVALID_JSON


async def test_an_escaped_surrogate_pair_is_valid_and_echoes() -> None:
    """A correctly paired escape is real JSON: it decodes and echoes."""
    assert await answer('{"event": "echo", "data": "\\ud83d\\ude00"}') == {
        "event": "echo",
        "data": "\U0001f600",
    }


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_abuse_over_a_real_server(server: str) -> None:
    """On the wire: bad UTF-8 and a 900 KB echo are answered; 2 MB of ``[`` gets 1009."""
    middleware = app()
    gateway = middleware.server_for(AbuseGateway)
    async with run_server(middleware, server) as address:
        async with connect(address, "/abuse", max_size=None, compression=None) as client:
            await client.send_raw(b"\xff\xfe not json")
            assert await client.recv() == INVALID_JSON
            await client.send_raw("[" * 100_000)
            assert await client.recv() == INVALID_JSON
            big = "y" * (900 * 1024)
            assert await client.request("echo", big, id=7) == {
                "event": "echo",
                "data": big,
                "id": 7,
            }
            await client.send_raw("[" * (2 * MIB))
            assert await client.expect_close() == 1009
        # The server still takes new connections.
        async with connect(address, "/abuse", compression=None) as client:
            assert await client.request("echo", "next", id=1) == {
                "event": "echo",
                "data": "next",
                "id": 1,
            }
        await eventually(lambda: not gateway.clients)
