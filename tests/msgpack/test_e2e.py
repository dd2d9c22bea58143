"""MessagePack clients on real servers: echo, errors, emits, calls, recovery, and a room
shared with JSON and Socket.IO clients (each protocol encodes a frame once).

Clients are ``gatewayasgi.client.GatewayClient(protocol="msgpack")``, raw ``websockets``
connections offering ``gatewayasgi.msgpack``, and python-socketio's ``AsyncClient``.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import ormsgpack
import pytest
import socketio
import websockets

from gatewayasgi import GatewayMiddleware
from gatewayasgi.client import CallError, ConnectError, GatewayClient
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.json import JsonProtocol
from gatewayasgi.protocol.msgpack import INVALID_MSGPACK, NOT_BINARY, MessagePack
from gatewayasgi.protocol.socketio import SocketIOProtocol
from gatewayasgi.runtime.calls import CallRejectedError
from tests.msgpack.app import Plain, make_app
from tests.recovery.cut_proxy import CutProxy
from tests.servers import TIMEOUT, run_server

pytestmark = pytest.mark.anyio

QUIET = 0.3
"""How long a client must then get nothing more to show that nothing was duplicated."""
BLOB = bytes(range(256))


@pytest.fixture(params=["hypercorn", "uvicorn"])
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pack(value: Any) -> bytes:
    return ormsgpack.packb(value)


def unpack(raw: str | bytes) -> Any:
    assert isinstance(raw, bytes), f"a text frame on a MessagePack connection: {raw!r}"
    return ormsgpack.unpackb(raw)


@asynccontextmanager
async def raw_msgpack(address: str, path: str = "/mp") -> AsyncIterator[Any]:
    async with websockets.connect(
        f"ws://{address}{path}", subprotocols=["gatewayasgi.msgpack"], open_timeout=TIMEOUT
    ) as ws:
        assert ws.subprotocol == "gatewayasgi.msgpack"
        yield ws


async def recv(ws: Any) -> Any:
    with anyio.fail_after(TIMEOUT):
        return unpack(await ws.recv())


def client(address: str, path: str = "/mp", **options: Any) -> GatewayClient:
    options.setdefault("protocol", "msgpack")
    return GatewayClient(f"ws://{address}{path}", **options)


# -- one client ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hypercorn", "uvicorn", "hypercorn-trio"])
async def test_echo_on_the_wire_is_binary_and_bytes_stay_bytes(kind: str) -> None:
    async with run_server(make_app(), kind) as address, raw_msgpack(address) as ws:
        data = {"blob": BLOB, "nested": [b"\x00", {"k": b""}], "n": 1.5, "s": "é"}
        await ws.send(pack({"event": "echo", "data": data, "id": 1}))
        assert await recv(ws) == {"event": "echo", "data": data, "id": 1}
        await ws.send(pack({"event": "blob", "data": {"name": "b", "body": BLOB}, "id": "x"}))
        assert await recv(ws) == {
            "event": "blob",
            "data": {"name": "b", "body": BLOB[::-1]},
            "id": "x",
        }


async def test_the_python_client_speaks_msgpack(server: str) -> None:
    async with run_server(make_app(), server) as address, client(address) as mp:
        assert await mp.call("echo", {"b": BLOB}, timeout=TIMEOUT) == {"b": BLOB}
        reply = await mp.call("blob", {"name": "n", "body": b"\x01\x02"}, timeout=TIMEOUT)
        assert reply == {"name": "n", "body": b"\x02\x01"}
        # A ready-made {"event", "data"} reply keeps its event (and the call its id).
        assert await mp.call("note", {"text": "t", "count": 2}, timeout=TIMEOUT) == {
            "text": "t",
            "count": 2,
        }


async def test_validation_and_frame_errors_are_msgpack_error_frames(server: str) -> None:
    async with run_server(make_app(), server) as address:
        async with client(address) as mp:
            with pytest.raises(CallError) as caught:
                await mp.call("note", {"text": "t", "count": "many"}, timeout=TIMEOUT)
            assert caught.value.message == "Invalid payload for WebSocket event 'note'"
            assert [error["loc"] for error in caught.value.details["errors"]] == [["count"]]
            with pytest.raises(CallError, match="No handler for WebSocket event 'nope'"):
                await mp.call("nope", timeout=TIMEOUT)
        async with raw_msgpack(address) as ws:
            await ws.send('{"event":"echo","id":1}')  # a text frame
            assert await recv(ws) == {"event": "error", "data": {"message": NOT_BINARY}}
            await ws.send(b"\xc1\x00")
            assert await recv(ws) == {"event": "error", "data": {"message": INVALID_MSGPACK}}
            await ws.send(b"\x83\xa5event\xa4echo\xa2id\x07\xa4data" + b"\x91" * 300 + b"\xc0")
            assert (await recv(ws))["data"]["message"] == codec.TOO_DEEP
            await ws.send(pack({"event": "echo", "id": [1]}))
            assert (await recv(ws))["data"]["message"] == codec.INVALID_ID
            # The connection goes on.
            await ws.send(pack({"event": "echo", "data": b"ok", "id": 2}))
            assert await recv(ws) == {"event": "echo", "data": b"ok", "id": 2}


async def test_emits_reach_msgpack_clients(server: str) -> None:
    async with run_server(make_app(), server) as address:
        async with client(address) as mp, client(address, protocol="json") as sender:
            assert await mp.call("join", "r", timeout=TIMEOUT) == "r"
            assert await sender.call("say", {"room": "r", "n": [1, "two"]}, timeout=TIMEOUT) == "ok"
            message = await mp.receive(timeout=TIMEOUT)
            assert (message.event, message.data) == ("said", [1, "two"])
            # A msgpack client's bytes go out as bytes to other msgpack clients.
            assert await mp.call("say", {"room": "r", "n": BLOB}, timeout=TIMEOUT) == "ok"
            assert (await mp.receive(timeout=TIMEOUT)).data == BLOB


async def test_bytes_in_a_room_shared_by_json_and_msgpack(server: str) -> None:
    async with run_server(make_app(), server) as address:
        async with client(address) as mp, client(address, protocol="json") as js:
            for member in (mp, js):
                assert await member.call("join", "r", timeout=TIMEOUT) == "r"
            data = {"blob": b"\x00\xff", "nested": [{"b": b""}]}
            assert await mp.call("say", {"room": "r", "n": data}, timeout=TIMEOUT) == "ok"
            assert (await mp.receive(timeout=TIMEOUT)).data == data  # bin in MessagePack
            assert (await js.receive(timeout=TIMEOUT)).data == {
                "blob": "AP8=",  # base64 text in JSON
                "nested": [{"b": ""}],
            }


async def test_server_calls_are_answered_in_msgpack(server: str) -> None:
    app = make_app()
    async with run_server(app, server) as address, client(address) as mp:

        @mp.on("double")
        async def double(data: bytes) -> bytes:
            return data * 2

        @mp.on("broken")
        def broken(data: Any) -> None:
            raise ValueError("cannot answer that")

        client_id = await mp.call("whoami", timeout=TIMEOUT)
        connection = app.server_for(Plain).get_client(client_id)
        assert connection is not None and connection.protocol.name == "msgpack"
        assert await connection.call("double", b"\x01\xff", timeout=TIMEOUT) == b"\x01\xff" * 2
        with pytest.raises(CallRejectedError, match="cannot answer that"):
            await connection.call("broken", None, timeout=TIMEOUT)
        with pytest.raises(CallRejectedError, match="No handler for server event 'nobody'"):
            await connection.call("nobody", None, timeout=TIMEOUT)


async def test_heartbeats_are_answered_in_msgpack() -> None:
    """The gateway closes a client silent for interval + timeout (0.6 s): 8 heartbeats
    (1.6 s) can only arrive if the client answered them."""
    app = make_app(heartbeat_interval=0.2, heartbeat_timeout=0.4)
    enough = asyncio.Event()
    beats = 0
    async with run_server(app, "hypercorn") as address, client(address) as mp:

        @mp.on("heartbeat")
        def count(data: Any) -> None:
            nonlocal beats
            beats += 1
            if beats >= 8:
                enough.set()

        await asyncio.wait_for(enough.wait(), TIMEOUT)
        assert mp.connected and mp.last_close is None


async def test_a_server_without_msgpack_refuses_the_client_for_good(server: str) -> None:
    app = GatewayMiddleware(gateways=[Plain])
    async with run_server(app, server) as address:
        with pytest.raises(ConnectError, match="does not speak msgpack") as caught:
            await client(address).connect()
        assert caught.value.terminal


async def test_registration_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="protocols must be a list"):
        make_app(protocols=MessagePack())
    with pytest.raises(ConfigurationError, match="WireProtocol instances"):
        make_app(protocols=["msgpack"])
    with pytest.raises(ConfigurationError, match="subprotocol of its own"):
        make_app(protocols=[MessagePack(), MessagePack()])
    with pytest.raises(ConfigurationError, match="subprotocol of its own"):
        make_app(protocols=[JsonProtocol()])


# -- recovery ----------------------------------------------------------------------------


async def test_a_msgpack_client_resumes_and_gets_every_missed_frame_once(server: str) -> None:
    app = make_app()
    async with run_server(app, server) as address:
        proxy = CutProxy(address)
        async with proxy.running():
            mp = client(proxy.address, "/mpr", recover=True, reconnect_delay=0.05)
            async with mp, client(address, "/mpr") as sender:
                first_id = mp.id
                assert first_id is not None and mp.recovered is False
                assert mp.session is not None and mp.session.offset is not None
                assert await mp.call("join", "r", timeout=TIMEOUT) == "r"
                await sender.call("say", {"room": "r", "n": "first"}, timeout=TIMEOUT)
                assert (await mp.receive(timeout=TIMEOUT)).data == "first"
                assert proxy.cut() == 1
                # Away (or reconnecting) while 200 frames go to its room.
                await sender.call("burst", {"room": "r", "count": 200}, timeout=TIMEOUT)
                await sender.call("say", {"room": "r", "n": BLOB}, timeout=TIMEOUT)
                with anyio.fail_after(TIMEOUT):
                    received = [(await mp.receive()).data for _ in range(201)]
                    await mp.wait_connected()
                assert received[:200] == [{"n": n} for n in range(200)]
                # A replayed frame comes from the history's canonical (JSON) form, where
                # bytes are base64 text (docs/guide/protocols.md); live frames keep bytes.
                assert received[200] == base64.b64encode(BLOB).decode()
                assert mp.recovered is True, mp.session
                assert mp.id == first_id
                await sender.call("say", {"room": "r", "n": "live"}, timeout=TIMEOUT)
                assert (await mp.receive(timeout=TIMEOUT)).data == "live"
                with anyio.move_on_after(QUIET):
                    extra = await mp.receive()
                    pytest.fail(f"a frame arrived twice: {extra}")


async def test_live_frames_carry_offsets_and_bytes_on_a_recovering_gateway(server: str) -> None:
    async with run_server(make_app(), server) as address, raw_msgpack(address, "/mpr") as ws:
        session = await recv(ws)
        assert session["event"] == "$session" and session["data"]["recovered"] is False
        await ws.send(pack({"event": "join", "data": "r", "id": 1}))
        assert await recv(ws) == {"event": "join", "data": "r", "id": 1}
        await ws.send(pack({"event": "say", "data": {"room": "r", "n": BLOB}, "id": 2}))
        frames = [await recv(ws), await recv(ws)]
        said = next(frame for frame in frames if frame["event"] == "said")
        assert said["data"] == BLOB
        assert int(said["offset"]) > int(session["data"]["offset"])


# -- a room shared by every protocol -----------------------------------------------------


def count_encodes(monkeypatch: pytest.MonkeyPatch, event: str) -> Counter[str]:
    """Count each protocol's encodings of ``event`` (emits, offsets, transcodes)."""
    counts: Counter[str] = Counter()

    def counting(cls: type, name: str) -> None:
        original: Callable[..., Any] = getattr(cls, name)

        def wrapper(self: Any, *args: Any) -> Any:
            if name != "encode_emit" or args[0] == event:
                counts[f"{self.name}.{name}"] += 1
            return original(self, *args)

        monkeypatch.setattr(cls, name, wrapper)

    for cls in (JsonProtocol, MessagePack, SocketIOProtocol):
        counting(cls, "encode_emit")
        counting(cls, "transcode")
    return counts


