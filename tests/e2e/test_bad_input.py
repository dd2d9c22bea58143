"""Malformed frames: each kind gets its error frame and the same connection keeps working.

Nothing a client sends may crash the server, close the connection or leak internals;
after every bad frame the next valid request on the SAME connection is answered.
"""

import json
from typing import Any

import pytest
from pydantic import BaseModel

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
    WsException,
)
from tests.servers import Client, connect, run_server

pytestmark = pytest.mark.anyio

INVALID_JSON = "Invalid JSON payload"
NOT_AN_OBJECT = "WebSocket message must be a JSON object"
MISSING_EVENT = "WebSocket message is missing an event"
EVENT_NOT_A_STRING = "WebSocket message event must be a string"
INVALID_ID = "WebSocket message id must be a string or an integer"


class Payload(BaseModel):
    n: int
    label: str = "none"


@WebSocketGateway("/bad")
class BadInputGateway:
    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> dict:
        return {"got": data}

    @SubscribeMessage("typed")
    async def typed(self, data: Payload = MessageBody()) -> dict:
        return data.model_dump()

    @SubscribeMessage("refuse")
    async def refuse(self, room: Any = MessageBody("room")) -> None:
        raise WsException("room is full", room=room, code="ROOM_FULL", limit=2)

    @SubscribeMessage("who")
    def who(self, client: Any = ConnectedSocket()) -> str:
        return str(client.id)

    @SubscribeMessage("seat")
    async def seat(
        self, room: str = MessageBody("room"), guest: Payload = MessageBody("guest")
    ) -> dict:
        return {"room": room, "guest": guest.model_dump()}


def error(message: str, **extra: Any) -> dict:
    return {"event": "error", "data": {"message": message, **extra}}


def frame(**fields: Any) -> str:
    return json.dumps(fields)


# (case id, raw frame, the exact error frame expected)
ERROR_CASES: list[tuple[str, str | bytes, dict]] = [
    ("invalid_json_text", '{"event": "echo", ', error(INVALID_JSON)),
    ("garbage_text", "not json at all", error(INVALID_JSON)),
    ("empty_text", "", error(INVALID_JSON)),
    ("invalid_json_bytes", b'{"event": "echo", "data": ', error(INVALID_JSON)),
    ("invalid_utf8_bytes", b"\xff\xfe\x00{", error(INVALID_JSON)),
    ("empty_bytes", b"", error(INVALID_JSON)),
    ("list", "[1, 2, 3]", error(NOT_AN_OBJECT)),
    ("list_of_frame", json.dumps([{"event": "echo"}]), error(NOT_AN_OBJECT)),
    ("number", "42", error(NOT_AN_OBJECT)),
    ("float", "1.5", error(NOT_AN_OBJECT)),
    ("string", '"echo"', error(NOT_AN_OBJECT)),
    ("null", "null", error(NOT_AN_OBJECT)),
    ("boolean", "true", error(NOT_AN_OBJECT)),
    ("binary_list", b"[1]", error(NOT_AN_OBJECT)),
    ("missing_event", frame(data={"room": "support"}), error(MISSING_EVENT)),
    ("null_event", frame(event=None, data=1), error(MISSING_EVENT)),
    ("empty_event", frame(event="", data=1), error(MISSING_EVENT)),
    ("empty_object", "{}", error(MISSING_EVENT)),
    ("int_event", frame(event=5, data=1), error(EVENT_NOT_A_STRING)),
    ("list_event", frame(event=["echo"], data=1), error(EVENT_NOT_A_STRING)),
    ("object_event", frame(event={"name": "echo"}), error(EVENT_NOT_A_STRING)),
    ("bool_event", frame(event=True), error(EVENT_NOT_A_STRING)),
    ("float_id", frame(event="echo", data=1, id=1.5), error(INVALID_ID)),
    ("bool_id", frame(event="echo", data=1, id=True), error(INVALID_ID)),
    ("list_id", frame(event="echo", data=1, id=[1]), error(INVALID_ID)),
    ("object_id", frame(event="echo", data=1, id={"a": 1}), error(INVALID_ID)),
    (
        "missing_event_keeps_id",
        frame(data=1, id="m1"),
        {**error(MISSING_EVENT), "id": "m1"},
    ),
    ("unknown_event", frame(event="nope", data=1), error("No handler for WebSocket event 'nope'")),
    (
        "unknown_event_with_id",
        frame(event="nope", id=9),
        {**error("No handler for WebSocket event 'nope'"), "id": 9},
    ),
    (
        "unknown_event_quotes",
        frame(event="it's <b>"),
        error("No handler for WebSocket event 'it's <b>'"),
    ),
    (
        "ws_exception_with_extra_data",
        frame(event="refuse", data={"room": "r1"}, id="x"),
        {**error("room is full", room="r1", code="ROOM_FULL", limit=2), "id": "x"},
    ),
]


