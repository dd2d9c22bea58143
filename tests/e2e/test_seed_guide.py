"""Every example of the seed gateway guide, end to end, in the guide's order.

Each example is the guide's code with only its imports changed to ``gatewayasgi`` and the
app built with ``GatewayMiddleware`` (in place of ``@Module``/``PyNestFactory``). Gateways
are defined inside each test, as the guide writes them, and always passed explicitly.
This module deliberately has no ``from __future__ import annotations``: the guide's code
is run exactly as a user would paste it.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn
import websockets
from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    Injectable,
    MessageBody,
    OnGatewayConnection,
    OnGatewayDisconnect,
    OnGatewayInit,
    SubscribeMessage,
    UseGuards,
    WebSocketGateway,
    WebSocketServer,
    WsArgumentsHost,
    WsException,
)
from tests.servers import (
    TIMEOUT,
    CrossEvent,
    connect,
    free_port,
    run_server,
    server_call,
    server_read,
)

pytestmark = pytest.mark.anyio

# "hypercorn-trio" serves the app from a trio loop in another thread: app state is read
# and gateway methods are awaited through server_read/server_call, hooks signal the test
# through a CrossEvent (see tests/servers.py).
SERVERS = ["hypercorn", "uvicorn", "hypercorn-trio"]
# The guide's examples that did not name a server run under hypercorn's two workers.
HYPERCORN_WORKERS = ["hypercorn", "hypercorn-trio"]
QUIET = 0.15  # how long "nothing arrives" is watched for

ACCESS_DENIED = "Access denied: insufficient permissions"
INTERNAL_ERROR = "Internal server error"
MISSING_EVENT = "WebSocket message is missing an event"
NOT_AN_OBJECT = "WebSocket message must be a JSON object"


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=HYPERCORN_WORKERS)
def worker(request: pytest.FixtureRequest) -> str:
    """hypercorn's asyncio worker and its trio worker."""
    return str(request.param)


@asynccontextmanager
async def serve(
    gateways: Sequence[type],
    providers: Sequence[Any] = (),
    server: str = "hypercorn",
    **options: Any,
) -> AsyncIterator[tuple[GatewayMiddleware, str]]:
    """A bare gateway app (no wrapped app) under a real server."""
    app = GatewayMiddleware(None, gateways=list(gateways), providers=list(providers))
    async with run_server(app, server, **options) as address:
        yield app, address


