"""Session recovery under attack, on real servers (issue 17, items 3, 5, 6 and 7).

Each test is an attack that worked before this round: taking over another identity's
session, replaying an old credential, reading a room's history from before the session
or its join, filling memory with waiting sessions, evicting or trimming everyone else.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
import websockets

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from tests.recovery.wire import Session
from tests.servers import TIMEOUT, run_server, server_read

pytestmark = pytest.mark.anyio

SERVERS = ("hypercorn", "uvicorn")


class WhoGuard(BaseGuard):
    """The handshake names its user (``?user=``), as a real auth guard would from a token."""

    async def can_activate(self, context: Any) -> bool:
        client = context.switch_to_ws().get_client()
        client.state.identity = client.query_params.get("user")
        return True


def gateway(recovery: Recovery) -> type:
    @WebSocketGateway("/chat", recovery=recovery, handshake_guards=[WhoGuard])
    class Chat:
        def __init__(self) -> None:
            self.disconnected: list[str] = []

        def on_disconnect(self, client: Any) -> None:
            self.disconnected.append(client.id)

        @SubscribeMessage("join")
        async def join(self, room: str = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            await self.server.join(client, room)
            return "joined"

        @SubscribeMessage("rooms")
        async def rooms(
            self, names: list[str] = MessageBody(), client: Any = ConnectedSocket()
        ) -> Any:
            for name in names:
                await self.server.join(client, name)
            return len(names)

        @SubscribeMessage("keep")
        async def keep(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            client.state.blob = data
            return "kept"

        @SubscribeMessage("say")
        async def say(self, data: Any = MessageBody()) -> Any:
            await self.server.to_room(data["room"]).emit("said", data["n"])
            return "ok"

        @SubscribeMessage("whoami")
        async def whoami(self, client: Any = ConnectedSocket()) -> Any:
            return {"id": client.id, "user": client.state.identity}

    return Chat


class User(Session):
    """A recovering client whose handshake names its user; ``source`` picks the local
    address (loopback answers on all of 127.0.0.0/8), so one test has several clients
    with addresses of their own."""

    def __init__(self, address: str, user: str, source: str = "127.0.0.1") -> None:
        super().__init__(address, f"/chat?user={user}")
        self.source = source
        self.closed_with: int | None = None

    async def open(
        self, resume: bool = False, credential: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        protocols = ["gatewayasgi"]
        offered = credential or ({**self.session, "offset": self.offset} if resume else None)
        if offered is not None:
            protocols.append("gatewayasgi.resume.{id}.{token}.{epoch}.{offset}".format(**offered))
        self.ws = await websockets.connect(
            f"ws://{self.address}{self.path}",
            subprotocols=protocols,
            open_timeout=TIMEOUT,
            local_addr=(self.source, 0),
        )
        first = await self.recv_raw()
        assert first["event"] == "$session", first
        self.session = first["data"]
        self.offset = self.session["offset"]
        return self.session

    async def close_code(self) -> int | None:
        """Read until the server closes; the code it closed with."""
        with anyio.fail_after(TIMEOUT):
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None


@pytest.mark.parametrize("server", SERVERS)
async def test_a_resume_with_another_identity_starts_a_new_session(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway(Recovery(window=30))])
    async with run_server(app, server) as address:
        alice = User(address, "alice")
        session = await alice.open()
        assert await alice.request("keep", "alice's secret") == "kept"
        assert await alice.request("join", "private") == "joined"
        # bob holds alice's credential (stolen, or leaked) but authenticates as bob
        bob = User(address, "bob")
        taken = await bob.open(credential={**session, "offset": alice.offset})
        assert taken["recovered"] is False and taken["reason"] == "invalid"
        assert taken["id"] != session["id"]
        assert await bob.request("whoami", None) == {"id": taken["id"], "user": "bob"}
        # alice is untouched: still connected, same id, same state
        assert await alice.request("whoami", None, frame_id=2) == {
            "id": session["id"],
            "user": "alice",
        }
        assert await alice.request("keep", "still mine", frame_id=3) == "kept"


@pytest.mark.parametrize("server", SERVERS)
async def test_the_token_rotates_on_every_resume_and_the_old_one_stops_working(
    server: str,
) -> None:
    app = GatewayMiddleware(gateways=[gateway(Recovery(window=30))])
    async with run_server(app, server) as address:
        alice = User(address, "alice")
        first = await alice.open()
        old = {**first, "offset": alice.offset}
        alice.cut()
        resumed = await alice.open(resume=True)
        assert resumed["recovered"] is True and resumed["id"] == first["id"]
        assert resumed["token"] != first["token"]
        alice.cut()
        # the old credential no longer resumes, even for alice herself
        replayed = await User(address, "alice").open(credential=old)
        assert replayed["recovered"] is False and replayed["reason"] == "expired"
        # the new one does
        again = await alice.open(resume=True)
        assert again["recovered"] is True and again["id"] == first["id"]


@pytest.mark.parametrize("server", SERVERS)
async def test_a_takeover_closes_the_previous_holder_with_4409(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway(Recovery(window=30))])
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        first, second = User(address, "alice"), User(address, "alice")
        session = await first.open()
        taken = await second.open(credential={**session, "offset": first.offset})
        assert taken["recovered"] is True and taken["id"] == session["id"]
        assert await first.close_code() == 4409
        # the session goes on in the new holder, and did not end (no on_disconnect)
        assert await second.request("whoami", None) == {"id": session["id"], "user": "alice"}
        assert session["id"] not in await server_read(address, list, chat.disconnected)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_resume_never_replays_frames_from_before_the_session_or_the_join(
    server: str,
) -> None:
    app = GatewayMiddleware(gateways=[gateway(Recovery(window=30))])
    async with run_server(app, server) as address:
        sender = User(address, "sender")
        await sender.open()
        for n in range(5):  # before the victim's session exists
            assert await sender.request("say", {"room": "r", "n": f"old-{n}"}, frame_id=n) == "ok"
        spy = User(address, "spy")
        session = await spy.open()
        # a forged credential asking for everything since offset 0
        spy.cut()
        forged = await spy.open(credential={**session, "offset": "0"})
        assert forged["recovered"] is True
        assert await spy.request("join", "r") == "joined"
        # frames of a room from before the session joined it stay out of its replay too
        assert await sender.request("say", {"room": "later", "n": "pre-join"}, frame_id=7) == "ok"
        assert await spy.request("join", "later") == "joined"
        spy.cut()
        assert await sender.request("say", {"room": "r", "n": "after-join"}) == "ok"
        resumed = await spy.open(credential={**forged, "offset": "0"})
        assert resumed["recovered"] is True
        got = (await spy.recv())["data"]
        assert got == "after-join"
        # nothing else was replayed: the next frame is the reply to a new request
        assert await spy.request("whoami", None, frame_id=9) == {"id": session["id"], "user": "spy"}


@pytest.mark.parametrize("server", SERVERS)
async def test_a_waiting_session_over_max_session_bytes_is_not_kept(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway(Recovery(window=30, max_session_bytes=64 * 1024))])
    chat = app.get(app.tables[0].cls)
    async with run_server(app, server) as address:
        small, big = User(address, "small"), User(address, "big")
        await small.open()
        session = await big.open()
        assert await big.request("keep", "x" * 100_000) == "kept"  # 100 KB of state
        assert await small.request("keep", "y" * 1_000) == "kept"
        big.cut()
        small.cut()
        with anyio.fail_after(TIMEOUT):  # ended at once: on_disconnect ran
            while session["id"] not in await server_read(address, list, chat.disconnected):
                await anyio.sleep(0.01)
        assert (await big.open(resume=True))["reason"] == "expired"
        assert (await small.open(resume=True))["recovered"] is True


@pytest.mark.parametrize("server", SERVERS)
async def test_one_address_churning_sessions_evicts_only_its_own(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    recovery = Recovery(window=30, max_sessions=40, max_sessions_per_address=5)
    app = GatewayMiddleware(gateways=[gateway(recovery)])
    async with run_server(app, server) as address:
        victim = User(address, "victim", source="127.0.0.2")
        await victim.open()
        assert await victim.request("join", "v") == "joined"
        victim.cut()
        caplog.set_level(logging.INFO, logger="gatewayasgi")
        for n in range(60):  # connect-and-cut from another address
            attacker = User(address, f"attacker{n}")
            await attacker.open()
            attacker.cut()
        keeper = app.runners["/chat"].keeper
        assert keeper is not None
        with anyio.fail_after(TIMEOUT):  # every cut seen by the server
            while await server_read(address, lambda: keeper.waiting) < 6:
                await anyio.sleep(0.01)
        assert await server_read(address, lambda: keeper.waiting) == 6  # 5 + the victim
        resumed = await victim.open(resume=True)
        assert resumed["recovered"] is True, resumed
        evictions = [r for r in caplog.records if "ended early" in r.getMessage()]
        assert 1 <= len(evictions) <= 2, [r.getMessage() for r in evictions]
        assert "/chat" in evictions[0].getMessage()


@pytest.mark.parametrize("server", SERVERS)
async def test_one_client_cannot_trim_the_history_of_others(server: str) -> None:
    app = GatewayMiddleware(gateways=[gateway(Recovery(window=60, max_frames=200))])
    async with run_server(app, server) as address:
        victim, sender, attacker = User(address, "v"), User(address, "s"), User(address, "a")
        await victim.open()
        assert await victim.request("join", "v") == "joined"
        await sender.open()
        await attacker.open()
        victim.cut()
        assert await sender.request("say", {"room": "v", "n": "for you"}) == "ok"
        refused = 0
        for n in range(300):  # tiny emits to an empty room, past max_frames
            await attacker.ws.send(
                json.dumps({"event": "say", "data": {"room": "empty", "n": n}, "id": n})
            )
        for _ in range(300):
            frame = await attacker.recv()
            if frame["event"] == "error":
                assert "History quota exceeded" in frame["data"]["message"]
                refused += 1
        assert 240 <= refused <= 260  # a quarter of max_frames went through
        resumed = await victim.open(resume=True)
        assert resumed["recovered"] is True, resumed
        assert (await victim.recv())["data"] == "for you"