async def assert_still_works(client: Client) -> None:
    assert await client.request("echo", {"ok": True}) == {
        "event": "echo",
        "data": {"got": {"ok": True}},
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(raw, expected) for _, raw, expected in ERROR_CASES],
    ids=[case_id for case_id, _, _ in ERROR_CASES],
)
async def test_malformed_frame_gets_its_error_frame_and_connection_survives(
    raw: str | bytes, expected: dict
) -> None:
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app) as address, connect(address, "/bad") as client:
        client_id = (await client.request("who"))["data"]
        await client.send_raw(raw)
        assert await client.recv() == expected
        await assert_still_works(client)
        assert (await client.request("who"))["data"] == client_id  # the same connection


@pytest.mark.parametrize("frame_id", [None, "p1"])
async def test_invalid_pydantic_payload_gets_details_and_connection_survives(
    frame_id: str | None,
) -> None:
    extra = {"id": frame_id} if frame_id is not None else {}
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app) as address, connect(address, "/bad") as client:
        for bad in ({"n": "not a number"}, {}, None, [1], "text"):
            reply = await client.request("typed", bad, **extra)
            assert reply["event"] == "error"
            assert reply.get("id") == frame_id
            assert "typed" in reply["data"]["message"]
            assert isinstance(reply["data"]["errors"], list) and reply["data"]["errors"]
            for detail in reply["data"]["errors"]:
                assert {"type", "loc", "msg"} <= set(detail)
        assert await client.request("typed", {"n": "3"}) == {
            "event": "typed",
            "data": {"n": 3, "label": "none"},
        }
        await assert_still_works(client)


async def test_invalid_keyed_body_names_its_key_in_loc() -> None:
    """``MessageBody("room")``: each error's ``loc`` starts with the key it read."""
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app) as address, connect(address, "/bad") as client:
        # parameters are validated in order: the first one that fails is reported
        for data, expected in [
            ({"room": 5, "guest": {"n": 1}}, [("string_type", ["room"])]),
            ({"guest": {"n": 1}}, [("string_type", ["room"])]),  # a missing key reads None
            ({"room": "r", "guest": {"n": "x"}}, [("int_parsing", ["guest", "n"])]),
            ({"room": "r", "guest": {}}, [("missing", ["guest", "n"])]),
            ({"room": "r"}, [("model_type", ["guest"])]),
        ]:
            reply = await client.request("seat", data)
            errors = [(e["type"], e["loc"]) for e in reply["data"]["errors"]]
            assert errors == expected, data
        reply = await client.request("seat", {"room": "r", "guest": {"n": 1}})
        assert reply == {"event": "seat", "data": {"room": "r", "guest": {"n": 1, "label": "none"}}}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event": "echo", "data": {"binary": true}}',
        '{"event": "echo", "data": {"binary": true}}'.encode("utf-16"),
    ],
    ids=["utf8", "utf16"],
)
async def test_binary_frame_holding_json(raw: bytes) -> None:
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app) as address, connect(address, "/bad") as client:
        await client.send_raw(raw)
        reply = await client.recv()
        if raw.startswith(b"{"):
            assert reply == {"event": "echo", "data": {"got": {"binary": True}}}
        else:  # not UTF-8 JSON: refused, not crashed
            assert reply == error(INVALID_JSON)
        await assert_still_works(client)


async def test_null_id_and_missing_data_are_dispatched() -> None:
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app) as address, connect(address, "/bad") as client:
        await client.send_raw(frame(event="echo", data=1, id=None))
        assert await client.recv() == {"event": "echo", "data": {"got": 1}}
        await client.send_raw(frame(event="echo"))
        assert await client.recv() == {"event": "echo", "data": {"got": None}}
        await client.send_raw(frame(event="echo", data=2, extra="ignored"))
        assert await client.recv() == {"event": "echo", "data": {"got": 2}}


async def test_abusive_frames_do_not_crash_the_server() -> None:
    deep = "[" * 5000 + "]" * 5000
    deep_object = '{"event": "echo", "data": ' + "[" * 5000 + "]" * 5000 + "}"
    long_event = frame(event="x" * 100_000)
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app) as address, connect(address, "/bad") as client:
        for raw in (deep, deep_object):
            await client.send_raw(raw)
            reply = await client.recv()
            assert reply["event"] in ("error", "echo")
            if reply["event"] == "error":
                assert reply["data"]["message"] in (INVALID_JSON, NOT_AN_OBJECT)
        await client.send_raw(long_event)
        reply = await client.recv()
        assert reply["event"] == "error"
        assert reply["data"]["message"].startswith("No handler for WebSocket event 'xxx")
        assert len(json.dumps(reply)) < 10_000  # the error frame does not echo it all back
        await assert_still_works(client)


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn", "hypercorn-trio"])
async def test_pipelined_bad_frames_are_answered_in_order(server: str) -> None:
    """Every bad frame sent back to back on one connection, then a valid one."""
    app = GatewayMiddleware(None, gateways=[BadInputGateway])
    async with run_server(app, server) as address, connect(address, "/bad") as client:
        for _, raw, _ in ERROR_CASES:
            await client.send_raw(raw)
        await client.send("echo", "last", id="final")
        for case_id, _, expected in ERROR_CASES:
            assert await client.recv() == expected, case_id
        assert await client.recv() == {"event": "echo", "data": {"got": "last"}, "id": "final"}
