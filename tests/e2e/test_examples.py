"""The shipped examples run as the README says, under a real hypercorn server.

``examples/chat`` is what ``make run`` serves: its page, its HTTP history route and its
gateway share one ``ChatHistory``. The Starlette, Litestar and bare examples keep their
HTTP side and answer on their gateway.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from tests.servers import TIMEOUT, Client, connect, run_server

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["hypercorn", "hypercorn-trio"])
def server(request: pytest.FixtureRequest) -> str:
    """hypercorn's asyncio worker and its trio worker (the examples only meet the network)."""
    return str(request.param)


def fresh_example(name: str) -> ModuleType:
    """The example module executed anew, so its app has never been served.

    An app object started under asyncio cannot start again under trio (see
    ``test_one_app_object_served_under_asyncio_then_trio`` in test_frameworks.py).
    """
    return importlib.reload(importlib.import_module(name))


async def welcomed(client: Client) -> str:
    """The chat gateway keeps sessions: ``$session`` comes first, then the welcome."""
    session = await client.recv()
    assert session["event"] == "$session"
    assert session["data"]["recovered"] is False
    assert session["data"]["reason"] is None
    welcome = await client.recv()
    assert welcome == {
        "event": "welcome",
        "data": {"id": session["data"]["id"], "recovered": False},
    }
    return str(welcome["data"]["id"])


async def emitted(client: Client) -> Any:
    """The next frame, less its recovery ``offset`` (every server emit carries one)."""
    frame = await client.recv()
    assert isinstance(frame.pop("offset", None), str), frame
    return frame


def members(room: str, *names: str) -> dict[str, Any]:
    return {"event": "members", "data": {"room": room, "names": list(names)}}


async def test_chat_example_serves_its_page_and_chats_between_two_clients(server: str) -> None:
    """What ``make run`` serves: the page and its client, room chat, history over HTTP."""
    example = fresh_example("examples.chat.app")
    async with run_server(example.app, server) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=TIMEOUT) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "gatewayasgi chat" in page.text
            assert 'from "./client/index.js"' in page.text  # the TS client, built
            assert 'new URL("chat", location.href)' in page.text  # the gateway's socket

            # The built client is served from clients/js/dist; anything else is a 404
            # that says how to build it.
            if (example.CLIENT_DIST / "index.js").is_file():
                module = await http.get("/client/index.js")
                assert module.status_code == 200
                assert module.headers["content-type"].startswith("text/javascript")
                assert "GatewayClient" in module.text
            for missing in ("/client/nothing.js", "/client/index.d.ts"):
                refused = await http.get(missing)
                assert refused.status_code == 404
                assert "build the client first" in refused.text

            async with connect(address, "/chat") as ann, connect(address, "/chat") as bob:
                await welcomed(ann)
                await welcomed(bob)
                await ann.send("join", {"name": "ann", "room": "lobby"}, id=1)
                assert await emitted(ann) == members("lobby", "ann")
                assert await ann.recv() == {
                    "event": "join",
                    "data": {"room": "lobby", "history": [], "members": ["ann"]},
                    "id": 1,
                }

                await bob.send("join", {"name": "bob", "room": "lobby"}, id=1)
                assert await emitted(ann) == {"event": "joined", "data": {"name": "bob"}}
                assert await emitted(ann) == members("lobby", "ann", "bob")
                assert await emitted(bob) == members("lobby", "ann", "bob")
                reply = await bob.recv()
                assert reply["data"]["room"] == "lobby"
                assert reply["data"]["members"] == ["ann", "bob"]

                await bob.send("say", {"room": "lobby", "text": "hello ann"}, id=2)
                said = await emitted(bob)
                assert said["event"] == "message"
                message = said["data"]
                assert message == {
                    "id": message["id"],
                    "room": "lobby",
                    "name": "bob",
                    "text": "hello ann",
                }
                assert await emitted(ann) == said
                # The ack: the message's id and how many members it reached.
                assert await bob.recv() == {
                    "event": "say",
                    "data": {"id": message["id"], "delivered": 2},
                    "id": 2,
                }

                # The HTTP route reads the same provider instance the gateway wrote to.
                listed = await http.get("/rooms/lobby/history")
                assert listed.json() == [message]

                refused = await ann.request("say", {"room": "elsewhere", "text": "x"}, id=3)
                assert refused == {
                    "event": "error",
                    "data": {"message": "join the room first", "room": "elsewhere"},
                    "id": 3,
                }
                invalid = await ann.request("join", {"name": "", "room": "lobby"}, id=4)
                assert invalid["event"] == "error"
                assert invalid["data"]["message"] == "Invalid payload for WebSocket event 'join'"
                assert [error["loc"] for error in invalid["data"]["errors"]] == [["name"]]
                assert invalid["id"] == 4

                # Switching rooms leaves the old one: its members are told.
                await ann.send("join", {"name": "ann", "room": "garden"}, id=5)
                assert await emitted(bob) == {"event": "left", "data": {"name": "ann"}}
                assert await emitted(bob) == members("lobby", "bob")
                assert await emitted(ann) == members("garden", "ann")
                switched = await ann.recv()
                assert switched["id"] == 5
                assert switched["data"] == {"room": "garden", "history": [], "members": ["ann"]}
                assert await bob.nothing_within(0.2)

                # Back in the lobby; bob ends his session (`$end`, then close: what the TS
                # client's close() sends), so on_disconnect runs at once.
                await ann.send("join", {"name": "ann", "room": "lobby"}, id=6)
                assert await emitted(bob) == {"event": "joined", "data": {"name": "ann"}}
                assert await emitted(ann) == members("lobby", "ann", "bob")
                assert (await ann.recv())["data"]["history"] == [message]
                await bob.send("$end")
                await bob.ws.close()
                assert await emitted(ann) == {"event": "left", "data": {"name": "bob"}}
                assert await emitted(ann) == members("lobby", "ann")


