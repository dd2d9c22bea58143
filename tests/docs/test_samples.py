"""Every code sample of the documentation site (``docs/examples``) served by a real server
and spoken to by a real client. A sample the docs show is a file here, included into its
page, so what a reader copies is what ran.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import socketio

from tests.servers import TIMEOUT, connect, run_server

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parents[2] / "docs"


def sample(name: str) -> ModuleType:
    """The sample module executed anew (an app object is served once)."""
    return importlib.reload(importlib.import_module(f"docs.examples.{name}"))


def test_every_sample_is_included_in_a_page_and_tested_here() -> None:
    """No sample file is left out of the site, and no page includes a missing one."""
    pages = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    tested = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for path in (DOCS / "examples").rglob("*.*"):
        if path.name == "__init__.py" or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(DOCS.parent).as_posix()
        assert relative in pages, f"{relative} is in no page"
        if path.suffix != ".py":  # a Node or tsc sample: the test names the file
            assert f'"{path.name}"' in tested, f"{relative} is not run by a test"
            continue
        module = path.relative_to(DOCS / "examples").with_suffix("").as_posix().replace("/", ".")
        assert f'"{module}"' in tested, f"{relative} is not served by a test"


@pytest.mark.parametrize(
    "name", ["first_fastapi", "first_starlette", "first_litestar", "first_django"]
)
async def test_first_gateway_in_each_framework(name: str) -> None:
    module = sample(name)
    with _own_urls(module) if name == "first_django" else contextlib.nullcontext():
        await _serve_first_gateway(module)


@contextlib.contextmanager
def _own_urls(module: Any) -> Iterator[None]:
    """Django's settings are configured once per process: when another test module
    configured them first (the suite collects tests/apps/django_app.py too), the sample's
    ``ROOT_URLCONF`` is put in place for this test."""
    from django.test.utils import override_settings
    from django.urls import clear_url_caches

    with override_settings(ROOT_URLCONF=module.__name__):
        clear_url_caches()
        try:
            yield
        finally:
            clear_url_caches()


async def _serve_first_gateway(module: Any) -> None:
    async with run_server(module.app, "hypercorn") as address:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            health = await http.get(f"http://{address}/health")
        assert health.json() == {"ok": True}
        async with connect(address, "/chat") as client:
            reply = await client.request("say", {"text": "hello"})
            assert reply == {"event": "said", "data": {"text": "hello", "length": 5}}
            error = await client.request("say", {"txt": "hello"})
            assert error == {  # as the README and the first-gateway page show it
                "event": "error",
                "data": {
                    "message": "Invalid payload for WebSocket event 'say'",
                    "errors": [{"type": "missing", "loc": ["text"], "msg": "Field required"}],
                },
            }


def test_the_readme_example_is_the_tested_sample() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    first = (DOCS / "examples" / "first_fastapi.py").read_text()
    assert code.strip() == first.strip()


async def test_tutorial_step1_validates() -> None:
    module = sample("tutorial.step1_validate")
    async with run_server(module.app, "hypercorn") as address, connect(address, "/chat") as c:
        reply = await c.request("join", {"name": "ann"}, id=1)
        assert reply == {
            "event": "join",
            "data": {"room": "lobby", "welcome": "hello ann"},
            "id": 1,
        }
        error = await c.request("join", {"name": "", "room": "No Spaces"}, id=2)
        assert error["event"] == "error" and error["id"] == 2
        assert sorted(e["loc"][0] for e in error["data"]["errors"]) == ["name", "room"]


async def test_tutorial_step2_rooms() -> None:
    module = sample("tutorial.step2_rooms")
    async with run_server(module.app, "hypercorn") as address:
        async with connect(address, "/chat") as ann, connect(address, "/chat") as bob:
            assert (await ann.request("join", {"name": "ann"}, id=1))["data"] == {"room": "lobby"}
            assert (await bob.request("join", {"name": "bob"}, id=1))["data"] == {"room": "lobby"}
            assert await ann.recv() == {"event": "joined", "data": {"name": "bob"}}
            await bob.send("say", {"text": "hi"}, id=2)
            said = {"event": "message", "data": {"name": "bob", "text": "hi"}}
            assert await ann.recv() == said
            assert await bob.recv() == said
            assert await bob.recv() == {"event": "say", "data": {"sent": True}, "id": 2}


async def test_tutorial_step3_guard_provider_and_http_push() -> None:
    import websockets

    module = sample("tutorial.step3_guard_push")
    async with run_server(module.app, "hypercorn") as address:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(address, "/chat?token=wrong"):
                pass
        assert refused.value.response.status_code == 403
        async with connect(address, "/chat?token=s3cret") as ann:
            await ann.request("join", {"name": "ann", "room": "ops"}, id=1)
            await ann.send("say", {"text": "buy spam now"})
            assert (await ann.recv())["data"] == {"name": "ann", "text": "buy *** now"}
            assert (await ann.recv())["data"] == {"sent": True}
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                pushed = await http.post(
                    f"http://{address}/rooms/ops/announce", params={"text": "maintenance"}
                )
            assert pushed.json() == {"delivered": 1}
            assert await ann.recv() == {
                "event": "message",
                "data": {"name": "staff", "text": "maintenance"},
            }


async def _socketio_join(address: str) -> tuple[Any, list[Any]]:
    sio = socketio.AsyncClient(reconnection=False, request_timeout=5)
    joined: list[Any] = []
    sio.on("joined", joined.append, namespace="/chat")
    await sio.connect(
        f"http://{address}", namespaces=["/chat"], transports=["websocket"], wait_timeout=TIMEOUT
    )
    try:
        answer = await sio.call("join", {"name": "ann"}, namespace="/chat", timeout=TIMEOUT)
        with anyio.fail_after(TIMEOUT):
            while not joined:
                await anyio.sleep(0.02)
    finally:
        await sio.disconnect()
    return answer, joined


@pytest.mark.parametrize("name", ["coming_from.socketio_theirs", "coming_from.socketio_ours"])
async def test_coming_from_python_socketio(name: str) -> None:
    module = sample(name)
    async with run_server(module.app, "hypercorn") as address:
        answer, joined = await _socketio_join(address)
    assert answer == {"room": "lobby"}
    assert joined == [{"name": "ann"}]


@pytest.mark.parametrize("name", ["coming_from.fastapi_theirs", "coming_from.fastapi_ours"])
async def test_coming_from_fastapi_websockets(name: str) -> None:
    module = sample(name)
    async with run_server(module.app, "hypercorn") as address:
        async with connect(address, "/chat/r1") as ann, connect(address, "/chat/r1") as bob:
            await anyio.sleep(0.1)  # both joined (on_connection runs after accept)
            await ann.send("say", {"text": "hi"})
            for client in (ann, bob):
                assert await client.recv() == {"event": "message", "data": {"text": "hi"}}
            await ann.send("say", {"text": ""})
            error = await ann.recv()
            assert error["event"] == "error"
            assert bob.ws is not None and await bob.nothing_within(0.2)
