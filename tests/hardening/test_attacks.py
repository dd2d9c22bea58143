"""Issue 9's defects, each reproduced as an attacker would, on real servers.

Every test here failed on the runtime before v2: a room named after a client id leaked
that client's private messages, invalid payloads were amplified into huge error frames,
``max_connections`` let every handshake through an async guard, the outbox budget did
not exist, ``leave`` with a non-string room closed the connection 1011, and an
``Emitter`` namespace spelled like a gateway's reached nobody.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
import websockets
from pydantic import BaseModel

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
    WebSocketServer,
)
from gatewayasgi.brokers import MemoryBroker
from gatewayasgi.brokers.memory import MemoryHub
from gatewayasgi.emitter import Emitter
from gatewayasgi.protocol.codec import MAX_ERROR_FRAME
from tests.reliability import eventually, gateway_errors, stalled_client
from tests.servers import TIMEOUT, connect, run_server, server_call, server_read

pytestmark = pytest.mark.anyio

SERVERS = ["hypercorn", "uvicorn"]


class Items(BaseModel):
    values: list[int]


@WebSocketGateway("/attack")
class AttackGateway:
    server: WebSocketServer

    @SubscribeMessage("whoami")
    def whoami(self, client=ConnectedSocket()):
        return client.id

    @SubscribeMessage("join")
    async def join(self, room=MessageBody("room"), client=ConnectedSocket()):
        await self.server.join(client, room)
        await self.server.to(room).emit("joined", {"room": room, "client": client.id})
        return "ok"

    @SubscribeMessage("leave")
    async def leave(self, room=MessageBody("room"), client=ConnectedSocket()):
        await self.server.leave(client, room)
        return "left"

    @SubscribeMessage("dm")
    async def direct(self, data=MessageBody()):
        await self.server.to(data["to"]).emit("dm", data["text"])
        return "sent"

    @SubscribeMessage("say")
    async def say(self, data=MessageBody()):
        await self.server.to_room(data["room"]).emit("said", data["text"])
        return "said"

    @SubscribeMessage("items")
    def items(self, body: Items = MessageBody()):
        return len(body.values)


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def app(**settings: Any) -> GatewayMiddleware:
    return GatewayMiddleware(None, gateways=[AttackGateway], **settings)


# -- 1. client ids and room names never collide ------------------------------------


async def test_a_room_named_after_a_client_id_cannot_receive_its_direct_messages(
    server: str,
) -> None:
    async with (
        run_server(app(), server) as address,
        connect(address, "/attack") as victim,
        connect(address, "/attack") as attacker,
        connect(address, "/attack") as friend,
    ):
        victim_id = (await victim.request("whoami"))["data"]
        refused = await attacker.request("join", {"room": victim_id})
        assert refused["event"] == "error"
        assert "reserved" in refused["data"]["message"]
        # The seed's to(client_id) still reaches exactly that client.
        assert (await friend.request("dm", {"to": victim_id, "text": "psst"}))["data"] == "sent"
        assert await victim.recv() == {"event": "dm", "data": "psst"}
        assert await attacker.nothing_within(0.3)
        # A handler addressing client-chosen rooms with to_room() cannot be aimed at a client.
        aimed = await attacker.request("say", {"room": victim_id, "text": "hi"})
        assert aimed["event"] == "error"
        assert await victim.nothing_within(0.3)


async def test_across_the_backplane_rooms_and_clients_stay_apart(server: str) -> None:
    """Two nodes on one hub: a direct message crosses nodes to the client only."""
    hub = MemoryHub()
    first = app(broker=MemoryBroker(hub))
    second = app(broker=MemoryBroker(hub))
    async with (
        run_server(first, server) as address_a,
        run_server(second, server) as address_b,
        connect(address_a, "/attack") as victim,
        connect(address_b, "/attack") as attacker,
        connect(address_b, "/attack") as sender,
    ):
        victim_id = (await victim.request("whoami"))["data"]
        assert (await attacker.request("join", {"room": victim_id}))["event"] == "error"
        assert (await attacker.request("join", {"room": "lobby"}))["event"] == "joined"
        assert (await attacker.recv())["data"] == "ok"
        assert (await sender.request("dm", {"to": victim_id, "text": "x-node"}))["data"] == "sent"
        assert await victim.recv() == {"event": "dm", "data": "x-node"}
        assert await attacker.nothing_within(0.3)


# -- 2. validation errors are bounded and budgeted ------------------------------------


async def test_a_huge_invalid_payload_gets_a_small_error_frame(server: str) -> None:
    count = 100_000
    raw = '{"event":"items","id":"big","data":{"values":[' + ",".join(['"x"'] * count) + "]}}"
    async with run_server(app(), server) as address, connect(address, "/attack") as client:
        await client.send_raw(raw)
        with anyio.fail_after(TIMEOUT):
            text = await client.ws.recv()
        assert len(text.encode()) <= MAX_ERROR_FRAME
        reply = json.loads(text)
        assert reply["id"] == "big" and reply["event"] == "error"
        assert len(reply["data"]["errors"]) == 10
        assert reply["data"]["error_count"] == count
        assert all("input" not in error for error in reply["data"]["errors"])
        assert (await client.request("items", {"values": [1, 2]}))["data"] == 2


async def test_invalid_payloads_spend_from_the_error_budget(server: str) -> None:
    async with (
        run_server(app(error_burst=3, error_rate_limit=0.01), server) as address,
        connect(address, "/attack") as client,
    ):
        for _ in range(6):
            await client.send("items", {"values": ["nope"]})
        replies = [await client.recv() for _ in range(4)]
        assert [r["data"]["message"] for r in replies[:3]] == [
            "Invalid payload for WebSocket event 'items'"
        ] * 3
        assert replies[3]["data"]["message"] == "Rate limit exceeded"
        assert await client.nothing_within(0.3)


# -- 3. max_connections holds with an async handshake guard -----------------------


class SlowGuard(BaseGuard):
    async def can_activate(self, context: Any) -> bool:
        await anyio.sleep(0.05)
        return True


@WebSocketGateway("/guarded", handshake_guards=[SlowGuard])
class GuardedGateway:
    @SubscribeMessage("ping")
    def ping(self):
        return "pong"


async def test_the_connection_cap_counts_handshakes_in_progress(server: str) -> None:
    cap, attempts = 10, 40
    guarded = GatewayMiddleware(None, gateways=[GuardedGateway], max_connections=cap)
    async with run_server(guarded, server) as address:
        opened: list[Any] = []
        refused = 0

        async def attempt() -> None:
            nonlocal refused
            try:
                ws = await websockets.connect(f"ws://{address}/guarded", open_timeout=TIMEOUT)
            except websockets.InvalidStatus as exc:
                assert exc.response.status_code == 503
                refused += 1
            else:
                opened.append(ws)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tasks:
                for _ in range(attempts):
                    tasks.start_soon(attempt)
        assert len(opened) == cap and refused == attempts - cap
        for ws in opened:
            await ws.close()
        # The slots are given back: a new client gets in.
        await eventually(
            lambda: len(guarded.server_for(GuardedGateway).clients) == 0, address=address
        )
        async with connect(address, "/guarded") as late:
            assert (await late.request("ping"))["data"] == "pong"


# -- 5. a process-wide outbox budget ------------------------------------------------


FLOOD = 3000  # frames of 4 KiB: 12 MiB per member, well past kernel socket buffers


@WebSocketGateway("/flood")
class FloodGateway:
    server: WebSocketServer

    @SubscribeMessage("join")
    async def join(self, client=ConnectedSocket()):
        await self.server.join(client, "flood")
        return client.id

    @SubscribeMessage("flood")
    async def flood(self, count=MessageBody()):
        for seq in range(count):
            await self.server.to("flood").emit("f", {"seq": seq, "pad": "x" * 4096})
            if seq % 5 == 0:
                await anyio.sleep(0.002)  # paced: the healthy member keeps up
        return count


async def test_the_outbox_budget_closes_stalled_clients_first(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gatewayasgi")
    budget = 256 * 1024
    flood = GatewayMiddleware(None, gateways=[FloodGateway], outbox_budget=budget)
    async with run_server(flood, server) as address, connect(address, "/flood") as healthy:
        stalled = [await stalled_client(address, "/flood") for _ in range(3)]
        for ws in stalled:
            await ws.send('{"event": "join"}')
        healthy_id = (await healthy.request("join"))["data"]
        await eventually(
            lambda: len(flood.server_for(FloodGateway).rooms.members("flood")) == 4,
            address=address,
        )
        await healthy.send("flood", FLOOD)
        seqs = []
        while len(seqs) < FLOOD:
            frame = await healthy.recv()
            if frame["event"] == "f":
                seqs.append(frame["data"]["seq"])
        assert seqs == list(range(FLOOD))
        gateway = flood.server_for(FloodGateway)
        # Kernel buffers absorb part of what each stalled client is sent, so how many
        # must go depends on the machine; at least one does, the healthy one never.
        await eventually(lambda: len(gateway.clients) < 4, address=address)
        assert await server_read(address, lambda: healthy_id in gateway.clients)
        assert await server_read(address, lambda: flood.budget.total) <= budget
        messages = [r.getMessage() for r in caplog.records]
        assert any("outbox budget of" in m for m in messages)
        assert any("(outbox budget), closing with 1013" in m for m in messages)
        for ws in stalled:
            ws.transport.abort()  # a stalled peer would never finish a closing handshake
        assert not gateway_errors(caplog)


# -- 6. leave with a bad room is an error frame ------------------------------------


async def test_leave_with_a_non_string_room_is_an_error_frame(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_server(app(), server) as address, connect(address, "/attack") as client:
        for bad in (123, None, ["a"], {"x": 1}):
            reply = await client.request("leave", {"room": bad})
            assert reply["event"] == "error"
            assert "Room name" in reply["data"]["message"]
        assert (await client.request("whoami"))["event"] == "whoami"
    assert not gateway_errors(caplog)


# -- 7. the Emitter's namespace is spelled like the gateway's ------------------------


@pytest.mark.parametrize("spelling", ["chat", "/chat/", " chat "])
async def test_an_emitter_namespace_reaches_the_gateway_whatever_the_spelling(
    server: str, spelling: str
) -> None:
    @WebSocketGateway("chat")
    class ChatGateway:
        @SubscribeMessage("hello")
        def hello(self):
            return "hi"

    hub = MemoryHub()
    served = GatewayMiddleware(None, gateways=[ChatGateway], broker=MemoryBroker(hub))
    async with run_server(served, server) as address, connect(address, "/chat") as client:
        assert (await client.request("hello"))["data"] == "hi"
        emitter = Emitter(MemoryBroker(hub), namespace=spelling)
        assert emitter.namespace == "/chat"
        await server_call(address, emitter.emit, "news", 1)
        assert await client.recv() == {"event": "news", "data": 1}
