"""Gateway compilation: event tables, extractors, guards, startup errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    MessageBody,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
)
from gatewayasgi.di import Container
from gatewayasgi.dispatch.routes import Routes, route_path
from gatewayasgi.dispatch.table import compile_gateway
from gatewayasgi.exceptions import (
    ConfigurationError,
    DuplicateHandlerError,
    DuplicateNamespaceError,
    PayloadValidationError,
)
from gatewayasgi.gateway.decorators import gateway_meta, normalize_namespace


class Dto(BaseModel):
    room: str


class AllowAll(BaseGuard):
    def can_activate(self, context: object) -> bool:
        return True


class DenyAll(BaseGuard):
    def can_activate(self, context: object) -> bool:
        return False


@WebSocketGateway("/t")
@UseGuards(AllowAll)
class Sample:
    @SubscribeMessage("whole")
    async def whole(self, data=MessageBody()):
        return data

    @SubscribeMessage("keyed")
    def keyed(self, room=MessageBody("room"), client=ConnectedSocket()):
        return room, client

    @SubscribeMessage("model")
    async def model(self, data: Dto = MessageBody()):
        return data

    @SubscribeMessage("guarded")
    @UseGuards(DenyAll, AllowAll)
    async def guarded(self):
        return None


def table():
    return compile_gateway(Sample, Container())


def test_every_subscribed_method_is_in_the_table() -> None:
    assert set(table().handlers) == {"whole", "keyed", "model", "guarded"}


def test_sync_and_async_are_known_at_compile_time() -> None:
    handlers = table().handlers
    assert handlers["whole"].is_async and not handlers["whole"].threaded
    # a ``def`` handler runs in the thread pool: its invoker is awaited too
    assert handlers["keyed"].is_async and handlers["keyed"].threaded


@pytest.mark.anyio
async def test_extractors_read_body_key_and_socket() -> None:
    handlers = table().handlers
    assert await handlers["keyed"].invoke("c", {"room": "r"}) == ("r", "c")
    assert await handlers["keyed"].invoke("c", "not a dict") == (None, "c")


@pytest.mark.anyio
async def test_async_handlers_get_the_whole_body() -> None:
    assert await table().handlers["whole"].invoke("c", {"a": 1}) == {"a": 1}


@pytest.mark.anyio
async def test_pydantic_annotation_validates_and_converts() -> None:
    handler = table().handlers["model"]
    assert await handler.invoke(None, {"room": "x"}) == Dto(room="x")
    with pytest.raises(PayloadValidationError) as info:
        handler.invoke(None, {"room": 5})
    assert info.value.message == "Invalid payload for WebSocket event 'model'"
    assert info.value.data["errors"][0]["loc"] == ["room"]


def test_class_guards_run_before_handler_guards_in_written_order() -> None:
    guards = table().handlers["guarded"].guards
    assert [type(g) for g in guards] == [AllowAll, DenyAll, AllowAll]


def test_duplicate_events_name_both_methods() -> None:
    @WebSocketGateway("/dup")
    class Dup:
        @SubscribeMessage("x")
        def one(self): ...

        @SubscribeMessage("x")
        def two(self): ...

    with pytest.raises(DuplicateHandlerError, match=r"Dup\.one and Dup\.two"):
        compile_gateway(Dup, Container())


def test_parameter_without_marker_is_a_startup_error() -> None:
    @WebSocketGateway("/bad")
    class Bad:
        @SubscribeMessage("x")
        def handler(self, data): ...

    with pytest.raises(ConfigurationError, match="'data'"):
        compile_gateway(Bad, Container())


@pytest.mark.anyio
async def test_parameters_left_to_defaults_are_passed_by_name() -> None:
    @WebSocketGateway("/defaults")
    class Defaults:
        @SubscribeMessage("x")
        def handler(self, flag=True, data=MessageBody(), *, tail=ConnectedSocket()):
            return flag, data, tail

    handler = compile_gateway(Defaults, Container()).handlers["x"]
    assert await handler.invoke("c", 1) == (True, 1, "c")


def test_subclass_overrides_handlers_by_name() -> None:
    @WebSocketGateway("/child")
    class Child(Sample):
        @SubscribeMessage("whole")
        async def whole(self, data=MessageBody()):
            return "child"

    assert table().handlers.keys() == compile_gateway(Child, Container()).handlers.keys()


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, "/ws"), ("", "/ws"), ("chat", "/chat"), ("/chat/", "/chat"), ("/a/b", "/a/b")],
)
def test_namespaces_are_normalised(given: str | None, expected: str) -> None:
    assert normalize_namespace(given) == expected


def test_decorator_forms() -> None:
    @WebSocketGateway
    class Bare: ...

    @WebSocketGateway(namespace="chat")
    class Named: ...

    assert gateway_meta(Bare).namespace == "/ws"  # type: ignore[union-attr]
    assert gateway_meta(Named).namespace == "/chat"  # type: ignore[union-attr]


def test_routes_match_exact_and_parametrised_namespaces() -> None:
    routes = Routes([("/chat", "chat", "A"), ("/rooms/{room_id}", "rooms", "B")])
    assert routes.match("/chat") == ("chat", {})
    assert routes.match("/rooms/42") == ("rooms", {"room_id": "42"})
    assert routes.match("/rooms/42/x") is None
    assert routes.match("/other") is None


def test_duplicate_namespaces_name_both_gateways() -> None:
    with pytest.raises(DuplicateNamespaceError, match="A and B"):
        Routes([("/r/{a}", 1, "A"), ("/r/{b}", 2, "B")])


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/chat", "", "/chat"),
        ("/api/chat", "/api", "/chat"),
        ("/chat/", "", "/chat"),
        ("/", "", "/"),
    ],
)
def test_route_path_strips_root_path_and_trailing_slash(
    path: str, root: str, expected: str
) -> None:
    assert route_path(path, root) == expected
