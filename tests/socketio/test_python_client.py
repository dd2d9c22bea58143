"""python-socketio's ``AsyncClient`` against the gateways of ``tests/socketio/pyapp.py``.

Every test runs on hypercorn and on uvicorn, over WebSocket only, over HTTP long-polling
only, and over polling upgraded to WebSocket (python-socketio upgrades inside
``connect``; the test checks that it did). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
import socketio
import websockets

from tests.servers import free_port, run_server
from tests.socketio.pyapp import CHAT, TOKEN, ChatGateway, make_app

pytestmark = pytest.mark.anyio

WAIT = 5.0
QUIET = 0.3
"""How long a client must then get nothing more to show that nothing was duplicated."""

TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


@pytest.fixture(params=["hypercorn", "uvicorn"])
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[request.param]


# -- a recording client ------------------------------------------------------------------


class Peer:
    """A python-socketio ``AsyncClient`` that records every event it gets, per namespace."""

    def __init__(self, namespaces: Sequence[str], **options: Any) -> None:
        self.sio = socketio.AsyncClient(**{"reconnection": False, "request_timeout": 5, **options})
        self.namespaces = list(namespaces)
        self.got: dict[str, list[tuple[str, tuple[Any, ...]]]] = {ns: [] for ns in namespaces}
        self.connects = 0
        self.disconnects = 0
        self.connect_errors: list[Any] = []
        self._changed = asyncio.Event()
        for ns in namespaces:
            self.sio.on("*", partial(self._record, ns), namespace=ns)
        main = self.namespaces[0]
        self.sio.on("connect", self._connected, namespace=main)
        self.sio.on("disconnect", self._disconnected, namespace=main)
        self.sio.on("connect_error", self._refused, namespace=main)

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _record(self, namespace: str, event: str, *args: Any) -> None:
        self.got[namespace].append((event, args))
        self._poke()

    async def _connected(self) -> None:
        self.connects += 1
        self._poke()

    async def _disconnected(self, *reason: Any) -> None:
        self.disconnects += 1
        self._poke()

    async def _refused(self, data: Any = None) -> None:
        self.connect_errors.append(data)
        self._poke()

    async def until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        with anyio.fail_after(within):
            while not predicate():
                await self._changed.wait()

    def events(self, event: str, namespace: str | None = None) -> list[tuple[Any, ...]]:
        """The arguments of every ``event`` received on ``namespace`` (default: the
        first one) so far."""
        got = self.got[namespace or self.namespaces[0]]
        return [args for name, args in got if name == event]

    async def wait_for(
        self, event: str, count: int = 1, namespace: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Waits until ``count`` ``event``s came; returns the arguments of all of them."""
        await self.until(lambda: len(self.events(event, namespace)) >= count)
        return self.events(event, namespace)

    async def connect(
        self, address: str, transports: list[str], auth: dict[str, Any] | None = None
    ) -> None:
        with anyio.fail_after(WAIT + 2):
            await self.sio.connect(
                f"http://{address}",
                namespaces=self.namespaces,
                auth=auth,
                transports=transports,
                wait_timeout=WAIT,
            )
        if "websocket" in transports:
            # Polling first: python-socketio upgrades inside connect(), when it can.
            await self.until(lambda: self.sio.transport() == "websocket")
        else:
            assert self.sio.transport() == "polling"

    async def call(self, event: str, data: Any = None, namespace: str | None = None) -> Any:
        namespace = namespace or self.namespaces[0]
        with anyio.fail_after(WAIT + 1):
            return await self.sio.call(event, data, namespace=namespace, timeout=WAIT)

    async def close(self) -> None:
        with anyio.move_on_after(WAIT, shield=True):
            queue = getattr(self.sio.eio, "queue", None)
            if self.sio.connected and queue is not None:
                # python-engineio's polling write loop ends when disconnect() changes the
                # state while a POST is in flight, so the DISCONNECT and CLOSE queued then
                # are never sent and disconnect() waits for its GET until request_timeout.
                with anyio.move_on_after(1):
                    await queue.join()
            await self.sio.disconnect()


@asynccontextmanager
async def peer(
    address: str,
    transports: list[str],
    *,
    namespaces: Sequence[str] = (CHAT,),
    auth: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Peer]:
    """A connected ``Peer`` (with the right token unless ``auth`` is given)."""
    client = Peer(namespaces, **options)
    try:
        await client.connect(address, transports, {"token": TOKEN} if auth is None else auth)
        yield client
    finally:
        await client.close()


async def welcomed(client: Peer) -> dict[str, Any]:
    """The ``welcome`` the guarded gateway sent on connection (one argument)."""
    [(welcome,)] = await client.wait_for("welcome")
    return dict(welcome)