class SocketIOPeer:
    """python-socketio's ``AsyncClient`` on one namespace, recording ``said`` events."""

    def __init__(self, namespace: str) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, request_timeout=TIMEOUT)
        self.namespace = namespace
        self.said: asyncio.Queue[Any] = asyncio.Queue()
        self.sio.on("said", self.said.put_nowait, namespace=namespace)

    async def connect(self, address: str) -> None:
        await self.sio.connect(
            f"http://{address}",
            namespaces=[self.namespace],
            transports=["websocket"],
            wait_timeout=TIMEOUT,
        )

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, namespace=self.namespace, timeout=TIMEOUT)


@pytest.mark.parametrize("path", ["/mp", "/mpr"])
async def test_a_shared_room_gets_every_frame_encoded_once_per_protocol(
    server: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = count_encodes(monkeypatch, "said")
    async with run_server(make_app(), server) as address, AsyncExitStack() as stack:
        json_clients = [
            await stack.enter_async_context(client(address, path, protocol="json"))
            for _ in range(3)
        ]
        mp_clients = [await stack.enter_async_context(client(address, path)) for _ in range(3)]
        sio_clients = [SocketIOPeer(path) for _ in range(3)]
        for peer in sio_clients:
            await peer.connect(address)
            stack.push_async_callback(peer.sio.disconnect)
        for gateway_client in [*json_clients, *mp_clients]:
            assert await gateway_client.call("join", "lobby", timeout=TIMEOUT) == "lobby"
        for peer in sio_clients:
            assert await peer.call("join", "lobby") == "lobby"
        assert counts == Counter()

        # No bytes here: a Socket.IO room member never gets a fanned-out frame with
        # attachments (a known Socket.IO defect, not this protocol's; the bytes of a
        # shared room are checked in test_bytes_in_a_room_shared_by_json_and_msgpack).
        data = {"text": "hé", "n": [1, 2.5, None]}
        assert (
            await mp_clients[0].call("say", {"room": "lobby", "n": data}, timeout=TIMEOUT) == "ok"
        )
        for gateway_client in [*json_clients, *mp_clients]:
            message = await gateway_client.receive(timeout=TIMEOUT)
            assert (message.event, message.data) == ("said", data)
        for peer in sio_clients:
            with anyio.fail_after(TIMEOUT):
                assert await peer.said.get() == data
        assert counts == Counter(
            {"json.encode_emit": 1, "msgpack.encode_emit": 1, "socketio.encode_emit": 1}
        )
        for gateway_client in [*json_clients, *mp_clients]:
            with pytest.raises(TimeoutError):
                await gateway_client.receive(timeout=QUIET / 3)
        assert all(peer.said.empty() for peer in sio_clients)
