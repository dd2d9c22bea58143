"""Socket.IO / Engine.IO under hostile clients, on real servers with the ASGI lifespan.

- A packet that once escaped the decoders (``int("²")``, placeholders nested 500 deep),
  or any exception a client's packet causes, ends that client's connection only: other
  polling sessions go on, new ones open, and the lifespan's background work keeps running.
- The work one connection makes the server do is bounded: CONNECT churn (and the
  handshake guards it runs) by ``connect_rate`` / ``connect_burst``, every packet by the
  connection's token bucket; a polling POST yields to the event loop as it goes.
- A refused CONNECT does not count as joining: ``connect_timeout`` still closes.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from gatewayasgi import (
    BaseGuard,
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.socketio import SocketIOProtocol
from gatewayasgi.socketio import SocketIO
from tests.servers import run_server

pytestmark = pytest.mark.anyio

WAIT = 5.0
SERVERS = ["hypercorn", "uvicorn"]


class CountingGuard(BaseGuard):
    calls = 0

    def can_activate(self, context: Any) -> bool:
        CountingGuard.calls += 1
        return context.switch_to_ws().get_client().auth.get("token") == "good"


@WebSocketGateway("/open")
class Open:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody(), client=ConnectedSocket()):
        await client.emit("echo", data)

    @SubscribeMessage("sizes")
    def sizes(self, data=MessageBody()):
        return [[len(part), part[:1].hex()] for part in data]


@WebSocketGateway("/guarded", handshake_guards=[CountingGuard])
class Guarded:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody(), client=ConnectedSocket()):
        await client.emit("echo", data)


class Ticker:
    """The wrapped app: its lifespan runs a background task (in the lifespan's task
    group, beside the gateway's services) that counts ticks."""

    def __init__(self) -> None:
        self.ticks = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        async with anyio.create_task_group() as tasks:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    tasks.start_soon(self._tick)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tasks.cancel_scope.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _tick(self) -> None:
        while True:
            self.ticks += 1
            await anyio.sleep(0.01)

    async def running(self) -> bool:
        before = self.ticks
        with anyio.move_on_after(1.0):
            while self.ticks < before + 3:
                await anyio.sleep(0.01)
        return self.ticks >= before + 3


def app(ticker: Ticker | None = None, **options: Any) -> GatewayMiddleware:
    return GatewayMiddleware(
        ticker, gateways=[Open, Guarded], socketio=SocketIO(**{"connect_timeout": 5.0, **options})
    )


class Polling:
    """One Engine.IO session over HTTP long-polling, with raw requests."""

    def __init__(self, http: httpx.AsyncClient, address: str) -> None:
        self.http = http
        self.base = f"http://{address}/socket.io/?EIO=4&transport=polling"
        self.sid = ""

    async def open(self) -> Polling:
        response = await self.http.get(self.base)
        assert response.status_code == 200, response.text
        self.sid = orjson.loads(response.text[1:])["sid"]
        return self

    @property
    def url(self) -> str:
        return f"{self.base}&sid={self.sid}"

    async def post(self, *packets: str) -> int:
        return (await self.http.post(self.url, content="\x1e".join(packets))).status_code

    async def get(self) -> tuple[int, list[str]]:
        response = await self.http.get(self.url)
        return response.status_code, response.text.split("\x1e")

    async def join(self, namespace: str = "/open", auth: str = "") -> None:
        assert await self.post(f"40{namespace},{auth}") == 200
        status, packets = await self.get()
        assert status == 200 and packets[0].startswith(f'40{namespace},{{"sid":'), packets

    async def echo(self, value: Any, namespace: str = "/open") -> bool:
        packet = f'42{namespace},["echo",{orjson.dumps(value).decode()}]'
        if await self.post(packet) != 200:
            return False
        status, packets = await self.get()
        return status == 200 and packet in packets

    async def gone(self) -> bool:
        """True once the session is closed (a GET answers 400) within WAIT."""
        with anyio.fail_after(WAIT):
            while True:
                status, _ = await self.get()
                if status == 400:
                    return True
                await anyio.sleep(0.05)


async def opened_ws(address: str, namespace: str = "/open") -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"ws://{address}/socket.io/?EIO=4&transport=websocket", open_timeout=WAIT
    )
    assert str(await recv(ws)).startswith("0")
    await ws.send(f"40{namespace},")
    assert str(await recv(ws)).startswith(f"40{namespace},")
    return ws


async def recv(ws: websockets.ClientConnection) -> str | bytes:
    with anyio.fail_after(WAIT):
        while True:
            message = await ws.recv()
            if message != "2":
                return message


