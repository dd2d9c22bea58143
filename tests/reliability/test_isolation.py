"""Connection isolation and close races, on hypercorn and uvicorn.

Many clients with distinct identities never see one another's replies or state.
Sending after a close, closing during a send, and the app's ``close()`` racing the
client's close never raise into user code, never let an exception escape to the
server, and never log at ERROR.
"""

from __future__ import annotations

from typing import Any

import anyio
import orjson
import pytest
import websockets
import websockets.exceptions

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    OnGatewayConnection,
    OnGatewayDisconnect,
    SubscribeMessage,
    WebSocketGateway,
)
from tests.reliability import eventually, server_errors, server_logs
from tests.servers import run_server

pytestmark = pytest.mark.anyio

SERVERS = pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])


@WebSocketGateway("/iso")
class IsolationGateway(OnGatewayConnection, OnGatewayDisconnect):
    def __init__(self) -> None:
        self.connections: dict[str, Any] = {}
        self.leaked: list[BaseException] = []  # exceptions that reached user code
        self.disconnected = 0

    def on_connection(self, client: Any) -> None:
        user = client.query_params["user"]
        client.state.user = user
        self.connections[user] = client

    def on_disconnect(self, client: Any) -> None:
        self.disconnected += 1

    @SubscribeMessage("whoami")
    async def whoami(self, data=MessageBody(), client=ConnectedSocket()):
        await anyio.sleep(0.001)  # let other connections interleave
        return {"user": client.query_params["user"], "state": client.state.user, "data": data}

    @SubscribeMessage("send_after_close")
    async def send_after_close(self, client=ConnectedSocket()):
        await client.close(1000)
        await self.send_everything(client)
        return "late reply"

    @SubscribeMessage("stream")
    async def stream(self, count=MessageBody(), client=ConnectedSocket()):
        try:
            for index in range(count):
                await client.send_json(
                    {"event": "chunk", "data": {"index": index, "pad": "p" * 1024}}
                )
        except Exception as exc:
            self.leaked.append(exc)

    @SubscribeMessage("close_me")
    async def close_me(self, client=ConnectedSocket()):
        await client.close(4000, "bye")

    async def send_everything(self, client: Any) -> None:
        """Every way user code sends to one client; none may raise once it is closed."""
        try:
            await client.send_json({"event": "late", "data": 1})
            await client.send_text('{"event": "late", "data": 2}')
            await client.send_bytes(b'{"event": "late", "data": 3}')
            await client.emit("late", 4)
            await self.server.to(client.id).emit("late", 5)
            await client.close(1001)
        except Exception as exc:
            self.leaked.append(exc)