# -- connecting ------------------------------------------------------------------------


async def test_handshake_guard_sees_the_auth_payload(server: str, transports: list[str]) -> None:
    async with run_server(make_app(), server) as address:
        for auth in ({"token": "wrong"}, {}):
            refused = Peer([CHAT])
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect(address, transports, auth)
            await refused.close()
            assert refused.connect_errors == [{"message": "Forbidden"}]
            assert refused.connects == 0 and refused.events("welcome") == []

        async with peer(address, transports) as client:
            welcome = await welcomed(client)
            assert welcome == {"id": client.sio.get_sid(CHAT), "auth": {"token": TOKEN}}
            assert await client.call("echo", "still here") == "still here"


async def test_main_namespace_and_a_guarded_one_on_one_connection(
    server: str, transports: list[str]
) -> None:
    async with run_server(make_app(), server) as address:
        async with peer(address, transports, namespaces=[CHAT, "/"]) as client:
            chat_id, main_id = client.sio.get_sid(CHAT), client.sio.get_sid("/")
            assert chat_id and main_id and chat_id != main_id
            assert (await welcomed(client))["id"] == chat_id
            assert await client.call("ping", [1], namespace="/") == {"pong": [1], "id": main_id}
            assert await client.call("echo", "chat", namespace=CHAT) == "chat"
            # The main namespace has no welcome: nothing crossed over.
            assert client.got["/"] == []


async def test_unknown_namespace_is_refused(server: str, transports: list[str]) -> None:
    async with run_server(make_app(), server) as address:
        refused = Peer(["/nowhere"])
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(address, transports)
        await refused.close()
        assert refused.connect_errors == [{"message": "Invalid namespace"}]


async def test_heartbeats_keep_an_idle_client_connected(server: str, transports: list[str]) -> None:
    app = make_app(ping_interval=0.2, ping_timeout=1.0)
    async with run_server(app, server) as address, peer(address, transports) as client:
        await welcomed(client)
        assert client.sio.eio.ping_interval == 0.2  # from the OPEN packet
        await anyio.sleep(1.5)  # several pings, each answered in time
        assert client.disconnects == 0 and client.sio.connected
        assert await client.call("echo", "alive") == "alive"


# -- events and acks -------------------------------------------------------------------


async def test_emit_without_ack_and_call_with_one(server: str, transports: list[str]) -> None:
    async with run_server(make_app(), server) as address, peer(address, transports) as client:
        await welcomed(client)
        await client.sio.emit("echo", {"a": [1, "two", None]}, namespace=CHAT)
        assert await client.wait_for("echoed") == [({"a": [1, "two", None]},)]
        await client.sio.emit("echo", namespace=CHAT)  # no argument: the handler gets None
        assert (await client.wait_for("echoed", 2))[1] == (None,)

        # The handler's return value answers an ack; without an ack it is not sent.
        assert await client.call("echo", {"x": 1.5}) == {"x": 1.5}
        assert await client.call("echo", "text") == "text"
        assert client.events("echo") == []
        await anyio.sleep(QUIET)
        assert [event for event, _ in client.got[CHAT]] == ["welcome"] + ["echoed"] * 4


async def test_validation_and_unknown_events_answer_errors(
    server: str, transports: list[str]
) -> None:
    async with run_server(make_app(), server) as address, peer(address, transports) as client:
        await welcomed(client)
        assert await client.call("add", {"x": 1, "y": 2}) == {"sum": 3}

        answer = await client.call("add", {"x": "not a number", "y": 2})
        assert set(answer) == {"error"}, answer
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]

        answer = await client.call("no-such-event", 1)
        assert set(answer) == {"error"}, answer
        assert isinstance(answer["error"]["message"], str)

        # Without an ack id the error comes as an `error` event.
        await client.sio.emit("add", {"x": 1}, namespace=CHAT)
        [(error,)] = await client.wait_for("error")
        assert isinstance(error, dict) and isinstance(error["message"], str), error
        assert error["message"], error


async def test_rooms_reach_their_members_once(server: str, transports: list[str]) -> None:
    async with (
        run_server(make_app(), server) as address,
        peer(address, transports) as a,
        peer(address, transports) as b,
        peer(address, transports) as outsider,
    ):
        for client in (a, b, outsider):
            await welcomed(client)
        a_id, b_id = a.sio.get_sid(CHAT), b.sio.get_sid(CHAT)
        assert await a.call("join", {"room": "r"}) == {"room": "r"}
        assert await b.call("join", {"room": "r"}) == {"room": "r"}

        await a.sio.emit("say", {"room": "r", "text": "from a"}, namespace=CHAT)
        for client in (a, b):
            await client.wait_for("said", 1)
        await b.sio.emit("say", {"room": "r", "text": "from b"}, namespace=CHAT)
        for client in (a, b):
            await client.wait_for("said", 2)
        await anyio.sleep(QUIET)
        expected = [({"from": a_id, "text": "from a"},), ({"from": b_id, "text": "from b"},)]
        assert a.events("said") == b.events("said") == expected
        assert outsider.events("said") == []


