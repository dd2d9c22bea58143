"""The Engine.IO endpoint under hostile input, on real servers (raw packets, no client library).

Every input a client controls has a bound: packet and body sizes, attachments, namespaces
per connection, polling sessions, two GETs at once, silence before joining a namespace,
forged resume ids. Each refusal is checked on the wire.
"""

from __future__ import annotations

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
    Recovery,
    SubscribeMessage,
    WebSocketGateway,
)
from gatewayasgi.socketio import Arguments, SocketIO
from tests.servers import run_server

pytestmark = pytest.mark.anyio

WAIT = 5.0


class AuthGuard(BaseGuard):
    def can_activate(self, context):
        return context.switch_to_ws().get_client().auth.get("token") == "good"


@WebSocketGateway("/")
class Main:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody(), client=ConnectedSocket()):
        await client.emit("echo", data)


@WebSocketGateway("/guarded", handshake_guards=[AuthGuard])
class Guarded:
    @SubscribeMessage("who")
    def who(self, client=ConnectedSocket()):
        return client.auth


@WebSocketGateway("/kept", recovery=Recovery(window=30))
class Kept:
    @SubscribeMessage("echo")
    async def echo(self, data=MessageBody(), client=ConnectedSocket()):
        await client.emit("echo", data)


def app(**options: object) -> GatewayMiddleware:
    defaults = {"max_payload": 10_000, "connect_timeout": 2.0, "connection_state_recovery": True}
    socketio = SocketIO(**{**defaults, **options})  # type: ignore[arg-type]
    return GatewayMiddleware(gateways=[Main, Guarded, Kept], socketio=socketio)


async def recv(ws: websockets.ClientConnection) -> str | bytes:
    with anyio.fail_after(WAIT):
        while True:
            message = await ws.recv()
            if message != "2":  # pings
                return message