async def wait_until(predicate: Any, address: str = "", timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` where the app at ``address`` runs (here when none is given)."""
    with anyio.fail_after(timeout):
        while not await server_read(address, predicate):
            await anyio.sleep(0.01)


# -- Quick Start ---------------------------------------------------------------


async def test_quick_start_chat_gateway_acknowledges_with_injected_service(server: str) -> None:
    @Injectable
    class ChatService:
        def acknowledge(self, text: str) -> dict:
            return {"text": text, "status": "delivered"}

    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        def __init__(self, chat_service: ChatService):
            self.chat_service = chat_service

        @SubscribeMessage("send_message")
        async def handle_message(self, data=MessageBody()):
            return {
                "event": "message_ack",
                "data": self.chat_service.acknowledge(data["text"]),
            }

    async with serve([ChatGateway], [ChatService], server) as (app, address):
        assert isinstance(app.get(ChatGateway).chat_service, ChatService)
        async with connect(address, "/chat") as client:
            reply = await client.request("send_message", {"text": "hello"})
    assert reply == {"event": "message_ack", "data": {"text": "hello", "status": "delivered"}}


# -- Registering Gateways --------------------------------------------------------


async def test_gateway_listed_among_providers_is_served_like_a_pynest_module(worker: str) -> None:
    """``@Module(providers=[ChatService, ChatGateway])`` maps to ``providers=[...]``."""

    @Injectable
    class ChatService:
        def acknowledge(self, text: str) -> dict:
            return {"text": text, "status": "delivered"}

    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        def __init__(self, chat_service: ChatService):
            self.chat_service = chat_service

        @SubscribeMessage("send_message")
        async def handle_message(self, data=MessageBody()):
            return {"event": "message_ack", "data": self.chat_service.acknowledge(data["text"])}

    app = GatewayMiddleware(None, gateways=[], providers=[ChatService, ChatGateway])
    async with run_server(app, worker) as address, connect(address, "/chat") as client:
        reply = await client.request("send_message", {"text": "hi"})
    assert reply == {"event": "message_ack", "data": {"text": "hi", "status": "delivered"}}


async def test_notifications_gateway_gets_the_provider_singleton(worker: str) -> None:
    @Injectable
    class NotificationsService:
        def __init__(self) -> None:
            self.sent: list[str] = []

    @WebSocketGateway(namespace="/notifications")
    class NotificationsGateway:
        def __init__(self, notifications_service: NotificationsService):
            self.notifications_service = notifications_service

        @SubscribeMessage("notify")
        async def notify(self, text=MessageBody("text")):
            self.notifications_service.sent.append(text)
            return len(self.notifications_service.sent)

    async with serve([NotificationsGateway], [NotificationsService], server=worker) as (
        app,
        address,
    ):
        service = app.get(NotificationsService)
        assert app.get(NotificationsGateway).notifications_service is service
        async with connect(address, "/notifications") as client:
            assert await client.request("notify", {"text": "a"}) == {"event": "notify", "data": 1}
            assert await client.request("notify", {"text": "b"}) == {"event": "notify", "data": 2}
    assert service.sent == ["a", "b"]


# -- Gateway Decorator -------------------------------------------------------------


async def test_namespaces_are_normalised_and_default_to_ws(worker: str) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway:
        @SubscribeMessage("where")
        async def where(self):
            return "events"

    @WebSocketGateway(namespace="chat")
    class ChatGateway:
        @SubscribeMessage("where")
        async def where(self):
            return "chat"

    @WebSocketGateway()
    class DefaultGateway:
        @SubscribeMessage("where")
        async def where(self):
            return "ws"

    @WebSocketGateway("/positional", port=9999, options={"anything": True})
    class PositionalGateway:
        @SubscribeMessage("where")
        async def where(self):
            return "positional"

    gateways = [EventsGateway, ChatGateway, DefaultGateway, PositionalGateway]
    async with serve(gateways, server=worker) as (_, address):
        for path, expected in [
            ("/events", "events"),
            ("/chat", "chat"),
            ("/ws", "ws"),
            ("/positional", "positional"),
        ]:
            async with connect(address, path) as client:
                assert await client.request("where") == {"event": "where", "data": expected}


async def test_bare_decorator_uses_default_namespace(worker: str) -> None:
    @WebSocketGateway
    class BareGateway:
        @SubscribeMessage("where")
        def where(self):
            return "bare"

    async with (
        serve([BareGateway], server=worker) as (_, address),
        connect(address, "/ws") as client,
    ):
        assert await client.request("where") == {"event": "where", "data": "bare"}


# -- Message Protocol ----------------------------------------------------------------


async def test_message_protocol_valid_and_invalid_messages(server: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("join_room")
        async def join_room(self, room=MessageBody("room")):
            return {"event": "joined", "data": {"room": room}}

    async with serve([ChatGateway], server=server) as (_, address):
        async with connect(address, "/chat") as client:
            await client.send_raw(json.dumps({"event": "join_room", "data": {"room": "support"}}))
            assert await client.recv() == {"event": "joined", "data": {"room": "support"}}
            await client.send_raw(json.dumps({"data": {"room": "support"}}))
            assert await client.recv() == {"event": "error", "data": {"message": MISSING_EVENT}}
            # the connection is still usable
            assert (await client.request("join_room", {"room": "x"}))["data"] == {"room": "x"}


# -- Subscribing to Events --------------------------------------------------------------


async def test_ping_handler_async_and_sync(worker: str) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway:
        @SubscribeMessage("ping")
        async def ping(self):
            return {"event": "pong", "data": {}}

        @SubscribeMessage("sync_ping")
        def sync_ping(self):
            return {"event": "pong", "data": {"sync": True}}

    async with (
        serve([EventsGateway], server=worker) as (_, address),
        connect(address, "/events") as client,
    ):
        assert await client.request("ping") == {"event": "pong", "data": {}}
        assert await client.request("sync_ping") == {"event": "pong", "data": {"sync": True}}


# -- Handler Parameters: MessageBody --------------------------------------------------


async def test_message_body_whole_payload_and_one_key(worker: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("send_message")
        async def send_message(self, data=MessageBody()):
            return {"event": "received", "data": data}

        @SubscribeMessage("join_room")
        async def join_room(self, room=MessageBody("room")):
            return {"event": "joined", "data": {"room": room}}

    async with (
        serve([ChatGateway], server=worker) as (_, address),
        connect(address, "/chat") as client,
    ):
        payload = {"text": "hi", "nested": {"list": [1, 2, None]}}
        assert await client.request("send_message", payload) == {
            "event": "received",
            "data": payload,
        }
        assert await client.request("join_room", {"room": "support", "other": 1}) == {
            "event": "joined",
            "data": {"room": "support"},
        }


# -- Pydantic Payloads ------------------------------------------------------------------


class SendMessageDto(BaseModel):
    room: str
    text: str


async def test_pydantic_payload_is_validated_and_converted(server: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("send_message")
        async def send_message(self, data: SendMessageDto = MessageBody()):
            assert isinstance(data, SendMessageDto)
            return {
                "event": "message_ack",
                "data": {"room": data.room, "text": data.text},
            }

    async with serve([ChatGateway], server=server) as (_, address):
        async with connect(address, "/chat") as client:
            valid = {"room": "support", "text": "hello"}
            assert await client.request("send_message", valid) == {
                "event": "message_ack",
                "data": valid,
            }
            error = await client.request("send_message", {"room": "support"})
            assert error["event"] == "error"
            assert "send_message" in error["data"]["message"]
            details = error["data"]["errors"]
            assert [item["loc"] for item in details] == [["text"]]
            assert details[0]["type"] == "missing"
            # the connection stays open after a validation failure
            assert (await client.request("send_message", valid))["event"] == "message_ack"


async def test_pydantic_model_defined_beside_the_gateway_in_a_function(worker: str) -> None:
    """The guide's DTO and gateway pasted together into one scope still validate."""

    class LocalDto(BaseModel):
        room: str
        text: str

    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("send_message")
        async def send_message(self, data: LocalDto = MessageBody()):
            return {"event": "message_ack", "data": {"room": data.room, "text": data.text}}

    async with (
        serve([ChatGateway], server=worker) as (_, address),
        connect(address, "/chat") as client,
    ):
        ok = await client.request("send_message", {"room": "r", "text": "t"})
        assert ok == {"event": "message_ack", "data": {"room": "r", "text": "t"}}
        bad = await client.request("send_message", {"room": 1})
        assert bad["event"] == "error"


# -- ConnectedSocket -------------------------------------------------------------------


async def test_connected_socket_whoami_reports_client_host(server: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("whoami")
        async def whoami(self, client=ConnectedSocket()):
            return {
                "event": "client",
                "data": {"host": client.client.host},
            }

    async with serve([ChatGateway], server=server) as (_, address):
        async with connect(address, "/chat") as client:
            assert await client.request("whoami") == {
                "event": "client",
                "data": {"host": "127.0.0.1"},
            }


async def test_connected_socket_speaks_the_fastapi_websocket_vocabulary(server: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("inspect")
        async def inspect(self, client=ConnectedSocket()):
            client.state.seen = getattr(client.state, "seen", 0) + 1
            await client.send_text(json.dumps({"event": "text", "data": 1}))
            await client.send_bytes(json.dumps({"event": "bytes", "data": 2}).encode())
            await client.emit("emitted", 3)
            return {
                "header": client.headers.get("X-Custom-Header"),
                "query": client.query_params.get("token"),
                "path": client.url.path,
                "port_is_int": isinstance(client.client.port, int),
                "seen": client.state.seen,
                "id": client.id,
            }

    async with serve([ChatGateway], server=server) as (_, address):
        headers = {"x-custom-header": "value"}
        async with connect(address, "/chat?token=abc", additional_headers=headers) as client:
            for seen in (1, 2):
                await client.send("inspect")
                assert await client.recv() == {"event": "text", "data": 1}
                binary = await client.ws.recv()
                assert isinstance(binary, bytes)
                assert json.loads(binary) == {"event": "bytes", "data": 2}
                assert await client.recv() == {"event": "emitted", "data": 3}
                reply = await client.recv()
                assert reply["event"] == "inspect"
                data = reply["data"]
                assert data.pop("id")
                assert data == {
                    "header": "value",
                    "query": "abc",
                    "path": "/chat",
                    "port_is_int": True,
                    "seen": seen,
                }


# -- Handler Responses ------------------------------------------------------------------


async def test_handler_responses_none_dict_and_wrapped_values(worker: str) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway:
        @SubscribeMessage("silent")
        async def silent(self):
            return None

        @SubscribeMessage("ack")
        async def ack(self):
            return {"event": "message_ack", "data": {"id": 1}}

        @SubscribeMessage("count")
        async def count(self):
            return 3

        @SubscribeMessage("text")
        def text(self):
            return "plain"

        @SubscribeMessage("listing")
        async def listing(self):
            return [1, "two"]

        @SubscribeMessage("partial")
        async def partial(self):
            return {"event": "not a message without data"}

        @SubscribeMessage("model")
        async def model(self):
            return SendMessageDto(room="r", text="t")

    async with (
        serve([EventsGateway], server=worker) as (_, address),
        connect(address, "/events") as client,
    ):
        await client.send("silent")
        assert await client.nothing_within(QUIET)
        assert await client.request("ack") == {"event": "message_ack", "data": {"id": 1}}
        assert await client.request("count") == {"event": "count", "data": 3}
        assert await client.request("text") == {"event": "text", "data": "plain"}
        assert await client.request("listing") == {"event": "listing", "data": [1, "two"]}
        assert await client.request("partial") == {
            "event": "partial",
            "data": {"event": "not a message without data"},
        }
        assert await client.request("model") == {
            "event": "model",
            "data": {"room": "r", "text": "t"},
        }


async def test_manual_sends_mixed_with_automatic_response(server: str) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway:
        @SubscribeMessage("notify")
        async def notify(self, client=ConnectedSocket()):
            await client.send_json({"event": "step", "data": {"status": "started"}})
            return {"event": "step", "data": {"status": "done"}}

    async with serve([EventsGateway], server=server) as (_, address):
        async with connect(address, "/events") as client:
            await client.send("notify")
            assert await client.recv() == {"event": "step", "data": {"status": "started"}}
            assert await client.recv() == {"event": "step", "data": {"status": "done"}}


# -- Lifecycle Hooks ----------------------------------------------------------------------


async def test_lifecycle_hooks_run_at_the_documented_times(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    disconnected = CrossEvent()

    @WebSocketGateway(namespace="/events")
    class EventsGateway(
        OnGatewayInit,
        OnGatewayConnection,
        OnGatewayDisconnect,
    ):
        async def after_init(self, server):
            calls.append("after_init")
            assert getattr(self, "server", None) is server  # assigned before the hook
            self.server = server

        async def on_connection(self, client):
            calls.append("on_connection")
            assert client.id in self.server.clients  # accepted and registered
            await client.send_json({"event": "connected", "data": {}})

        async def on_disconnect(self, client):
            calls.append("on_disconnect")
            assert client.id in self.server.clients  # still registered
            print("client disconnected")
            disconnected.set()

        @SubscribeMessage("has_server")
        async def has_server(self):
            return isinstance(self.server, WebSocketServer)

    async with serve([EventsGateway], server=server) as (app, address):
        for _ in range(2):
            disconnected = CrossEvent()
            async with connect(address, "/events") as client:
                assert await client.recv() == {"event": "connected", "data": {}}
                assert await client.request("has_server") == {"event": "has_server", "data": True}
            with anyio.fail_after(TIMEOUT):
                await disconnected.wait()
        gateway_server = app.server_for(EventsGateway)
        await wait_until(lambda: not gateway_server.clients, address)
    assert calls == ["after_init"] + ["on_connection", "on_disconnect"] * 2
    assert capsys.readouterr().out.count("client disconnected") == 2


@pytest.mark.parametrize("server", SERVERS)
async def test_after_init_runs_once_before_concurrent_first_connections_without_lifespan(
    server: str,
) -> None:
    calls: list[str] = []

    @WebSocketGateway(namespace="/events")
    class EventsGateway(OnGatewayInit, OnGatewayConnection):
        async def after_init(self, server):
            calls.append("after_init:start")
            await anyio.sleep(0.05)  # widen the window for a racing second connection
            calls.append("after_init:end")

        async def on_connection(self, client):
            calls.append("on_connection")

        @SubscribeMessage("ping")
        async def ping(self):
            return {"event": "pong", "data": {}}

    async def one_client(address: str) -> None:
        async with connect(address, "/events") as client:
            assert await client.request("ping") == {"event": "pong", "data": {}}

    async with serve([EventsGateway], server=server, lifespan=False) as (_, address):
        async with anyio.create_task_group() as tasks:
            for _ in range(5):
                tasks.start_soon(one_client, address)
    assert calls == ["after_init:start", "after_init:end"] + ["on_connection"] * 5


class DenyAll(BaseGuard):
    def can_activate(self, context):
        return False


ENDINGS = [
    "client_close",
    "client_abort",
    "handler_exception",
    "guard_denial",
    "handler_closes",
    "server_shutdown",
]


@pytest.mark.parametrize("ending", ENDINGS)
async def test_on_disconnect_runs_whatever_ended_the_connection(ending: str, server: str) -> None:
    seen: list[tuple[str, set[str]]] = []
    disconnected = CrossEvent()

    @WebSocketGateway(namespace="/events")
    class EventsGateway(OnGatewayDisconnect):
        async def on_disconnect(self, client):
            seen.append((client.id, self.server.rooms_of(client)))
            disconnected.set()

        @SubscribeMessage("join")
        async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
            await self.server.join(client, room)
            return {"event": "joined", "data": {"room": room}}

        @SubscribeMessage("boom")
        async def boom(self):
            raise RuntimeError("boom")

        @SubscribeMessage("guarded")
        @UseGuards(DenyAll)
        async def guarded(self):
            return "never"

        @SubscribeMessage("bye")
        async def bye(self, client=ConnectedSocket()):
            await client.close(4000)

    async with AsyncExitStack() as outer:
        app, address = await outer.enter_async_context(serve([EventsGateway], server=server))
        gateway_server = app.server_for(EventsGateway)
        async with AsyncExitStack() as inner:
            client = await inner.enter_async_context(connect(address, "/events"))
            await client.request("join", {"room": "lobby"})
            assert await server_read(address, len, gateway_server.clients) == 1
            if ending == "client_close":
                await client.ws.close()
            elif ending == "client_abort":
                client.ws.transport.abort()
            elif ending == "handler_exception":
                await client.send("boom")
                assert await client.expect_close() == 1011
            elif ending == "guard_denial":
                await client.send("guarded")
                assert await client.expect_close() == 1008
            elif ending == "handler_closes":
                await client.send("bye")
                assert await client.expect_close() == 4000
            elif ending == "server_shutdown":
                # Stop the server while the client is still connected.
                await outer.aclose()
            with anyio.fail_after(TIMEOUT):
                await disconnected.wait()
            await wait_until(lambda: not gateway_server.clients, address)
    assert len(seen) == 1
    assert seen[0][1] == {"lobby"}  # rooms are released only after the hook
    assert gateway_server.rooms_of(seen[0][0]) == set()


async def test_failing_on_disconnect_is_logged_and_the_gateway_keeps_serving(
    caplog: pytest.LogCaptureFixture,
    worker: str,
) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway(OnGatewayDisconnect):
        async def on_disconnect(self, client):
            raise ValueError("hook failed")

        @SubscribeMessage("ping")
        async def ping(self):
            return {"event": "pong", "data": {}}

    with caplog.at_level(logging.ERROR, logger="gatewayasgi"):
        async with serve([EventsGateway], server=worker) as (app, address):
            for _ in range(2):
                async with connect(address, "/events") as client:
                    assert await client.request("ping") == {"event": "pong", "data": {}}
            gateway_server = app.server_for(EventsGateway)
            await wait_until(lambda: not gateway_server.clients, address)
            await wait_until(lambda: "hook failed" in caplog.text)


# -- WebSocketServer --------------------------------------------------------------------------


async def test_events_gateway_join_and_publish_update_to_a_room(worker: str) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway:
        @SubscribeMessage("join")
        async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
            await self.server.join(client, room)
            return {"event": "joined", "data": {"room": room}}

        async def publish_update(self, room: str, payload: dict):
            await self.server.to(room).emit("update", payload)

    async with serve([EventsGateway], server=worker) as (app, address):
        async with connect(address, "/events") as member, connect(address, "/events") as other:
            assert await member.request("join", {"room": "r1"}) == {
                "event": "joined",
                "data": {"room": "r1"},
            }
            # a gateway method called from outside a handler runs in the app's loop
            await server_call(
                address, app.get(EventsGateway).publish_update, "r1", {"progress": 50}
            )
            assert await member.recv() == {"event": "update", "data": {"progress": 50}}
            assert await other.nothing_within(QUIET)


async def test_websocket_server_api_table(server: str) -> None:
    @WebSocketGateway(namespace="/events")
    class EventsGateway:
        @SubscribeMessage("my_id")
        async def my_id(self, client=ConnectedSocket()):
            return self.server.get_client_id(client)

        @SubscribeMessage("join")
        async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
            await self.server.join(client, room)
            return {"event": "joined", "data": {"room": room}}

        @SubscribeMessage("leave")
        async def leave(self, room=MessageBody("room"), client=ConnectedSocket()):
            await self.server.leave(client, room)
            return {"event": "left", "data": {"room": room}}

        @SubscribeMessage("shout")
        async def shout(self, data=MessageBody()):
            await self.server.emit("shouted", data)

        @SubscribeMessage("broadcast")
        async def broadcast(self, data=MessageBody()):
            await self.server.broadcast("broadcasted", data)

        @SubscribeMessage("room_say")
        async def room_say(self, data=MessageBody()):
            await self.server.to(data["room"]).emit("room_said", data["text"])

        @SubscribeMessage("room_say_others")
        async def room_say_others(self, data=MessageBody(), client=ConnectedSocket()):
            await self.server.to(data["room"]).except_(client).emit("room_said", data["text"])

        @SubscribeMessage("dm")
        async def dm(self, data=MessageBody()):
            await self.server.to(data["client_id"]).emit("dm", data["text"])

    async with serve([EventsGateway], server=server) as (_, address):
        async with (
            connect(address, "/events") as a,
            connect(address, "/events") as b,
            connect(address, "/events") as c,
        ):
            ids = [(await x.request("my_id"))["data"] for x in (a, b, c)]
            assert len(set(ids)) == 3 and all(isinstance(i, str) and i for i in ids)

            # emit / broadcast reach every client, the sender included
            await a.send("shout", {"n": 1})
            await b.send("broadcast", {"n": 2})
            for x in (a, b, c):
                got = [await x.recv(), await x.recv()]
                assert sorted(got, key=lambda f: f["event"]) == [
                    {"event": "broadcasted", "data": {"n": 2}},
                    {"event": "shouted", "data": {"n": 1}},
                ]

            # rooms: join, to(room).emit, except_(sender), leave
            assert (await a.request("join", {"room": "r"}))["event"] == "joined"
            assert (await b.request("join", {"room": "r"}))["event"] == "joined"
            await c.send("room_say", {"room": "r", "text": "hi room"})
            assert await a.recv() == {"event": "room_said", "data": "hi room"}
            assert await b.recv() == {"event": "room_said", "data": "hi room"}
            await a.send("room_say_others", {"room": "r", "text": "not me"})
            assert await b.recv() == {"event": "room_said", "data": "not me"}
            assert await a.nothing_within(QUIET)
            assert await b.request("leave", {"room": "r"}) == {
                "event": "left",
                "data": {"room": "r"},
            }
            await c.send("room_say", {"room": "r", "text": "after leave"})
            assert await a.recv() == {"event": "room_said", "data": "after leave"}
            assert await b.nothing_within(QUIET)

            # to(client_id).emit reaches that one client only
            await a.send("dm", {"client_id": ids[2], "text": "psst"})
            assert await c.recv() == {"event": "dm", "data": "psst"}
            assert await a.nothing_within(QUIET)
            assert await b.nothing_within(0)


# -- Room Example ---------------------------------------------------------------------------


async def test_room_example(server: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("join_room")
        async def join_room(self, room=MessageBody("room"), client=ConnectedSocket()):
            await self.server.join(client, room)
            await self.server.to(room).emit("room_joined", {"room": room})

        @SubscribeMessage("send_room_message")
        async def send_room_message(self, data=MessageBody()):
            await self.server.to(data["room"]).emit(
                "room_message",
                {"room": data["room"], "text": data["text"]},
            )

    joined = {"event": "room_joined", "data": {"room": "support"}}
    async with serve([ChatGateway], server=server) as (_, address):
        async with (
            connect(address, "/chat") as a,
            connect(address, "/chat") as b,
            connect(address, "/chat") as outsider,
        ):
            assert await a.request("join_room", {"room": "support"}) == joined
            assert await b.request("join_room", {"room": "support"}) == joined
            assert await a.recv() == joined  # b's join reached a too
            await outsider.send("send_room_message", {"room": "support", "text": "help"})
            message = {"event": "room_message", "data": {"room": "support", "text": "help"}}
            assert await a.recv() == message
            assert await b.recv() == message
            assert await outsider.nothing_within(QUIET)


# -- Direct Client Example ----------------------------------------------------------------------


async def test_direct_client_example(worker: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("my_id")
        async def my_id(self, client=ConnectedSocket()):
            return self.server.get_client_id(client)

        @SubscribeMessage("private_message")
        async def private_message(self, data=MessageBody()):
            await self.server.to(data["client_id"]).emit(
                "private_message",
                {"text": data["text"]},
            )

    async with serve([ChatGateway], server=worker) as (_, address):
        async with (
            connect(address, "/chat") as sender,
            connect(address, "/chat") as target,
            connect(address, "/chat") as bystander,
        ):
            target_id = (await target.request("my_id"))["data"]
            await sender.send("private_message", {"client_id": target_id, "text": "hi"})
            assert await target.recv() == {"event": "private_message", "data": {"text": "hi"}}
            assert await sender.nothing_within(QUIET)
            assert await bystander.nothing_within(0)


# -- Guards -------------------------------------------------------------------------------------


class WsTokenGuard(BaseGuard):
    async def can_activate(self, context):
        ws = context.switch_to_ws()
        return ws.get_client().headers.get("x-token") == "secret"


@pytest.mark.parametrize("token", ["secret", "wrong", None])
async def test_class_level_guard_checks_the_token_header(server: str, token: str | None) -> None:
    @WebSocketGateway(namespace="/private")
    @UseGuards(WsTokenGuard)
    class PrivateGateway:
        @SubscribeMessage("secret")
        async def secret(self):
            return {"event": "secret_ack", "data": {}}

    headers = {"x-token": token} if token is not None else {}
    async with serve([PrivateGateway], server=server) as (_, address):
        async with connect(address, "/private", additional_headers=headers) as client:
            reply = await client.request("secret")
            if token == "secret":
                assert reply == {"event": "secret_ack", "data": {}}
                assert (await client.request("secret"))["event"] == "secret_ack"
            else:
                assert reply == {"event": "error", "data": {"message": ACCESS_DENIED}}
                assert await client.expect_close() == 1008


class AdminEventGuard(BaseGuard):
    async def can_activate(self, context):
        ws = context.switch_to_ws()
        data = ws.get_data()
        return data.get("role") == "admin"


async def test_handler_level_guard_checks_the_payload(server: str) -> None:
    @WebSocketGateway(namespace="/admin")
    class AdminGateway:
        @SubscribeMessage("delete_message")
        @UseGuards(AdminEventGuard)
        async def delete_message(self, data=MessageBody()):
            return {"event": "deleted", "data": {"id": data["id"]}}

        @SubscribeMessage("open")
        async def open(self):
            return "unguarded"

    async with serve([AdminGateway], server=server) as (_, address):
        async with connect(address, "/admin") as client:
            assert await client.request("open") == {"event": "open", "data": "unguarded"}
            assert await client.request("delete_message", {"id": 7, "role": "admin"}) == {
                "event": "deleted",
                "data": {"id": 7},
            }
            denied = await client.request("delete_message", {"id": 8, "role": "user"})
            assert denied == {"event": "error", "data": {"message": ACCESS_DENIED}}
            assert await client.expect_close() == 1008


async def test_ws_arguments_host_methods(worker: str) -> None:
    seen: list[Any] = []

    class RecordingGuard(BaseGuard):
        def can_activate(self, context):  # a sync guard
            ws = context.switch_to_ws()
            assert isinstance(ws, WsArgumentsHost)
            seen.append((ws.get_data(), ws.get_event(), ws.get_server(), ws.get_client()))
            return True

    @WebSocketGateway(namespace="/admin")
    class AdminGateway:
        @SubscribeMessage("act")
        @UseGuards(RecordingGuard)
        async def act(self, client=ConnectedSocket()):
            return client.id

    async with (
        serve([AdminGateway], server=worker) as (app, address),
        connect(address, "/admin") as client,
    ):
        reply = await client.request("act", {"k": "v"})
    data, event, server_seen, client_seen = seen[0]
    assert (data, event) == ({"k": "v"}, "act")
    assert server_seen is app.server_for(AdminGateway)
    assert client_seen.id == reply["data"]


# -- Error Frames -------------------------------------------------------------------------------


async def test_error_frames_table(server: str, caplog: pytest.LogCaptureFixture) -> None:
    @WebSocketGateway(namespace="/events")
    @UseGuards(WsTokenGuard)
    class EventsGateway:
        @SubscribeMessage("ok")
        async def ok(self):
            return "fine"

        @SubscribeMessage("crash")
        async def crash(self):
            raise RuntimeError("db password is hunter2")

    secret = {"x-token": "secret"}
    async with serve([EventsGateway], server=server) as (_, address):
        async with connect(address, "/events", additional_headers=secret) as client:
            await client.send_raw("[1, 2]")
            assert await client.recv() == {"event": "error", "data": {"message": NOT_AN_OBJECT}}
            await client.send_raw(json.dumps({"data": {}}))
            assert await client.recv() == {"event": "error", "data": {"message": MISSING_EVENT}}
            assert await client.request("nope") == {
                "event": "error",
                "data": {"message": "No handler for WebSocket event 'nope'"},
            }
            assert await client.request("ok") == {"event": "ok", "data": "fine"}

        async with connect(address, "/events") as client:  # no token
            assert await client.request("ok") == {
                "event": "error",
                "data": {"message": ACCESS_DENIED},
            }
            assert await client.expect_close() == 1008

        with caplog.at_level(logging.ERROR, logger="gatewayasgi"):
            async with connect(address, "/events", additional_headers=secret) as client:
                await client.send("crash")
                raw = await client.ws.recv()
                assert json.loads(raw) == {"event": "error", "data": {"message": INTERNAL_ERROR}}
                assert "hunter2" not in raw and "RuntimeError" not in raw
                assert await client.expect_close() == 1011
    assert "hunter2" in caplog.text  # logged with its traceback, not sent


async def test_domain_specific_error_sent_by_the_handler(worker: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("join_room")
        async def join_room(self, data=MessageBody(), client=ConnectedSocket()):
            if "room" not in data:
                await client.send_json(
                    {
                        "event": "join_error",
                        "data": {"message": "room is required"},
                    }
                )
                return None
            return {"event": "joined", "data": {"room": data["room"]}}

    async with (
        serve([ChatGateway], server=worker) as (_, address),
        connect(address, "/chat") as client,
    ):
        assert await client.request("join_room", {}) == {
            "event": "join_error",
            "data": {"message": "room is required"},
        }
        assert await client.nothing_within(QUIET)
        assert await client.request("join_room", {"room": "a"}) == {
            "event": "joined",
            "data": {"room": "a"},
        }


async def test_ws_exception_answers_with_an_error_frame_and_keeps_the_connection(
    worker: str,
) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("join_room")
        async def join_room(self, room=MessageBody("room")):
            if room == "full":
                raise WsException("room is full", room=room, limit=2)
            return {"event": "joined", "data": {"room": room}}

    async with (
        serve([ChatGateway], server=worker) as (_, address),
        connect(address, "/chat") as client,
    ):
        assert await client.request("join_room", {"room": "full"}) == {
            "event": "error",
            "data": {"message": "room is full", "room": "full", "limit": 2},
        }
        assert (await client.request("join_room", {"room": "ok"}))["event"] == "joined"


# -- Streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        *(name for name in SERVERS if name != "hypercorn-trio"),
        pytest.param(
            "hypercorn-trio",
            marks=pytest.mark.skip(
                reason="the guide's LlmService awaits asyncio.sleep, which runs only on asyncio"
            ),
        ),
    ],
)
async def test_streaming_tokens_from_an_injected_llm_service(server: str) -> None:
    @Injectable
    class LlmService:
        async def stream(self, prompt: str):
            assert prompt == "Write a title"
            for token in ("Real", "-time"):
                await asyncio.sleep(0)
                yield token

    @WebSocketGateway(namespace="/ai")
    class AgentGateway:
        def __init__(self, llm_service: LlmService):
            self.llm_service = llm_service

        @SubscribeMessage("prompt")
        async def handle_prompt(self, data=MessageBody(), client=ConnectedSocket()):
            async for token in self.llm_service.stream(data["prompt"]):
                await client.send_json({"event": "token", "data": token})

            return {"event": "done", "data": {}}

    async with serve([AgentGateway], [LlmService], server) as (_, address):
        async with connect(address, "/ai") as client:
            await client.send_raw(
                json.dumps({"event": "prompt", "data": {"prompt": "Write a title"}})
            )
            frames = [await client.recv() for _ in range(3)]
    assert frames == [
        {"event": "token", "data": "Real"},
        {"event": "token", "data": "-time"},
        {"event": "done", "data": {}},
    ]


# -- CLI Generation -----------------------------------------------------------------------------


async def test_generated_gateway_file_serves_ping(tmp_path: Any, worker: str) -> None:
    import importlib.util

    from gatewayasgi.cli import main

    assert main(["generate", "gateway", "-n", "chat", "--path", str(tmp_path)]) == 0
    spec = importlib.util.spec_from_file_location(
        "generated_chat_gateway", tmp_path / "chat_gateway.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    async with run_server(module.app, worker) as address, connect(address, "/chat") as client:
        assert await client.request("ping", {"x": 1}) == {"event": "pong", "data": {"x": 1}}


async def test_generated_gateway_code_as_printed_in_the_guide(worker: str) -> None:
    @WebSocketGateway(namespace="/chat")
    class ChatGateway:
        @SubscribeMessage("ping")
        async def ping(self, data=MessageBody()):
            return {"event": "pong", "data": data}

    app = GatewayMiddleware(None, gateways=[], providers=[ChatGateway])
    async with run_server(app, worker) as address, connect(address, "/chat") as client:
        assert await client.request("ping", "hi") == {"event": "pong", "data": "hi"}


# -- Testing Gateways ----------------------------------------------------------------------------


async def test_testing_gateways_pattern_with_uvicorn_and_lifespan_off() -> None:
    """The guide's own test shape; after_init must still run before the first connection."""
    order: list[str] = []

    @Injectable
    class ChatService:
        def acknowledge(self, text: str) -> dict:
            return {"text": text, "status": "delivered"}

    @WebSocketGateway(namespace="/chat")
    class ChatGateway(OnGatewayInit, OnGatewayConnection):
        def __init__(self, chat_service: ChatService):
            self.chat_service = chat_service

        async def after_init(self, server):
            order.append("after_init")

        async def on_connection(self, client):
            order.append("on_connection")

        @SubscribeMessage("send_message")
        async def handle_message(self, data=MessageBody()):
            return {"event": "message_ack", "data": self.chat_service.acknowledge(data["text"])}

    http_server = GatewayMiddleware(None, gateways=[ChatGateway], providers=[ChatService])
    port = free_port()

    config = uvicorn.Config(
        http_server,
        host="127.0.0.1",
        port=port,
        log_level="critical",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    try:
        with anyio.fail_after(TIMEOUT):
            while not server.started:
                await asyncio.sleep(0.01)

            async with websockets.connect(f"ws://127.0.0.1:{port}/chat") as socket:
                await socket.send(json.dumps({"event": "send_message", "data": {"text": "hello"}}))
                response = json.loads(await socket.recv())

        assert response["event"] == "message_ack"
    finally:
        server.should_exit = True
        with anyio.fail_after(TIMEOUT):
            await task
    assert order == ["after_init", "on_connection"]


# -- Complete Example ------------------------------------------------------------------------------


async def test_complete_example(server: str) -> None:
    @Injectable
    class ChatService:
        def save(self, room: str, text: str) -> dict:
            return {"room": room, "text": text, "status": "saved"}

    class WsTokenGuard(BaseGuard):
        async def can_activate(self, context):
            ws = context.switch_to_ws()
            return ws.get_client().headers.get("x-token") == "secret"

    @WebSocketGateway(namespace="/chat")
    @UseGuards(WsTokenGuard)
    class ChatGateway(OnGatewayConnection):
        def __init__(self, chat_service: ChatService):
            self.chat_service = chat_service

        async def on_connection(self, client):
            await client.send_json({"event": "connected", "data": {}})

        @SubscribeMessage("join")
        async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
            await self.server.join(client, room)
            return {"event": "joined", "data": {"room": room}}

        @SubscribeMessage("message")
        async def message(self, data=MessageBody()):
            saved = self.chat_service.save(data["room"], data["text"])
            await self.server.to(data["room"]).emit("message", saved)
            return {"event": "message_ack", "data": saved}

    secret = {"x-token": "secret"}
    saved = {"room": "lobby", "text": "hello", "status": "saved"}
    async with serve([ChatGateway], [ChatService], server) as (_, address):
        async with (
            connect(address, "/chat", additional_headers=secret) as alice,
            connect(address, "/chat", additional_headers=secret) as bob,
        ):
            for client in (alice, bob):
                assert await client.recv() == {"event": "connected", "data": {}}
                assert await client.request("join", {"room": "lobby"}) == {
                    "event": "joined",
                    "data": {"room": "lobby"},
                }
            await alice.send("message", {"room": "lobby", "text": "hello"})
            assert await alice.recv() == {"event": "message", "data": saved}
            assert await alice.recv() == {"event": "message_ack", "data": saved}
            assert await bob.recv() == {"event": "message", "data": saved}
            assert await bob.nothing_within(QUIET)

        async with connect(address, "/chat") as intruder:
            assert await intruder.recv() == {"event": "connected", "data": {}}
            assert await intruder.request("join", {"room": "lobby"}) == {
                "event": "error",
                "data": {"message": ACCESS_DENIED},
            }
            assert await intruder.expect_close() == 1008


# -- Acknowledgements (DESIGN.md wire protocol) ---------------------------------------------------


@pytest.mark.parametrize("frame_id", ["req-1", 7, 0])
async def test_frame_id_is_echoed_on_replies_and_error_frames(
    frame_id: str | int, server: str
) -> None:
    class Dto(BaseModel):
        n: int

    @WebSocketGateway(namespace="/acks")
    class AckGateway:
        @SubscribeMessage("count")
        async def count(self):
            return 3

        @SubscribeMessage("ack")
        async def ack(self):
            return {"event": "message_ack", "data": {"ok": True}}

        @SubscribeMessage("manual")
        async def manual(self, client=ConnectedSocket()):
            await client.send_json({"event": "step", "data": 1})
            return "done"

        @SubscribeMessage("typed")
        async def typed(self, data: Dto = MessageBody()):
            return data.n

        @SubscribeMessage("refuse")
        async def refuse(self):
            raise WsException("refused", reason="test")

        @SubscribeMessage("guarded")
        @UseGuards(DenyAll)
        async def guarded(self):
            return "never"

        @SubscribeMessage("crash")
        async def crash(self):
            raise RuntimeError("internal")

    async with serve([AckGateway], server=server) as (_, address):
        async with connect(address, "/acks") as client:
            assert await client.request("count", id=frame_id) == {
                "event": "count",
                "data": 3,
                "id": frame_id,
            }
            assert await client.request("ack", id=frame_id) == {
                "event": "message_ack",
                "data": {"ok": True},
                "id": frame_id,
            }
            await client.send("manual", id=frame_id)
            assert await client.recv() == {"event": "step", "data": 1}  # a manual send
            assert await client.recv() == {"event": "manual", "data": "done", "id": frame_id}
            assert await client.request("typed", {"n": "4"}, id=frame_id) == {
                "event": "typed",
                "data": 4,
                "id": frame_id,
            }
            invalid = await client.request("typed", {"n": "x"}, id=frame_id)
            assert (invalid["event"], invalid["id"]) == ("error", frame_id)
            assert await client.request("unknown", id=frame_id) == {
                "event": "error",
                "data": {"message": "No handler for WebSocket event 'unknown'"},
                "id": frame_id,
            }
            await client.send_raw(json.dumps({"data": 1, "id": frame_id}))
            assert await client.recv() == {
                "event": "error",
                "data": {"message": MISSING_EVENT},
                "id": frame_id,
            }
            assert await client.request("refuse", id=frame_id) == {
                "event": "error",
                "data": {"message": "refused", "reason": "test"},
                "id": frame_id,
            }
            assert await client.request("count") == {"event": "count", "data": 3}  # no id
            assert await client.request("guarded", id=frame_id) == {
                "event": "error",
                "data": {"message": ACCESS_DENIED},
                "id": frame_id,
            }
            assert await client.expect_close() == 1008
        async with connect(address, "/acks") as client:
            assert await client.request("crash", id=frame_id) == {
                "event": "error",
                "data": {"message": INTERNAL_ERROR},
                "id": frame_id,
            }
            assert await client.expect_close() == 1011