async def test_binary_payloads_in_and_out(server: str, transports: list[str]) -> None:
    blob = bytes(range(256)) + b"\x00tail"
    async with run_server(make_app(), server) as address, peer(address, transports) as client:
        await welcomed(client)
        assert await client.call("bin", blob) == {"got": blob, "kinds": "bytes"}
        [(pushed,)] = await client.wait_for("bin")
        assert pushed == {"nested": {"got": blob}, "list": [blob]}

        nested = {"blob": b"\x01\x02", "more": [b"", {"deep": blob}], "n": 1, "s": "text"}
        answer = await client.call("bin", nested)
        assert answer == {
            "got": nested,
            "kinds": {
                "blob": "bytes",
                "more": ["bytes", {"deep": "bytes"}],
                "n": "int",
                "s": "str",
            },
        }
        [_, (pushed,)] = await client.wait_for("bin", 2)
        assert pushed == {"nested": {"got": nested}, "list": [nested]}

        big = bytes(range(256)) * 800  # 200 KiB: base64 in polling bodies
        assert await client.call("bin", [big]) == {"got": [big], "kinds": ["bytes"]}

        # Several arguments, some of them binary.
        answer = await client.call("args", (b"\xff", {"b": b"\xfe"}, "c"))
        assert answer == ("Arguments", b"\xff", {"b": b"\xfe"}, "c")


async def test_several_arguments_both_ways(server: str, transports: list[str]) -> None:
    async with run_server(make_app(), server) as address, peer(address, transports) as client:
        await welcomed(client)
        # A tuple is sent as several arguments: the handler gets an Arguments, whose
        # return value answers with several arguments (a tuple for python-socketio).
        assert await client.call("args", (1, 2, 3)) == ("Arguments", 1, 2, 3)
        assert await client.call("args", 5) == ("int", 5)
        assert await client.call("args", [1, 2]) == ("list", [1, 2])
        assert await client.call("args", {"k": "v"}) == ("dict", {"k": "v"})

        await client.sio.emit("spread", [1, "two", {"three": 3}], namespace=CHAT)
        assert await client.wait_for("spread") == [(1, "two", {"three": 3})]


async def test_dict_with_event_and_data_is_emitted_without_an_ack(
    server: str, transports: list[str]
) -> None:
    async with run_server(make_app(), server) as address, peer(address, transports) as client:
        await welcomed(client)
        reply = {"event": "replied", "data": {"n": 1}}
        await client.sio.emit("echo", reply, namespace=CHAT)
        assert await client.wait_for("replied") == [({"n": 1},)]
        # With an ack the dict is the answer, as any return value.
        assert await client.call("echo", reply) == reply
        await anyio.sleep(QUIET)
        assert len(client.events("replied")) == 1


async def test_server_calls_the_client(server: str, transports: list[str]) -> None:
    app = make_app()
    async with run_server(app, server) as address, peer(address, transports) as client:
        await welcomed(client)
        asked: list[Any] = []

        @client.sio.on("question", namespace=CHAT)
        async def question(*args: Any) -> Any:
            asked.append(args)
            return {"answer": args[0] * 2}

        @client.sio.on("pair", namespace=CHAT)
        async def pair(data: Any) -> Any:
            return (data, "second")

        connection = app.server_for(ChatGateway).get_client(client.sio.get_sid(CHAT))
        assert connection is not None
        with anyio.fail_after(WAIT + 1):
            assert await connection.call("question", 21, timeout=WAIT) == {"answer": 42}
            assert asked == [(21,)]
            answer = await connection.call("pair", {"x": b"\x00"}, timeout=WAIT)
        assert isinstance(answer, tuple) and type(answer).__name__ == "Arguments", answer
        assert tuple(answer) == ({"x": b"\x00"}, "second")


# -- with native clients ---------------------------------------------------------------


async def native_next(ws: Any, event: str) -> dict[str, Any]:
    """The next JSON frame of ``event`` (others are skipped)."""
    with anyio.fail_after(WAIT):
        while True:
            frame = json.loads(await ws.recv())
            if frame["event"] == event:
                return dict(frame)


