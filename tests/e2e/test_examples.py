"""The shipped examples run as the README says, under a real hypercorn server.

``examples/chat`` is what ``make run`` serves: its page, its HTTP history route and its
gateway share one ``ChatHistory``. The Starlette, Litestar and bare examples keep their
HTTP side and answer on their gateway.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

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
    welcome = await client.recv()
    assert welcome["event"] == "welcome"
    return str(welcome["data"]["id"])


async def test_chat_example_serves_its_page_and_chats_between_two_clients(server: str) -> None:
    """What ``make run`` serves: the page, room chat between tabs, history over HTTP."""
    example = fresh_example("examples.chat.app")
    async with run_server(example.app, server) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=TIMEOUT) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "gatewayasgi chat" in page.text
            assert "/chat`" in page.text  # the page opens its socket on the gateway

            async with connect(address, "/chat") as ann, connect(address, "/chat") as bob:
                await welcomed(ann)
                await welcomed(bob)
                joined = await ann.request("join", {"name": "ann", "room": "lobby"}, id=1)
                assert joined == {
                    "event": "join",
                    "data": {"room": "lobby", "history": []},
                    "id": 1,
                }

                reply = await bob.request("join", {"name": "bob", "room": "lobby"}, id=1)
                assert reply["data"]["room"] == "lobby"
                assert await ann.recv() == {"event": "joined", "data": {"name": "bob"}}

                await bob.send("say", {"room": "lobby", "text": "hello ann"}, id=2)
                said = {"event": "message", "data": {"name": "bob", "text": "hello ann"}}
                assert await bob.recv() == said
                assert await ann.recv() == said

                # The HTTP route reads the same provider instance the gateway wrote to.
                listed = await http.get("/rooms/lobby/history")
                assert listed.json() == [{"name": "bob", "text": "hello ann"}]

                refused = await ann.request("say", {"room": "elsewhere", "text": "x"}, id=3)
                assert refused == {
                    "event": "error",
                    "data": {"message": "join the room first", "room": "elsewhere"},
                    "id": 3,
                }
                invalid = await ann.request("join", {"name": "", "room": "lobby"}, id=4)
                assert invalid["event"] == "error"
                assert invalid["data"]["message"] == "Invalid payload for WebSocket event 'join'"
                assert invalid["id"] == 4

                await bob.ws.close()
                assert await ann.recv() == {"event": "left", "data": {"name": "bob"}}


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