async def closed(ws: websockets.ClientConnection) -> bool:
    """True when the server closes the socket (whatever it sent before) within WAIT."""
    with anyio.fail_after(WAIT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            return True


def ws_url(address: str, sid: str | None = None) -> str:
    url = f"ws://{address}/socket.io/?EIO=4&transport=websocket"
    return url if sid is None else f"{url}&sid={sid}"


async def opened(address: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_url(address), open_timeout=WAIT)
    first = await recv(ws)
    assert isinstance(first, str) and first.startswith("0")
    return ws


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn", "hypercorn-trio"])
async def test_namespace_flow_on_every_server(server: str) -> None:
    async with run_server(app(), server) as address:
        ws = await opened(address)
        await ws.send("40")
        assert str(await recv(ws)).startswith('40{"sid":"c_')
        await ws.send('42["echo",{"a":[1,2]}]')
        assert await recv(ws) == '42["echo",{"a":[1,2]}]'
        await ws.close()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_packets_and_attachments_over_max_payload_close(server: str) -> None:
    async with run_server(app(), server) as address:
        ws = await opened(address)
        await ws.send('42["echo","' + "x" * 10_001 + '"]')
        assert await closed(ws)

        ws = await opened(address)  # 4,000 characters, 12,000 bytes of UTF-8: over too
        await ws.send('42["echo","' + "\u20ac" * 4_000 + '"]')
        assert await closed(ws)

        ws = await opened(address)
        await ws.send("40")
        await recv(ws)
        await ws.send('452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        await ws.send(b"x" * 6_000)
        await ws.send(b"x" * 6_000)  # 12,000 bytes for one packet: over max_payload
        assert await closed(ws)

        ws = await opened(address)
        await ws.send(b"\x01\x02")  # an attachment nothing announced
        assert await closed(ws)

        ws = await opened(address)
        await ws.send('4500-["echo"]')  # more attachments than any packet may have
        assert await closed(ws)


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_namespaces_per_connection_are_capped(server: str) -> None:
    middleware = GatewayMiddleware(
        gateways=[Main, Kept], socketio=SocketIO(max_namespaces=1, connect_timeout=2.0)
    )
    async with run_server(middleware, server) as address:
        ws = await opened(address)
        await ws.send("40")
        assert str(await recv(ws)).startswith("40{")
        await ws.send("40/kept,")
        assert await recv(ws) == '44/kept,{"message":"Too many namespaces"}'
        await ws.send("41")  # leaving one makes room
        await ws.send("40/kept,")
        assert str(await recv(ws)).startswith('40/kept,{"sid":"c_')
        await ws.close()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_silence_before_joining_a_namespace_closes(server: str) -> None:
    async with run_server(app(connect_timeout=0.5), server) as address:
        ws = await opened(address)
        started = anyio.current_time()
        assert await closed(ws)
        assert anyio.current_time() - started < 4.0


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_handshake_guard_sees_auth_and_refuses_with_connect_error(server: str) -> None:
    async with run_server(app(), server) as address:
        ws = await opened(address)
        await ws.send('40/guarded,{"token":"bad"}')
        assert await recv(ws) == '44/guarded,{"message":"Forbidden"}'
        await ws.send('40/guarded,{"token":"good","user":"ann"}')
        assert str(await recv(ws)).startswith('40/guarded,{"sid":"c_')
        await ws.send('42/guarded,7["who"]')
        assert await recv(ws) == '43/guarded,7[{"token":"good","user":"ann"}]'
        await ws.send('40/nowhere,{"token":"good"}')
        assert await recv(ws) == '44/nowhere,{"message":"Invalid namespace"}'
        await ws.close()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_bad_json_in_an_event_is_an_error_reply_not_a_crash(server: str) -> None:
    async with run_server(app(), server) as address:
        ws = await opened(address)
        await ws.send("40")
        await recv(ws)
        await ws.send('429["echo",')
        assert await recv(ws) == '439[{"error":{"message":"Invalid JSON payload"}}]'
        await ws.send('42["nope"]')
        assert await recv(ws) == '42["error",{"message":"No handler for WebSocket event \'nope\'"}]'
        await ws.send('42["echo",1]')
        assert await recv(ws) == '42["echo",1]'
        await ws.close()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_forged_pid_opens_a_new_session(server: str) -> None:
    async with run_server(app(), server) as address:
        ws = await opened(address)
        await ws.send("40/kept,")
        answer = orjson.loads(str(await recv(ws))[len("40/kept,") :])
        client_id, _token, epoch, offset = answer["pid"].split(".")
        assert answer["sid"] == client_id
        await ws.close()

        forged = f"{client_id}.{'A' * 43}.{epoch}.{offset}"
        ws = await opened(address)
        await ws.send("40/kept," + orjson.dumps({"pid": forged, "offset": offset}).decode())
        again = orjson.loads(str(await recv(ws))[len("40/kept,") :])
        assert again["sid"] != client_id and again["pid"] != forged
        await ws.close()


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_polling_bounds(server: str) -> None:
    async with run_server(app(max_polling_sessions=2), server) as address:
        base = f"http://{address}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            sids = []
            for _ in range(2):
                response = await http.get(base)
                assert response.status_code == 200
                sids.append(orjson.loads(response.text[1:])["sid"])
            assert (await http.get(base)).status_code == 503  # sessions are capped

            # A body over max_payload: 413, and the session is gone.
            big = await http.post(f"{base}&sid={sids[0]}", content=b"4" + b"x" * 10_001)
            assert big.status_code == 413
            assert (await http.get(f"{base}&sid={sids[0]}")).status_code == 400

            # Two GETs at once: the second is refused and the session closes.
            async with anyio.create_task_group() as group:
                first: list[httpx.Response] = []

                async def poll() -> None:
                    first.append(await http.get(f"{base}&sid={sids[1]}"))

                group.start_soon(poll)
                await anyio.sleep(0.2)
                second = await http.get(f"{base}&sid={sids[1]}")
            assert second.status_code == 400
            assert first[0].status_code == 200 and first[0].text == "6"
            assert (await http.get(f"{base}&sid={sids[1]}")).status_code == 400

            # Unknown sid, bad EIO, bad transport, bad method.
            assert (await http.get(f"{base}&sid=nope")).status_code == 400
            bad = f"http://{address}/socket.io/?EIO=3&transport=polling"
            assert (await http.get(bad)).status_code == 400
            assert (await http.put(base)).status_code == 400


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_origins_are_checked_for_both_transports(server: str) -> None:
    middleware = GatewayMiddleware(
        gateways=[Main],
        socketio=SocketIO(),
        allowed_origins=["https://good.example"],
    )
    async with run_server(middleware, server) as address:
        base = f"http://{address}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            refused = await http.get(base, headers={"origin": "https://evil.example"})
            assert refused.status_code == 403
            allowed = await http.get(base, headers={"origin": "https://good.example"})
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://good.example"
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                ws_url(address), origin="https://evil.example", open_timeout=WAIT
            )


@WebSocketGateway("/flood")
class Flood:
    @SubscribeMessage("flood")
    async def flood(self, data=MessageBody(), client=ConnectedSocket()):
        for _ in range(int(data)):  # a fan-out never waits: the outbox's policy applies
            await self.server.to(client).emit("chunk", "x" * 1024)
            if client.closed:
                return


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_polling_client_that_stops_fetching_holds_a_bounded_buffer(server: str) -> None:
    """The server emits 4 MiB to a polling client that never GETs: at most 256 KiB wait
    for the GET, the rest fills the gateway outbox, whose overflow policy closes the
    namespace (DISCONNECT), as for a stalled native client."""
    from gatewayasgi.socketio.polling import POLL_BUFFER

    middleware = GatewayMiddleware(
        gateways=[Flood], socketio=SocketIO(), outbox_max_messages=64, overflow="close"
    )
    async with run_server(middleware, server) as address:
        base = f"http://{address}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            sid = orjson.loads((await http.get(base)).text[1:])["sid"]
            url = f"{base}&sid={sid}"
            assert (await http.post(url, content="40/flood,")).status_code == 200
            assert (await http.post(url, content='42/flood,["flood",4096]')).status_code == 200
            socket = middleware.socketio.sockets[sid]  # type: ignore[union-attr]
            flood = middleware.server_for(Flood)
            with anyio.fail_after(WAIT):
                while flood.clients:  # closed by its outbox's overflow policy
                    await anyio.sleep(0.05)
            assert socket.polling.size <= POLL_BUFFER + 2048
            assert middleware.socketio.poll_budget.total == socket.polling.size  # type: ignore[union-attr]
            packets = (await http.get(url)).text.split("\x1e")
            assert packets[0].startswith('40/flood,{"sid":')
            assert packets[-1] == "41/flood,"  # the namespace's end, after what fit
            assert len(packets) < 300
            assert middleware.socketio.poll_budget.total == 0  # type: ignore[union-attr]


@WebSocketGateway("/rooms/{room}")
class Dynamic:
    @SubscribeMessage("where")
    def where(self, client=ConnectedSocket()):
        return {"params": client.path_params, "path": client.url.path}


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_path_parameters_are_dynamic_namespaces(server: str) -> None:
    middleware = GatewayMiddleware(gateways=[Dynamic], socketio=SocketIO())
    async with run_server(middleware, server) as address:
        ws = await opened(address)
        for room in ("abc", "d-e"):
            await ws.send(f"40/rooms/{room},")
            assert str(await recv(ws)).startswith(f'40/rooms/{room},{{"sid":"c_')
            await ws.send(f'42/rooms/{room},1["where"]')
            answer = orjson.loads(str(await recv(ws))[len(f"43/rooms/{room},1") :])
            assert answer == [{"params": {"room": room}, "path": f"/rooms/{room}"}]
        await ws.send("40/rooms/a/b,")  # no gateway serves that path
        assert await recv(ws) == '44/rooms/a/b,{"message":"Invalid namespace"}'
        await ws.close()


@WebSocketGateway("/members")
class Members:
    @SubscribeMessage("join")
    async def join(self, room=MessageBody(), client=ConnectedSocket()):
        await self.server.join(client, room)
        return room


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_presence_and_room_calls_reach_socketio_members(server: str) -> None:
    """The cluster operations serve Socket.IO members as native ones: presence lists
    them, and a room call is a Socket.IO event with an ack id that their ack answers."""
    middleware = GatewayMiddleware(gateways=[Members], socketio=SocketIO())
    gateway_server = middleware.server_for(Members)
    async with run_server(middleware, server) as address:
        ws = await opened(address)
        await ws.send("40/members,")
        sid = orjson.loads(str(await recv(ws))[len("40/members,") :])["sid"]
        await ws.send('42/members,1["join","r"]')
        assert await recv(ws) == '43/members,1["r"]'
        presence = await gateway_server.presence("r")
        assert presence.ids == (sid,)

        async def answer() -> None:
            asked = str(await recv(ws))
            assert asked.startswith("42/members,")
            head, args = asked[len("42/members,") :].split("[", 1)
            assert orjson.loads("[" + args) == ["ask", {"n": 1}]
            await ws.send(f'43/members,{head}[{{"n":2}},"extra"]')

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(answer)
            results = await gateway_server.to("r").call("ask", {"n": 1}, timeout=WAIT)
        assert results.answers == {sid: Arguments(({"n": 2}, "extra"))}
        assert type(results.answers[sid]) is Arguments  # several ack arguments
        assert results.complete
        await ws.close()


async def test_a_poll_sent_with_the_close_packet_gets_its_noop_whichever_arrives_first() -> None:
    """engine.io's client sends its close packet (a POST) and has a GET open: if the POST
    is served first, the GET that comes a moment later still gets a noop (once), as the
    conformance suite expects; later GETs, and a GET after the grace, get 400."""
    middleware = app()
    async with run_server(middleware, "hypercorn") as address:
        base = f"http://{address}/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            sid = orjson.loads((await http.get(base)).text[1:])["sid"]
            url = f"{base}&sid={sid}"
            assert (await http.post(url, content="1")).status_code == 200  # close first
            first = await http.get(url)
            assert (first.status_code, first.text) == (200, "6")
            assert (await http.get(url)).status_code == 400  # once only
            # Another session closed, its GET too late: refused.
            sid = orjson.loads((await http.get(base)).text[1:])["sid"]
            url = f"{base}&sid={sid}"
            middleware.socketio.last_polls.grace = 0.0  # type: ignore[union-attr]
            assert (await http.post(url, content="1")).status_code == 200
            assert (await http.get(url)).status_code == 400
            # A sid never seen gets nothing either.
            assert (await http.get(f"{base}&sid=AAAAAAAAAAAAAAAAAAAA")).status_code == 400