async def still_healthy(
    http: httpx.AsyncClient, address: str, survivor: Polling, ticker: Ticker
) -> None:
    """Everything the lifespan's task group serves still works."""
    assert await survivor.echo("survivor"), "a polling session opened earlier stopped"
    fresh = await Polling(http, address).open()  # 200, not 500
    await fresh.join()
    assert await fresh.echo({"fresh": True})
    assert await ticker.running(), "the lifespan's background task stopped"
    ws = await opened_ws(address)
    await ws.send('42/open,["echo","ws"]')
    assert await recv(ws) == '42/open,["echo","ws"]'
    await ws.close()


def nested_placeholders(depth: int) -> str:
    return "[" * depth + '{"_placeholder":true,"num":0}' + "]" * depth


ATTACKS = [
    ['42/open,²["echo",1]'],  # int("²") in the decoder
    ['42/open,٣["echo",1]'],
    ["42/open," + "9" * 5000 + '["echo"]'],
    ['451-/open,["echo",' + nested_placeholders(500) + "]", "bAQ=="],  # RecursionError
    ["451-/open," + nested_placeholders(900), "bAQ=="],
    ['45²-/open,["echo"]', "bAQ=="],
    ["b\u0080"],  # not base64, not even ASCII
]


@pytest.mark.parametrize("server", SERVERS)
async def test_packets_that_crashed_the_decoders_end_one_connection_only(server: str) -> None:
    ticker = Ticker()
    async with run_server(app(ticker), server) as address:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            survivor = await Polling(http, address).open()
            await survivor.join()
            for packets in ATTACKS:
                attacker = await Polling(http, address).open()
                await attacker.join()
                assert await attacker.post(*packets) in (200, 400)
                await still_healthy(http, address, survivor, ticker)