class Escapes:
    """ASGI wrapper that records any exception escaping the middleware to the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.escaped: list[BaseException] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            self.escaped.append(exc)
            raise


def build() -> tuple[Escapes, Any, IsolationGateway]:
    middleware = GatewayMiddleware(None, gateways=[IsolationGateway])
    return (
        Escapes(middleware),
        middleware.server_for(IsolationGateway),
        middleware.get(IsolationGateway),
    )


async def open_user(address: str, user: str, **kwargs: Any) -> Any:
    return await websockets.connect(
        f"ws://{address}/iso?user={user}",
        compression=None,
        open_timeout=10,
        max_size=None,
        **kwargs,
    )


async def frames_until_closed(ws: Any, timeout: float = 10) -> tuple[list[Any], int | None]:
    frames: list[Any] = []
    with anyio.fail_after(timeout):
        try:
            while True:
                frames.append(await ws.recv())
        except websockets.exceptions.ConnectionClosed as exc:
            return frames, exc.rcvd.code if exc.rcvd is not None else None


async def settle(escapes: Escapes, gateway: Any, hooks: IsolationGateway) -> None:
    """Everyone left: registry and rooms empty, nothing leaked or escaped."""
    await eventually(lambda: not gateway.clients, timeout=10)
    assert gateway.rooms.room_count() == 0
    assert hooks.leaked == []
    assert escapes.escaped == []


@SERVERS
async def test_concurrent_clients_only_ever_get_their_own_replies(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """100 clients x 20 interleaved requests: every reply names its own user and data."""
    escapes, gateway, hooks = build()
    users, requests = 100, 20
    async with run_server(escapes, server) as address, server_logs(caplog):

        async def converse(user: str) -> None:
            ws = await open_user(address, user)
            try:
                for index in range(requests):
                    await ws.send(
                        orjson.dumps({"event": "whoami", "data": [user, index], "id": index})
                    )
                for index in range(requests):
                    with anyio.fail_after(10):
                        reply = orjson.loads(await ws.recv())
                    assert reply == {
                        "event": "whoami",
                        "data": {"user": user, "state": user, "data": [user, index]},
                        "id": index,
                    }
            finally:
                await ws.close()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for number in range(users):
                    tasks.start_soon(converse, f"u{number}")
        await settle(escapes, gateway, hooks)
        assert hooks.disconnected == users
    assert server_errors(caplog) == []


@SERVERS
async def test_sending_after_close_never_raises(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After the app's close (in a handler) and after the peer left (from outside)."""
    escapes, gateway, hooks = build()
    async with run_server(escapes, server) as address, server_logs(caplog):
        ws = await open_user(address, "closer")
        await ws.send(orjson.dumps({"event": "send_after_close"}))
        frames, code = await frames_until_closed(ws)
        assert (frames, code) == ([], 1000), "frames sent after close() reached the client"

        ws = await open_user(address, "gone")
        await eventually(lambda: "gone" in hooks.connections)
        connection = hooks.connections["gone"]
        ws.transport.abort()
        await eventually(lambda: connection.id not in gateway.clients)
        await hooks.send_everything(connection)
        await settle(escapes, gateway, hooks)
    assert server_errors(caplog) == []


@SERVERS
@pytest.mark.parametrize("how", ["close", "abort"])
async def test_client_leaving_during_a_send_stream_is_quiet(
    server: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler streams 2,000 frames; the client reads a few and goes away mid-stream."""
    escapes, gateway, hooks = build()
    async with run_server(escapes, server) as address, server_logs(caplog):
        for round_ in range(5):
            # max_queue=None: while closing, websockets buffers what still arrives instead
            # of pausing reads, so the server's sends drain and the handshake completes.
            ws = await open_user(address, f"s{round_}", max_queue=None)
            await ws.send(orjson.dumps({"event": "stream", "data": 2000}))
            with anyio.fail_after(10):
                for _ in range(10):
                    await ws.recv()
            if how == "close":
                with anyio.fail_after(10):
                    await ws.close()
            else:
                ws.transport.abort()
        await settle(escapes, gateway, hooks)
        assert hooks.disconnected == 5
        # The gateway still serves new clients.
        ws = await open_user(address, "after")
        await ws.send(orjson.dumps({"event": "whoami", "data": 1}))
        with anyio.fail_after(10):
            assert orjson.loads(await ws.recv())["data"]["user"] == "after"
        await ws.close()
        await settle(escapes, gateway, hooks)
    assert server_errors(caplog) == []


@SERVERS
async def test_app_close_racing_the_client_close_is_quiet(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``close()`` from a handler and from outside, at the moment the client closes too."""
    escapes, gateway, hooks = build()
    rounds = 30
    async with run_server(escapes, server) as address, server_logs(caplog):

        async def handler_close_races(index: int) -> None:
            ws = await open_user(address, f"h{index}")
            await ws.send(orjson.dumps({"event": "close_me"}))
            await ws.close()
            assert ws.close_code in (1000, 4000)

        async def outside_close_races(index: int) -> None:
            user = f"o{index}"
            ws = await open_user(address, user)
            await eventually(lambda: user in hooks.connections)
            connection = hooks.connections[user]
            async with anyio.create_task_group() as race:
                race.start_soon(connection.close, 4001)
                race.start_soon(ws.close)
            await eventually(lambda: connection.id not in gateway.clients)
            await connection.close(4002)  # closing twice is a no-op
            assert ws.close_code in (1000, 4001)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                for index in range(rounds):
                    tasks.start_soon(handler_close_races, index)
                    tasks.start_soon(outside_close_races, index)
        await settle(escapes, gateway, hooks)
        assert hooks.disconnected == 2 * rounds
    assert server_errors(caplog) == []
