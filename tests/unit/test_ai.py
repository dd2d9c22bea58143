"""``gatewayasgi.ai``: the AI SDK chat protocol's frames and ``text_chunks``, no server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from gatewayasgi import GatewayMiddleware, WebSocketGateway
from gatewayasgi.ai import MAX_ERROR_TEXT, AISDKChat, ChatRequest, ResumeRequest, text_chunks
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.gateway.decorators import _registry
from gatewayasgi.protocol.codec import ATTACH_EVENT, CANCEL_EVENT, FrameError, StreamFrame
from tests.ai.cases import CASES, SEND, TEXT, send

CHAT = AISDKChat()


def decode(value: Any) -> Any:
    return CHAT.decode(orjson.dumps(value))


@pytest.mark.parametrize(("name", "frame", "accepted"), CASES, ids=[c[0] for c in CASES])
def test_the_ai_packages_verdicts(name: str, frame: Any, accepted: bool) -> None:
    # The verdicts are the ai package's own (tests/ai/test_validation_parity.py asks it).
    if accepted:
        decode(frame)
    else:
        with pytest.raises(FrameError):
            decode(frame)


def test_a_send_is_a_keyed_stream_request_of_event_send() -> None:
    frame = decode(send(TEXT, metadata={"a": 1}))
    assert type(frame) is StreamFrame
    assert (frame.event, frame.id, frame.key, frame.after) == ("send", "r1", "chat-1", 0)
    assert isinstance(frame.data, ChatRequest)
    assert frame.data.messages[0].parts[0].text == "hi"  # type: ignore[union-attr]
    assert frame.data.metadata == {"a": 1}


def test_an_abort_cancels_its_request() -> None:
    assert tuple(decode({"type": "abort", "requestId": "r9"})) == (CANCEL_EVENT, None, "r9")


def test_a_resume_attaches_by_chat_id_from_the_next_sequence() -> None:
    resume = {"type": "resume", "requestId": "r2", "id": "chat-1", "headers": {}, "body": {}}
    frame = decode(resume)
    assert type(frame) is StreamFrame
    assert (frame.event, frame.id, frame.key, frame.after) == (ATTACH_EVENT, "r2", "chat-1", 0)
    assert isinstance(frame.data, ResumeRequest)
    # The transport counts chunks from 0, the runtime items from 1: chunk 4 is item 5.
    assert decode({**resume, "lastSequence": 4}).after == 5
    assert decode({**resume, "lastSequence": 0}).after == 1


@pytest.mark.parametrize(
    ("frame", "message", "answers"),
    [
        (b"{nope", "Invalid WebSocket chat request frame.", None),
        ({"type": "send"}, "Invalid WebSocket chat request frame.", None),
        ({**SEND, "messages": []}, "Invalid UI messages in WebSocket chat request: ", "r1"),
        ({**send(TEXT), "trigger": "x"}, "Invalid WebSocket chat send request.", "r1"),
        ({**send(TEXT), "requestId": "x" * 129}, "WebSocket message id must be at most", None),
        ({"type": "abort"}, "Invalid WebSocket chat abort request.", None),
    ],
)
def test_refusals_say_why_and_answer_the_request_when_they_can(
    frame: Any, message: str, answers: str | None
) -> None:
    with pytest.raises(FrameError) as info:
        CHAT.decode(frame if isinstance(frame, bytes) else orjson.dumps(frame))
    assert info.value.message.startswith(message)
    assert info.value.id == answers


def test_a_refusal_is_bounded_whatever_the_input() -> None:
    parts = [{"type": "text", "text": "x"}] * 50 + [{"type": "text" * 1000, "k": "v" * 10**5}]
    with pytest.raises(FrameError) as info:
        decode(send(*parts))
    assert len(info.value.message) <= MAX_ERROR_TEXT


def test_what_the_gateway_sends() -> None:
    def read(payload: Any) -> Any:
        return orjson.loads(payload)

    assert read(CHAT.encode_stream_start("send", "r1")) == {"type": "start", "requestId": "r1"}
    chunk = {"type": "text-delta", "id": "t", "delta": "a"}
    assert read(CHAT.encode_stream_item("send", chunk, "r1", 1)) == {
        "type": "chunk",
        "requestId": "r1",
        "sequence": 0,
        "chunk": chunk,
    }
    end = {"type": "end", "requestId": "r1"}
    assert read(CHAT.encode_stream_end("send", {"x": 1}, "r1")) == end
    assert read(CHAT.encode_stream_end("send", None, "r1", cancelled=True)) == end
    assert read(CHAT.encode_stream_missing(ATTACH_EVENT, "r2")) == {
        "type": "no-active",
        "requestId": "r2",
    }
    error = read(CHAT.encode_error("x" * 10_000, "r1", {"big": "y" * 10_000}))
    assert error == {"type": "error", "requestId": "r1", "errorText": "x" * MAX_ERROR_TEXT}
    # Frames that answer no request carry requestId "": the transport ignores them.
    assert read(CHAT.encode_error("bad", None))["requestId"] == ""
    emitted = read(CHAT.encode_emit("news", {"a": 1}))
    assert emitted == {"type": "emit", "requestId": "", "event": "news", "data": {"a": 1}}
    canonical = '{"event":"news","data":1,"offset":"5-0"}'
    assert read(CHAT.transcode(canonical)) == {
        "type": "emit",
        "requestId": "",
        "event": "news",
        "data": 1,
        "offset": "5-0",
    }


def test_a_gateway_declares_its_protocol() -> None:
    @WebSocketGateway("/ai-unit", protocol=CHAT)
    class Chat:
        pass

    @WebSocketGateway("/wrong", protocol="ai")
    class Wrong:
        pass

    try:
        assert GatewayMiddleware(gateways=[Chat]).runners["/ai-unit"].protocol is CHAT
        with pytest.raises(ConfigurationError, match="protocol must be a WireProtocol"):
            GatewayMiddleware(gateways=[Wrong])
    finally:
        # Declared gateways are remembered: a middleware serving them all must not meet these.
        _registry.remove(Chat)
        _registry.remove(Wrong)


async def pieces(*texts: str, fail: bool = False) -> AsyncIterator[str]:
    for text in texts:
        yield text
    if fail:
        raise RuntimeError("secret stack detail")


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in chunks]


@pytest.mark.anyio
async def test_text_chunks_a_whole_answer() -> None:
    chunks = await collect(text_chunks(pieces("Hel", "", "lo"), message_id="m1"))
    assert chunks == [
        {"type": "start", "messageId": "m1"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hel"},
        {"type": "text-delta", "id": "text-1", "delta": "lo"},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish", "finishReason": "stop"},
    ]


@pytest.mark.anyio
async def test_text_chunks_metadata_and_an_empty_answer() -> None:
    chunks = await collect(text_chunks(pieces(), metadata={"model": "fake"}, text_id="t"))
    assert [c["type"] for c in chunks] == ["start", "text-start", "text-end", "finish"]
    assert chunks[0]["messageMetadata"] == {"model": "fake"}


@pytest.mark.anyio
async def test_text_chunks_an_error_ends_with_one_error_chunk() -> None:
    chunks = await collect(text_chunks(pieces("a", fail=True)))
    assert chunks[-1] == {"type": "error", "errorText": "An error occurred."}
    assert [c["type"] for c in chunks] == ["start", "text-start", "text-delta", "error"]
    told = await collect(text_chunks(pieces(fail=True), on_error=lambda exc: str(exc) * 1000))
    assert told[-1]["errorText"] == ("secret stack detail" * 1000)[:MAX_ERROR_TEXT]


@pytest.mark.anyio
async def test_text_chunks_refuses_what_is_not_text() -> None:
    async def numbers() -> AsyncIterator[Any]:
        yield 1

    chunks = await collect(text_chunks(numbers(), on_error=lambda exc: type(exc).__name__))
    assert chunks[-1] == {"type": "error", "errorText": "TypeError"}


@pytest.mark.anyio
async def test_closing_text_chunks_closes_the_model() -> None:
    closed = anyio.Event()

    async def model() -> AsyncIterator[str]:
        try:
            while True:
                yield "token"
                await anyio.lowlevel.checkpoint()
        finally:
            closed.set()

    chunks = text_chunks(model())
    assert [await chunks.__anext__() for _ in range(3)][-1]["type"] == "text-delta"
    await chunks.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()