@pytest.mark.parametrize("server", SERVERS)
async def test_any_exception_a_packet_causes_ends_its_connection_only(
    server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the next decoder bug is: an exception in the Engine.IO layer (header
    parsing) or in a namespace's session (Socket.IO decoding) closes that connection."""
    parse_header, decode = engineio.parse_header, SocketIOProtocol.decode

    def bad_header(text: str) -> engineio.Header:
        if "boom-header" in text:
            raise RuntimeError("boom-header")
        return parse_header(text)

    def bad_decode(self: SocketIOProtocol, raw: str | bytes) -> Any:
        if isinstance(raw, str) and "boom-decode" in raw:
            raise RuntimeError("boom-decode")
        return decode(self, raw)

    monkeypatch.setattr(engineio, "parse_header", bad_header)
    # On the class: every Socket.IO protocol instance (with recovery offsets or without).
    monkeypatch.setattr(SocketIOProtocol, "decode", bad_decode)
    caplog.set_level(logging.ERROR, "gatewayasgi")
    ticker = Ticker()
    async with run_server(app(ticker), server) as address:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            survivor = await Polling(http, address).open()
            await survivor.join()
            for marker in ("boom-header", "boom-decode"):
                attacker = await Polling(http, address).open()
                await attacker.join()
                assert await attacker.post(f'42/open,["{marker}"]') == 200
                await still_healthy(http, address, survivor, ticker)
            # Over WebSocket too: the namespace ends, the server goes on.
            ws = await opened_ws(address)
            await ws.send('42/open,["boom-decode"]')
            assert await recv(ws) == "41/open,"  # the namespace's end, told
            await ws.send('42/open,["echo",1]')  # not in the namespace any more: ignored
            await ws.send("40/open,")  # the connection is still open: join again
            assert str(await recv(ws)).startswith('40/open,{"sid":')
            await ws.send('42/open,["echo",2]')
            assert await recv(ws) == '42/open,["echo",2]'
            await ws.close()
            await still_healthy(http, address, survivor, ticker)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "failed" in logged


def churn(size: int) -> str:
    pair = '40/guarded,{"token":"good"}\x1e41/guarded,'
    return "\x1e".join([pair] * (size // (len(pair) + 1)))


async def echo_latencies(ws: websockets.ClientConnection, stop: anyio.Event) -> list[float]:
    latencies: list[float] = []
    number = 0
    while not stop.is_set():
        number += 1
        started = anyio.current_time()
        await ws.send(f'42/open,["echo",{number}]')
        while await recv(ws) != f'42/open,["echo",{number}]':
            pass
        latencies.append(anyio.current_time() - started)
        await anyio.sleep(0.005)
    return latencies


@pytest.mark.parametrize("server", SERVERS)
async def test_connect_churn_is_bounded_and_leaves_the_loop_free(server: str) -> None:
    """100 KB of CONNECT/DISCONNECT pairs (2,500 handshakes asked for): the guard runs
    at most ``connect_burst`` times (and a little ``connect_rate``) before the
    connection closes, and a healthy client's echo never waits long."""
    CountingGuard.calls = 0
    options = SocketIO()
    async with run_server(app(), server) as address:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            ws = await opened_ws(address)
            attacker = await Polling(http, address).open()
            stop = anyio.Event()
            latencies: list[float] = []

            async def measure() -> None:
                latencies.extend(await echo_latencies(ws, stop))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(measure)
                await anyio.sleep(0.05)
                started = anyio.current_time()
                status = await attacker.post(churn(100_000))
                took = anyio.current_time() - started
                await anyio.sleep(0.05)
                stop.set()
            assert status == 200
            assert await attacker.gone()
            print(
                f"\n{server}: churn POST {took * 1000:.0f} ms, guard ran {CountingGuard.calls}"
                f" times, echo p100 {max(latencies) * 1000:.1f} ms over {len(latencies)}"
            )
            assert CountingGuard.calls <= options.connect_burst + 2
            assert max(latencies) < 1.0
            await ws.close()


@pytest.mark.parametrize("server", SERVERS)
async def test_a_flood_of_engineio_packets_closes_the_connection(server: str) -> None:
    """60,000 noops in one body: past the connection's packet budget (twice
    ``rate_burst``) it closes; a healthy client is served meanwhile."""
    async with run_server(app(), server) as address:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            ws = await opened_ws(address)
            attacker = await Polling(http, address).open()
            await attacker.join()
            assert await attacker.post(*["6"] * 60_000) == 200
            assert await attacker.gone()
            await ws.send('42/open,["echo","after"]')
            assert await recv(ws) == '42/open,["echo","after"]'
            ordinary = await Polling(http, address).open()  # many packets, within budget
            await ordinary.join()
            assert await ordinary.post(*['42/open,["echo",1]'] * 200) == 200
            status, packets = await ordinary.get()
            assert status == 200 and packets.count('42/open,["echo",1]') >= 1
            await ws.close()


@pytest.mark.parametrize("server", SERVERS)
async def test_a_refused_connect_does_not_stop_connect_timeout(server: str) -> None:
    async with run_server(app(connect_timeout=0.5), server) as address:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            session = await Polling(http, address).open()
            started = anyio.current_time()
            assert await session.post('40/guarded,{"token":"bad"}') == 200
            status, packets = await session.get()
            assert (status, packets) == (200, ['44/guarded,{"message":"Forbidden"}'])
            assert await session.gone()
            assert anyio.current_time() - started < 4.0

        ws = await websockets.connect(
            f"ws://{address}/socket.io/?EIO=4&transport=websocket", open_timeout=WAIT
        )
        await recv(ws)
        await ws.send('40/guarded,{"token":"bad"}')
        assert await recv(ws) == '44/guarded,{"message":"Forbidden"}'
        with anyio.fail_after(WAIT), pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()


@pytest.mark.parametrize("server", SERVERS)
async def test_connects_past_the_burst_close_the_connection(server: str) -> None:
    async with run_server(app(connect_burst=3, connect_rate=0.1), server) as address:
        ws = await websockets.connect(
            f"ws://{address}/socket.io/?EIO=4&transport=websocket", open_timeout=WAIT
        )
        await recv(ws)
        for _ in range(3):
            await ws.send("40/open,")
            assert str(await recv(ws)).startswith("40/open,")
            await ws.send("41/open,")
        await ws.send("40/open,")
        with anyio.fail_after(WAIT), pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()


@pytest.mark.parametrize("server", SERVERS)
async def test_attachments_within_max_payload_are_not_refused_for_their_base64(
    server: str,
) -> None:
    """64 attachments of 15,000 bytes (960 KB, within max_payload) reach the handler:
    the session measures them by their bytes (their base64 would be 1.28 MB, over the
    gateway's 1 MiB max_message_size)."""
    async with run_server(app(), server) as address:
        ws = await opened_ws(address)
        placeholders = ",".join(f'{{"_placeholder":true,"num":{n}}}' for n in range(64))
        await ws.send(f'4564-/open,7["sizes",[{placeholders}]]')
        for number in range(64):
            await ws.send(bytes([number]) * 15_000)
        answer = str(await recv(ws))
        assert answer.startswith("43/open,7[")
        assert orjson.loads(answer[len("43/open,7") :]) == [
            [[15_000, f"{number:02x}"] for number in range(64)]
        ]
        await ws.send('42/open,["echo","after"]')  # the namespace is still joined
        assert await recv(ws) == '42/open,["echo","after"]'
        await ws.close()
