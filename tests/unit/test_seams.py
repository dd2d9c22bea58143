"""The seams the next capabilities plug into: delivery history, wire protocol, handler
descriptions, instrumentation. Pure: no server, no network."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from gatewayasgi import BaseGuard, ConnectedSocket, MessageBody, SubscribeMessage, UseGuards
from gatewayasgi.dispatch.handler import compile_handler
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.targets import Targets, is_client_id, new_client_id, split
from gatewayasgi.runtime.delivery import Delivery, Emission
from gatewayasgi.stores.memory import MemoryLog


class Message(BaseModel):
    room: str
    text: str


class Recorder(MemoryLog):
    """A memory history that also notes, in order, when it kept a frame."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(max_frames=10, max_age=60)
        self.log = log

    async def append(self, frame: str, targets: Targets, exclude: Targets) -> int:
        self.log.append(f"history:{frame}")
        return await super().append(frame, targets, exclude)


def test_every_emit_is_kept_by_the_history_before_fan_out_and_carries_its_offset() -> None:
    log: list[str] = []

    def fan_out(
        frame: Any,
        targets: Targets,
        exclude: Targets,
        offset: int | None = None,
        emission: Any = None,
    ) -> int:
        assert emission is None or emission.stamp == (None if offset is None else str(offset))
        log.append(f"fan_out:{frame}:{offset}")
        return 2

    history = Recorder(log)
    delivery = Delivery("/chat", JSON, fan_out, history=history)

    async def emit_twice() -> list[int]:
        first = await delivery.emit(Emission("a", 1, split(("room",))))
        second = await delivery.emit(Emission("b", 2))
        return [first, second]

    assert anyio.run(emit_twice) == [2, 2]
    assert log == [
        'history:{"event":"a","data":1}',
        'fan_out:{"event":"a","data":1,"offset":"1"}:1',
        'history:{"event":"b","data":2}',
        'fan_out:{"event":"b","data":2,"offset":"2"}:2',
    ]
    kept = anyio.run(history.replay, 0, 10)
    assert [entry.offset for entry in kept] == [1, 2]
    assert kept[0].targets == Targets(("room",), ())


def test_client_ids_and_room_names_are_told_apart_by_shape() -> None:
    client = new_client_id()
    assert is_client_id(client)
    assert not is_client_id(client.upper()) and not is_client_id(client + "x")
    assert not is_client_id("lobby") and not is_client_id("c_" + "g" * 32)
    assert split(("lobby", client, "lobby")) == Targets(("lobby",), (client,))


def test_the_json_protocol_bounds_error_frames() -> None:
    huge = {"detail": "x" * 100_000}
    frame = JSON.encode_error("boom", "id-1", huge)
    assert isinstance(frame, str) and len(frame) < 4096
    assert '"truncated":true' in frame and '"id":"id-1"' in frame
    assert JSON.encode_reply("e", {"event": "other", "data": 1}, 7) == (
        '{"event":"other","data":1,"id":7}'
    )


class Admin(BaseGuard):
    def can_activate(self, context: Any) -> bool:
        return True


def test_a_compiled_handler_describes_itself() -> None:
    class Gateway:
        @UseGuards(Admin)
        @SubscribeMessage("send")
        async def send(self, body: Message = MessageBody(), client=ConnectedSocket()) -> Message:
            """Post a message to a room."""
            return body

        @SubscribeMessage("join")
        def join(self, room: str = MessageBody("room")) -> None:
            return None

    send = compile_handler("send", "Gateway", Gateway().send, guards=(Admin(),))
    description = send.description
    assert description is not None
    assert description.event == "send" and description.returns is Message
    assert description.body is not None and description.body.annotation is Message
    assert [p.source for p in description.parameters] == ["body", "socket"]
    assert description.guards == ("Admin",)
    assert description.doc == "Post a message to a room."

    join = compile_handler("join", "Gateway", Gateway().join).description
    assert join is not None
    assert join.body is None and join.body_fields == {"room": str}
    assert join.returns is type(None) or join.returns is None


@pytest.mark.parametrize("count", [1, 10, 11, 100_000])
def test_validation_details_are_capped(count: int) -> None:
    from pydantic import TypeAdapter, ValidationError

    from gatewayasgi.dispatch.handler import bounded_errors

    try:
        TypeAdapter(list[int]).validate_python(["x" * 1000] * count)
    except ValidationError as exc:
        details = bounded_errors(exc)
    errors = details["errors"]
    assert len(errors) == min(count, 10)
    assert details.get("error_count", count) == count
    assert all(set(error) == {"type", "loc", "msg"} for error in errors)