async def test_socketio_and_native_clients_share_a_room(server: str, transports: list[str]) -> None:
    async with run_server(make_app(), server) as address, peer(address, transports) as client:
        await welcomed(client)
        sio_id = client.sio.get_sid(CHAT)
        assert await client.call("join", {"room": "mixed"}) == {"room": "mixed"}
        url = f"ws://{address}{CHAT}?token={TOKEN}"
        async with websockets.connect(url, open_timeout=WAIT) as ws:
            welcome = await native_next(ws, "welcome")
            native_id = welcome["data"]["id"]
            assert welcome["data"] == {"id": native_id, "auth": {}}
            await ws.send(json.dumps({"event": "join", "data": {"room": "mixed"}, "id": 1}))
            assert await native_next(ws, "join") == {
                "event": "join",
                "data": {"room": "mixed"},
                "id": 1,
            }

            await client.sio.emit("say", {"room": "mixed", "text": "hi native"}, namespace=CHAT)
            said = {"from": sio_id, "text": "hi native"}
            assert await native_next(ws, "said") == {"event": "said", "data": said}
            assert await client.wait_for("said") == [(said,)]

            await ws.send(json.dumps({"event": "say", "data": {"room": "mixed", "text": "yo"}}))
            back = {"from": native_id, "text": "yo"}
            assert await native_next(ws, "said") == {"event": "said", "data": back}
            assert await client.wait_for("said", 2) == [(said,), (back,)]

            await anyio.sleep(QUIET)
            assert len(client.events("said")) == 2
            with anyio.move_on_after(0.01):
                extra = await ws.recv()
                pytest.fail(f"the native client got one more frame: {extra!r}")


# -- HTTP long-polling without a client library ---------------------------------------


async def test_a_polling_client_gone_in_the_middle_of_a_poll_is_disconnected(server: str) -> None:
    """A browser tab closed during a long poll: its TCP connection ends while the GET
    waits. Node's engine.io closes the session at once ("poll connection closed
    prematurely"); it must not stay in its rooms until the next ping times out."""
    app = make_app()
    async with run_server(app, server) as address:
        path = "/socket.io/?EIO=4&transport=polling"
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=WAIT) as http:
            opened = await http.get(path)
            assert opened.status_code == 200 and opened.text.startswith("0"), opened.text
            path += "&sid=" + json.loads(opened.text[1:])["sid"]
            connect = f'40{CHAT},{{"token":"{TOKEN}"}}'
            assert (await http.post(path, content=connect)).status_code == 200
            answer = (await http.get(path)).text.split("\x1e")[0]
            assert answer.startswith(f"40{CHAT},"), answer
            client_id = json.loads(answer[len(f"40{CHAT},") :])["sid"]
        gateway = app.server_for(ChatGateway)
        assert gateway.get_client(client_id) is not None

        host, port = address.split(":")
        stream = await anyio.connect_tcp(host, int(port))
        await stream.send(f"GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
        await anyio.sleep(0.3)  # the GET is waiting for packets (the next ping is 25 s away)
        await stream.aclose()
        with anyio.fail_after(3):
            while gateway.get_client(client_id) is not None:
                await anyio.sleep(0.05)


# -- a server that restarts ------------------------------------------------------------


async def test_client_reconnects_after_a_server_restart(server: str, transports: list[str]) -> None:
    port = free_port()
    options = {
        "reconnection": True,
        "reconnection_delay": 0.1,
        "reconnection_delay_max": 0.5,
        "randomization_factor": 0,
    }
    client = Peer([CHAT], **options)
    try:
        with anyio.fail_after(30):
            # A short ping interval: a long poll held by the server ends soon when it stops.
            async with run_server(make_app(ping_interval=1.0), server, port=port) as address:
                await client.connect(address, transports, {"token": TOKEN})
                first = await welcomed(client)
                assert await client.call("echo", "before") == "before"
                assert client.connects == 1
            await client.until(lambda: client.disconnects == 1)

            async with run_server(make_app(ping_interval=1.0), server, port=port):
                await client.until(lambda: client.connects == 2, within=15)
                welcomes = await client.wait_for("welcome", 2)
                second = welcomes[1][0]
                assert second["id"] == client.sio.get_sid(CHAT) != first["id"]
                assert second["auth"] == {"token": TOKEN}  # sent again on reconnection
                assert await client.call("echo", "after") == "after"
                await client.sio.emit("echo", "pushed", namespace=CHAT)
                echoed = await client.wait_for("echoed", 3)
                assert echoed[-1] == ("pushed",)
                if "websocket" in transports:
                    await client.until(lambda: client.sio.transport() == "websocket")
    finally:
        await client.close()
