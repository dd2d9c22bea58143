"""Socket.IO clients of a gateway with recovery: offsets only with
``SocketIO(connection_state_recovery=True)``.

socket.io-client sends no ``pid`` on a first connection, so the server cannot tell a
client that will resume from one that will not: as socket.io's own
``connectionStateRecovery``, it is the server's choice. Off (the default), python-socketio
handlers that take one argument work on a gateway with ``recovery=Recovery(...)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import orjson
import pytest
import socketio
import websockets

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.socketio import SocketIO
from gatewayasgi.socketio.endpoint import PLAIN_SOCKETIO
from tests.servers import run_server

pytestmark = pytest.mark.anyio

WAIT = 5.0


@WebSocketGateway("/kept", recovery=Recovery(window=30))
class Kept:
    @SubscribeMessage("tok")
    async def tok(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> None:
        await client.emit("tok", data)  # through the history: the frame has an offset
        await self.server.join(client, "r")  # type: ignore[attr-defined]
        await self.server.to("r").emit("room", {"n": data})  # type: ignore[attr-defined]


def app(**options: Any) -> GatewayMiddleware:
    return GatewayMiddleware(gateways=[Kept], socketio=SocketIO(**options))


async def _events(address: str, transports: list[str], **options: Any) -> list[Any]:
    """What python-socketio's one-argument handlers got for ``tok`` and ``room``."""
    sio = socketio.AsyncClient(reconnection=False, request_timeout=5)
    got: list[Any] = []
    done = asyncio.Event()

    def tok(data: Any) -> None:  # one argument: what a python-socketio user writes
        got.append(("tok", data))

    def room(data: Any) -> None:
        got.append(("room", data))
        done.set()

    sio.on("tok", tok, namespace="/kept")
    sio.on("room", room, namespace="/kept")
    await sio.connect(
        f"http://{address}", namespaces=["/kept"], transports=transports, wait_timeout=WAIT
    )
    try:
        await sio.emit("tok", 7, namespace="/kept")
        with anyio.fail_after(WAIT):
            await done.wait()
    finally:
        await sio.disconnect()
    return got


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_python_socketio_handlers_take_one_argument_on_a_recovery_gateway(
    transports: list[str],
) -> None:
    async with run_server(app(), "hypercorn") as address:
        assert await _events(address, transports) == [("tok", 7), ("room", {"n": 7})]


async def test_without_the_switch_the_connect_answer_has_no_pid_and_events_no_offset() -> None:
    async with run_server(app(), "hypercorn") as address:
        frames = await _raw_session(address, {})
        answer, echoed = frames
        assert set(orjson.loads(answer[len("40/kept,") :])) == {"sid"}
        assert echoed == '42/kept,["tok",1]'
        # A pid offered anyway (a client of another server) opens a new session.
        forged = {"pid": "a.b.c.d", "offset": "1"}
        again, _ = await _raw_session(address, forged)
        assert set(orjson.loads(again[len("40/kept,") :])) == {"sid"}


async def test_with_the_switch_socket_io_clients_get_a_pid_and_offsets() -> None:
    async with run_server(app(connection_state_recovery=True), "hypercorn") as address:
        answer, echoed = await _raw_session(address, {})
        assert set(orjson.loads(answer[len("40/kept,") :])) == {"sid", "pid"}
        event, data, offset = orjson.loads(echoed[len("42/kept,") :])
        assert (event, data) == ("tok", 1) and isinstance(offset, str)


async def _raw_session(address: str, auth: dict[str, str]) -> tuple[str, str]:
    """Engine.IO over a raw WebSocket: the CONNECT answer of ``/kept`` and its first event
    after ``tok`` 1."""
    url = f"ws://{address}/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url) as ws:

        async def recv() -> str:
            with anyio.fail_after(WAIT):
                while True:
                    message = await ws.recv()
                    assert isinstance(message, str)
                    if message != "2":  # pings
                        return message

        assert (await recv()).startswith("0")  # the Engine.IO open packet
        await ws.send("40/kept," + orjson.dumps(auth).decode())
        answer = await recv()
        assert answer.startswith("40/kept,"), answer
        await ws.send('42/kept,["tok",1]')
        return answer, await recv()


def test_plain_protocol_drops_the_offset_of_a_stamped_frame() -> None:
    """The path of frames from another worker or the Redis history (``transcode``)."""
    stamped = '{"event":"x","data":{"a":1},"offset":"7-0"}'
    assert PLAIN_SOCKETIO.transcode(stamped) == '42["x",{"a":1}]'
    assert PLAIN_SOCKETIO.with_offset('42["x",1]', "7-0") == '42["x",1]'


def test_the_switch_is_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="connection_state_recovery"):
        SocketIO(connection_state_recovery="yes")  # type: ignore[arg-type]
