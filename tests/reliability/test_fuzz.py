"""Fuzzing decode -> dispatch: any input gets a documented answer, never a crash or hang.

In-process (``GatewayTestClient``): each example opens a connection, sends one
arbitrary frame, checks the answer against the documented set (or an exact oracle
for structured frames), then checks a valid request on the same connection still works.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway
from gatewayasgi.protocol import codec
from gatewayasgi.settings import Settings
from gatewayasgi.testing import GatewayTestClient, WebSocketClosed
from tests.reliability import gateway_errors, still_works

pytestmark = pytest.mark.anyio

FIXED_ERRORS = {
    codec.INVALID_JSON,
    codec.NOT_AN_OBJECT,
    codec.MISSING_EVENT,
    codec.EVENT_NOT_A_STRING,
    codec.INVALID_ID,
    codec.RATE_LIMITED,
}
DOCUMENTED_CLOSES = {1008, 1009}
# Limits loose enough that 10,000 bad frames in a burst are all answered; only the
# settings this version of the middleware knows are passed.
GENEROUS = {
    "rate_limit": None,
    "rate_burst": 1_000_000,
    "error_rate_limit": 1_000_000.0,
    "error_burst": 1_000_000,
    "abuse_threshold": 1_000_000,
}
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Point(BaseModel):
    x: int
    y: int


@WebSocketGateway("/fuzz")
class FuzzGateway:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody()):
        return {"echo": data}

    @SubscribeMessage("point")
    def point(self, point: Point = MessageBody()):
        # A string: pydantic turns digit strings into ints beyond orjson's 64-bit range.
        return {"sum": str(point.x + point.y)}


def generous(**extra: Any) -> dict[str, Any]:
    known = set(Settings.__dataclass_fields__)
    return {key: value for key, value in {**GENEROUS, **extra}.items() if key in known}


def app(**settings_: Any) -> GatewayMiddleware:
    return GatewayMiddleware(None, gateways=[FuzzGateway], **settings_)


def is_documented_error(reply: Any) -> bool:
    """An error frame whose message is one the protocol documents."""
    if reply.get("event") != "error" or set(reply) - {"event", "data", "id"}:
        return False
    message = reply["data"]["message"]
    return (
        message in FIXED_ERRORS
        or message.startswith("No handler for WebSocket event '")
        or message == "Invalid payload for WebSocket event 'point'"
    )


def is_normal_reply(reply: Any) -> bool:
    return (reply.get("event") == "echo" and "echo" in reply["data"]) or (
        reply.get("event") == "point" and "sum" in reply["data"]
    )


async def answer_to(raw: str | bytes, middleware: GatewayMiddleware) -> Any:
    """Send one raw frame on a fresh connection; the reply, or ``("closed", code)``."""
    async with GatewayTestClient(middleware, lifespan=False, timeout=2) as client:
        async with client.websocket_connect("/fuzz") as ws:
            if isinstance(raw, bytes):
                await ws.send_bytes(raw)
            else:
                await ws.send_text(raw)
            try:
                reply = await ws.receive_json()
            except WebSocketClosed as closed:
                return ("closed", closed.code)
            await still_works(ws, "after", {"echo": "after"}, "follow-up")
            return reply


def check_answer(answer: Any) -> None:
    if isinstance(answer, tuple):
        assert answer[1] in DOCUMENTED_CLOSES, answer
    else:
        assert is_documented_error(answer) or is_normal_reply(answer), answer


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENTS = st.sampled_from(["echo", "point", "", "error", "heartbeat"]) | st.text(max_size=300)
FRAMES = st.dictionaries(
    st.sampled_from(["event", "data", "id", "extra"]),
    JSON_VALUES | EVENTS,
    max_size=4,
) | st.builds(
    lambda event, data, frame_id: {"event": event, "data": data, "id": frame_id},
    EVENTS,
    JSON_VALUES | st.fixed_dictionaries({"x": JSON_VALUES, "y": JSON_VALUES}),
    st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=10),
)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)


def expected(obj: Any) -> Any:
    """What the protocol promises for a frame that decodes to ``obj``."""
    if type(obj) is not dict:
        return {"event": "error", "data": {"message": codec.NOT_AN_OBJECT}}
    frame_id = obj.get("id")
    if frame_id is not None and type(frame_id) not in (str, int):
        return {"event": "error", "data": {"message": codec.INVALID_ID}}
    ack = {} if frame_id is None else {"id": frame_id}
    event = obj.get("event")
    if event is None or event == "":
        return {"event": "error", "data": {"message": codec.MISSING_EVENT}, **ack}
    if type(event) is not str:
        return {"event": "error", "data": {"message": codec.EVENT_NOT_A_STRING}, **ack}
    data = obj.get("data")
    if event == "echo":
        return {"event": "echo", "data": {"echo": data}, **ack}
    if event == "point":
        try:
            point = Point.model_validate(data)
        except ValidationError:
            return "invalid payload"
        return {"event": "point", "data": {"sum": str(point.x + point.y)}, **ack}
    return {
        "event": "error",
        "data": {"message": f"No handler for WebSocket event '{event[:200]}'"},
        **ack,
    }


@FUZZ
@given(raw=ANY_TEXT | st.builds(json.dumps, JSON_VALUES))
async def test_any_text_frame_is_answered_and_the_connection_survives(
    raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Arbitrary text (lone surrogates included) gets a documented answer."""
    check_answer(await answer_to(raw, app()))
    assert gateway_errors(caplog) == []