@pytest.mark.parametrize(
    ("module", "greeting"),
    [
        ("examples.starlette_app", "HTTP still belongs to Starlette"),
        ("examples.litestar_app", "HTTP still belongs to Litestar"),
    ],
)
async def test_framework_examples_keep_http_and_echo_on_the_gateway(
    module: str, greeting: str, server: str
) -> None:
    """The Starlette and Litestar examples: the app's route and the gateway both answer."""
    app: Any = fresh_example(module).app
    async with run_server(app, server) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=TIMEOUT) as http:
            home = await http.get("/")
            assert home.status_code == 200
            assert home.text == greeting
        async with connect(address, "/echo") as client:
            assert await client.request("echo", {"n": 1}, id="a") == {
                "event": "echo",
                "data": {"n": 1},
                "id": "a",
            }


async def test_bare_example_serves_rooms_and_answers_http_with_404(server: str) -> None:
    """The gateway-only example: rooms work, the sender is skipped, HTTP gets 404."""
    async with run_server(fresh_example("examples.bare_app").app, server) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=TIMEOUT) as http:
            assert (await http.get("/")).status_code == 404
        async with connect(address, "/ws") as one, connect(address, "/ws") as two:
            for client in (one, two):
                reply = await client.request("join", {"room": "r1"})
                assert reply == {"event": "joined", "data": {"room": "r1"}}
            await one.send("say", {"room": "r1", "text": "hi"})
            assert await two.recv() == {"event": "said", "data": {"room": "r1", "text": "hi"}}
            assert await one.nothing_within(0.3)


async def test_chat_example_serves_socketio_clients_beside_native_ones() -> None:
    """The example also passes ``socketio=SocketIO()``: a python-socketio client joins the
    room a native client is in, says something, and each sees the other's message. The
    gateway has recovery, but ``SocketIO()`` leaves Socket.IO's connection state recovery
    off: python-socketio's handlers get the event's data alone, no offset argument."""
    import socketio

    example = fresh_example("examples.chat.app")
    async with run_server(example.app, "hypercorn") as address:
        sio = socketio.AsyncClient(reconnection=False)
        inbox: list[tuple[str, tuple[Any, ...]]] = []
        sio.on("*", lambda event, *args: inbox.append((event, args)), namespace="/chat")
        async with connect(address, "/chat") as ann:
            await welcomed(ann)
            await ann.send("join", {"name": "ann", "room": "lobby"}, id=1)
            assert await emitted(ann) == members("lobby", "ann")
            await ann.recv()  # the join's ack
            await sio.connect(
                f"http://{address}",
                namespaces=["/chat"],
                transports=["websocket"],
                wait_timeout=TIMEOUT,
            )
            try:
                joined = await sio.call(
                    "join", {"name": "sio", "room": "lobby"}, namespace="/chat", timeout=TIMEOUT
                )
                assert joined["members"] == ["ann", "sio"]
                assert await emitted(ann) == {"event": "joined", "data": {"name": "sio"}}
                assert await emitted(ann) == members("lobby", "ann", "sio")

                ack = await sio.call(
                    "say", {"room": "lobby", "text": "hi ann"}, namespace="/chat", timeout=TIMEOUT
                )
                said = await emitted(ann)
                assert said["event"] == "message" and said["data"]["text"] == "hi ann"
                assert ack == {"id": said["data"]["id"], "delivered": 2}

                await ann.send("say", {"room": "lobby", "text": "hi sio"}, id=2)
                with anyio.fail_after(TIMEOUT):
                    while not any(e == "message" and a[0]["text"] == "hi sio" for e, a in inbox):
                        await anyio.sleep(0.02)
                args = next(a for e, a in inbox if e == "message" and a[0]["text"] == "hi sio")
                assert len(args) == 1 and args[0]["name"] == "ann"  # no offset argument
                assert ("welcome", ({"id": sio.get_sid("/chat"), "recovered": False},)) in inbox
            finally:
                await sio.disconnect()
