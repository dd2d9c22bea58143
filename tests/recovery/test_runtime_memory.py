"""Session recovery in one process (history and sessions in memory), on real servers.

The client side is the ``websockets`` package driven by hand, so these tests pin the wire
protocol of ``docs/recovery.md`` itself: the ``$session`` frame, offsets, the resume
credential offered as a subprotocol.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
import websockets

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.recovery import Recovery
from tests.recovery.cut_proxy import CutProxy
from tests.recovery.wire import Session
from tests.servers import TIMEOUT, run_server, server_read

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn", "hypercorn-trio"]


def chat_gateway(recovery: Any = None, **options: Any) -> type:
    @WebSocketGateway("/chat", recovery=recovery, **options)
    class Chat:
        def __init__(self) -> None:
            self.connected: list[tuple[str, bool]] = []
            self.disconnected: list[str] = []
            self.rooms_at_end: dict[str, list[str]] = {}

        def on_connection(self, client: Any) -> None:
            self.connected.append((client.id, client.recovered))
            client.state.visits = client.state._data.get("visits", 0) + 1

        def on_disconnect(self, client: Any) -> None:
            self.disconnected.append(client.id)
            self.rooms_at_end[client.id] = sorted(self.server.rooms_of(client))

        @SubscribeMessage("join")
        async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            await self.server.join(client, room)
            return {"joined": room, "visits": client.state.visits}

        @SubscribeMessage("say")
        async def say(self, data: Any = MessageBody()) -> Any:
            await self.server.to_room(data["room"]).emit("said", data["n"])
            return "ok"

        @SubscribeMessage("burst")
        async def burst(self, data: Any = MessageBody()) -> Any:
            for n in range(data["count"]):
                await self.server.to_room(data["room"]).emit("said", n)
            return "done"

        @SubscribeMessage("me")
        async def me(self, client: Any = ConnectedSocket()) -> Any:
            await client.emit("direct", client.id)
            return None

    return Chat


async def test_reserved_event_names_are_a_startup_error() -> None:
    @WebSocketGateway("/x")
    class Bad:
        @SubscribeMessage("$session")
        def handler(self) -> None: ...

    with pytest.raises(ConfigurationError, match=r"reserved for the protocol"):
        GatewayMiddleware(gateways=[Bad])


async def test_recovery_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="window"):
        Recovery(window=0)
    with pytest.raises(ConfigurationError, match="recovery must be a Recovery"):
        GatewayMiddleware(gateways=[chat_gateway()], recovery=120)  # type: ignore[arg-type]


@pytest.mark.parametrize("server", SERVERS)
async def test_a_cut_client_resumes_with_its_id_rooms_state_and_every_missed_frame(
    server: str,
) -> None:
    gateway = chat_gateway(Recovery(window=30))
    app = GatewayMiddleware(gateways=[gateway])
    chat = app.get(gateway)
    async with run_server(app, server) as address:
        member = Session(address)
        new = await member.open()
        assert new["recovered"] is False and new["reason"] is None
        assert new["id"].startswith("c_") and len(new["token"]) == 43
        assert await member.request("join", "r") == {"joined": "r", "visits": 1}
        sender = Session(address)
        await sender.open()
        await sender.request("say", {"room": "r", "n": -1})
        first = await member.recv()
        assert first["data"] == -1 and first["offset"]

        member.cut()
        # 200 frames while the member is away; the sender's own connection stays up.
        assert await sender.request("burst", {"room": "r", "count": 200}) == "done"
        resumed = await member.open(resume=True)
        assert resumed["recovered"] is True and resumed["id"] == new["id"]
        got = [(await member.recv())["data"] for _ in range(200)]
        assert got == list(range(200))
        # Live frames follow, none doubled; the rooms and state came back with the id.
        await sender.request("say", {"room": "r", "n": 1000})
        assert (await member.recv())["data"] == 1000
        assert await member.request("join", "r", 2) == {"joined": "r", "visits": 2}
        assert await server_read(address, list, chat.connected) == [
            (new["id"], False),
            (sender.session["id"], False),
            (new["id"], True),
        ]
        assert await server_read(address, list, chat.disconnected) == []  # a blink is not one
        await member.ws.close()
        await sender.ws.close()


@pytest.mark.parametrize("server", SERVERS)
async def test_a_failed_resume_says_why_and_starts_a_new_session(server: str) -> None:
    gateway = chat_gateway(Recovery(window=30, max_frames=50, client_share=1.0))
    async with run_server(GatewayMiddleware(gateways=[gateway]), server) as address:
        member, sender, other = Session(address), Session(address), Session(address)
        old = await member.open()
        await member.request("join", "r")
        await sender.open()
        await other.open()
        member.cut()
        # Past max_frames: two clients, since one may fill at most its share of it.
        await sender.request("burst", {"room": "r", "count": 30})
        await other.request("burst", {"room": "r", "count": 30})
        trimmed = await member.open(resume=True)
        assert trimmed["recovered"] is False and trimmed["reason"] == "trimmed"
        assert trimmed["id"] != old["id"]

        member.session = {**old, "epoch": "0" * 32}
        assert (await member.open(resume=True))["reason"] == "epoch"
        member.session = {**old, "token": "A" * 43}
        assert (await member.open(resume=True))["reason"] == "expired"
        member.session = {**old, "id": "nobody"}
        assert (await member.open(resume=True))["reason"] == "invalid"


@pytest.mark.parametrize("server", SERVERS)
async def test_a_client_that_says_end_ends_its_session_at_once(server: str) -> None:
    gateway = chat_gateway(Recovery(window=60))  # far longer than the test may wait
    app = GatewayMiddleware(gateways=[gateway])
    chat = app.get(gateway)
    async with run_server(app, server) as address:
        clean = Session(address)
        first = await clean.open()
        # hypercorn reports a client's 1000 as 1006: ``$end`` says it on every server.
        await clean.ws.send(json.dumps({"event": "$end"}))
        await clean.ws.close()
        with anyio.fail_after(TIMEOUT):
            while first["id"] not in await server_read(address, list, chat.disconnected):
                await anyio.sleep(0.01)
        assert (await clean.open(resume=True))["reason"] == "expired"


@pytest.mark.parametrize("server", SERVERS)
async def test_a_session_expires_after_its_window_and_on_disconnect_runs_once(
    server: str,
) -> None:
    gateway = chat_gateway(Recovery(window=0.5))
    app = GatewayMiddleware(gateways=[gateway])
    chat = app.get(gateway)
    async with run_server(app, server) as address:

        async def disconnected() -> list[str]:
            return await server_read(address, list, chat.disconnected)

        blink = Session(address)
        second = await blink.open()
        await blink.request("join", "r")
        blink.cut()
        await anyio.sleep(0.1)
        assert second["id"] not in await disconnected()  # waiting for its client
        with anyio.fail_after(TIMEOUT):
            while second["id"] not in await disconnected():
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
        assert (await disconnected()).count(second["id"]) == 1
        # The hook saw the session's rooms; they are gone afterwards.
        assert await server_read(address, dict, chat.rooms_at_end) == {second["id"]: ["r"]}
        assert await server_read(address, chat.server.rooms_of, second["id"]) == set()
        assert (await blink.open(resume=True))["reason"] == "expired"


@pytest.mark.parametrize("server", SERVERS)
async def test_through_a_proxy_cut_500_frames_arrive_once_in_order(server: str) -> None:
    gateway = chat_gateway(Recovery(window=30))
    async with run_server(GatewayMiddleware(gateways=[gateway]), server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            member, sender = Session(proxy.address), Session(address)
            first = await member.open()
            await member.request("join", "r")
            await sender.open()
            await sender.ws.send(
                json.dumps({"event": "burst", "data": {"room": "r", "count": 500}, "id": 9})
            )
            received = [(await member.recv())["data"] for _ in range(20)]
            assert proxy.cut() == 1  # mid-burst
            assert await sender.reply(9) == "done"
            resumed = await member.open(resume=True)
            assert resumed["recovered"] and resumed["id"] == first["id"]
            while len(received) < 500:
                received.append((await member.recv())["data"])
            assert received == list(range(500))
            await sender.request("say", {"room": "r", "n": "live"})
            assert (await member.recv())["data"] == "live"


@pytest.mark.parametrize("server", SERVERS)
async def test_direct_emits_are_recoverable_and_gateways_without_recovery_are_unchanged(
    server: str,
) -> None:
    recovering, plain = chat_gateway(Recovery()), chat_gateway(False)
    plain = WebSocketGateway("/plain")(type("Plain", (plain,), {}))
    async with run_server(GatewayMiddleware(gateways=[recovering, plain]), server) as address:
        member = Session(address)
        await member.open()
        await member.ws.send(json.dumps({"event": "me"}))
        direct = await member.recv()
        assert direct["event"] == "direct" and direct["offset"]
        async with websockets.connect(f"ws://{address}/plain", open_timeout=TIMEOUT) as ws:
            await ws.send(json.dumps({"event": "me"}))
            with anyio.fail_after(TIMEOUT):
                frame = json.loads(await ws.recv())
            assert frame["event"] == "direct" and "offset" not in frame  # no $session first


@pytest.mark.parametrize("server", SERVERS)
async def test_a_resume_while_the_old_socket_seems_alive_takes_the_session_over(
    server: str,
) -> None:
    gateway = chat_gateway(Recovery(window=30))
    app = GatewayMiddleware(gateways=[gateway])
    chat = app.get(gateway)
    async with run_server(app, server) as address:
        old, sender = Session(address), Session(address)
        first = await old.open()
        await old.request("join", "r")
        await sender.open()
        await sender.request("say", {"room": "r", "n": 1})
        assert (await old.recv())["data"] == 1
        new = Session(address)
        new.session, new.offset = old.session, old.offset
        resumed = await new.open(resume=True)  # the old socket was never closed
        assert resumed["recovered"] and resumed["id"] == first["id"]
        await sender.request("say", {"room": "r", "n": 2})
        assert (await new.recv())["data"] == 2
        with anyio.fail_after(TIMEOUT):
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    assert json.loads(await old.ws.recv())["data"] != 2
        assert await server_read(address, list, chat.disconnected) == []
        await new.ws.close()