@FUZZ
@given(raw=st.binary(max_size=300) | st.builds(lambda v: orjson.dumps(v), JSON_VALUES))
async def test_any_binary_frame_is_answered_and_the_connection_survives(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Arbitrary bytes in a binary frame get a documented answer."""
    check_answer(await answer_to(raw, app()))
    assert gateway_errors(caplog) == []


@FUZZ
@given(obj=FRAMES | JSON_VALUES, binary=st.booleans())
async def test_structured_frames_get_exactly_the_promised_answer(
    obj: Any, binary: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Well-formed JSON of any shape: the exact reply or error frame, id echoed when valid."""
    raw: str | bytes = orjson.dumps(obj) if binary else json.dumps(obj)
    answer = await answer_to(raw, app())
    promised = expected(obj)
    if promised == "invalid payload":
        assert answer["data"]["message"] == "Invalid payload for WebSocket event 'point'"
        assert answer.get("id") == obj.get("id")
        assert isinstance(answer["data"]["errors"], list)
    else:
        assert answer == promised
    assert gateway_errors(caplog) == []


@FUZZ
@given(raw=ANY_TEXT | st.binary(max_size=200))
async def test_frames_over_max_message_size_close_with_1009_and_others_are_answered(
    raw: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """With a 64-byte limit: larger frames close with 1009, smaller ones are answered."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    answer = await answer_to(raw, app(max_message_size=64))
    if size > 64:
        assert answer == ("closed", 1009)
    else:
        check_answer(answer)
    assert gateway_errors(caplog) == []


def malformed(index: int) -> str | bytes:
    """A rotating mix of invalid JSON, non-objects, bad envelopes and unknown events."""
    kind = index % 8
    if kind == 0:
        return "{not json" + str(index)
    if kind == 1:
        return b"\xff\xfe\x00" + index.to_bytes(4, "big")
    if kind == 2:
        return json.dumps([index, "list"])
    if kind == 3:
        return json.dumps(index)
    if kind == 4:
        return json.dumps({"data": index})
    if kind == 5:
        return json.dumps({"event": index, "id": index})
    if kind == 6:
        return json.dumps({"event": "echo", "id": [index]})
    return json.dumps({"event": f"nope-{index}", "data": "x" * (index % 100), "id": index})


async def test_ten_thousand_malformed_frames_crash_nothing_and_spare_the_neighbour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """10,000 bad frames on one connection: each answered (or a documented close), no
    ERROR logged, and echo round trips on the connection beside it all succeed."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    total, round_trips = 10_000, 300
    answered: list[Any] = []
    closed: list[int] = []
    neighbour_ok = 0

    async with GatewayTestClient(app(**generous()), timeout=10) as client:
        async with (
            client.websocket_connect("/fuzz") as abuser,
            client.websocket_connect("/fuzz") as neighbour,
        ):

            async def abuse() -> None:
                for index in range(total):
                    raw = malformed(index)
                    if isinstance(raw, bytes):
                        await abuser.send_bytes(raw)
                    else:
                        await abuser.send_text(raw)
                    if index % 50 == 0:
                        await anyio.lowlevel.checkpoint()

            async def read_answers() -> None:
                try:
                    while len(answered) < total:
                        answered.append(await abuser.receive_json())
                except WebSocketClosed as exc:
                    closed.append(exc.code)

            async def neighbour_round_trips() -> None:
                nonlocal neighbour_ok
                for index in range(round_trips):
                    await neighbour.emit("echo", index, id=index)
                    reply = await neighbour.receive_json()
                    assert reply == {"event": "echo", "data": {"echo": index}, "id": index}
                    neighbour_ok += 1

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(abuse)
                    tasks.start_soon(read_answers)
                    tasks.start_soon(neighbour_round_trips)
            if not closed:
                await still_works(abuser, "after", {"echo": "after"}, "follow-up")

    assert neighbour_ok == round_trips
    assert all(is_documented_error(reply) for reply in answered)
    if set(GENEROUS) <= set(Settings.__dataclass_fields__):
        assert closed == [], "the generous limits still closed the connection"
    if closed:
        assert closed[0] in DOCUMENTED_CLOSES
    else:
        assert len(answered) == total
        by_kind = {index % 8: answered[index]["data"]["message"] for index in range(8)}
        assert by_kind[0] == by_kind[1] == codec.INVALID_JSON
        assert by_kind[2] == by_kind[3] == codec.NOT_AN_OBJECT
        assert by_kind[4] == codec.MISSING_EVENT
        assert by_kind[5] == codec.EVENT_NOT_A_STRING
        assert by_kind[6] == codec.INVALID_ID
        assert by_kind[7] == "No handler for WebSocket event 'nope-7'"
        assert answered[7]["id"] == 7
    assert gateway_errors(caplog) == []


async def test_bad_frames_under_default_limits_end_in_a_documented_close_or_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the default limits a flood of bad frames is throttled, never amplified,
    and ends (if at all) with 1008; the neighbour is unaffected."""
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    total = 3000
    replies: list[Any] = []
    closed: list[int] = []
    async with GatewayTestClient(app(), timeout=10) as client:
        async with (
            client.websocket_connect("/fuzz") as abuser,
            client.websocket_connect("/fuzz") as neighbour,
        ):
            for index in range(total):
                await abuser.send_text("{not json" + str(index))
            with anyio.fail_after(30):
                try:
                    while True:
                        with anyio.move_on_after(1):
                            replies.append(await abuser.receive_json())
                            continue
                        break
                except WebSocketClosed as exc:
                    closed.append(exc.code)
            await neighbour.emit("echo", "fine", id=1)
            assert await neighbour.receive_json() == {
                "event": "echo",
                "data": {"echo": "fine"},
                "id": 1,
            }
    assert all(is_documented_error(reply) for reply in replies)
    assert len(replies) < total, "bad frames were answered one for one (amplifier)"
    assert closed in ([], [1008])
    assert gateway_errors(caplog) == []
