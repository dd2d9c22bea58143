"""The gateway in front of a real Django ASGI app (``tests/apps/django_app.py``).

Django's ``get_asgi_application()`` raises on the ``lifespan`` scope. The middleware runs
its own startup and shutdown anyway: ``after_init`` runs before the first client, and a
``RedisBroker`` carries a Django view's push to the clients of another process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from tests import workers
from tests.apps import django_app
from tests.redis_server import RedisServer, running_redis_server
from tests.servers import TIMEOUT, connect, run_server
from tests.workers import Node, stop_node

pytestmark = pytest.mark.anyio

# Django's handler runs on asyncio only (asgiref): no hypercorn-trio here.
SERVERS = ["hypercorn", "uvicorn"]


@pytest.mark.parametrize("server", SERVERS)
async def test_django_app_refusing_lifespan_still_starts_the_gateway(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatewayasgi")
    # uvicorn runs with lifespan="on": before the middleware answered lifespan itself, a
    # Django app failed its startup there, and under hypercorn after_init waited for the
    # first websocket.
    async with run_server(django_app.build(), server) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=TIMEOUT) as http:
            state = (await http.get("/state")).json()
            assert state["initialised"] is True, "after_init did not run at startup"
            assert (await http.get("/nowhere")).status_code == 404  # Django's own 404
            async with connect(address, "/news") as a, connect(address, "/news") as b:
                assert (await a.request("follow", {"topic": "py"}))["event"] == "following"
                assert (await b.request("follow", {"topic": "js"}))["event"] == "following"
                response = await http.post("/publish", json={"topic": "py", "text": "3.14"})
                assert response.status_code == 200
                assert response.json()["local"] == 1
                assert await a.recv() == {"event": "news", "data": {"text": "3.14", "by": "main"}}
                assert await b.nothing_within(0.2)
    messages = [record.getMessage() for record in caplog.records]
    assert any("does not run lifespan" in message for message in messages), messages
    assert not any("did not run lifespan" in message for message in messages), messages


@pytest.fixture(autouse=True)
def _node_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(django_app, "NODE", "main")


# -- two worker processes on one redis-server ----------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Node, Node]]:
    workdir = tmp_path_factory.mktemp("django")
    with running_redis_server(workdir) as redis:
        started: list[Node] = []
        try:
            for name in ("A", "B"):
                started.append(
                    workers.start_node(
                        name, redis.url, workdir, "tests.apps.django_app:app", "/news"
                    )
                )
            yield redis, started[0], started[1]
        finally:
            for node in started:
                stop_node(node)


async def test_a_django_view_pushes_to_clients_of_another_process(
    nodes: tuple[RedisServer, Node, Node],
) -> None:
    _, a, b = nodes
    async with (
        httpx.AsyncClient(base_url=f"http://{a.address}", timeout=TIMEOUT) as http_a,
        httpx.AsyncClient(base_url=f"http://{b.address}", timeout=TIMEOUT) as http_b,
    ):
        for http, name in ((http_a, "A"), (http_b, "B")):
            assert (await http.get("/state")).json() == {"node": name, "initialised": True}
        async with connect(a.address, "/news") as on_a, connect(b.address, "/news") as on_b:
            assert (await on_a.request("follow", {"topic": "py"}))["data"]["node"] == "A"
            assert (await on_b.request("follow", {"topic": "py"}))["data"]["node"] == "B"
            # a view on A reaches B's client through Redis, and A's own
            response = await http_a.post("/publish", json={"topic": "py", "text": "from A"})
            assert response.json() == {"node": "A", "local": 1}
            news = {"event": "news", "data": {"text": "from A", "by": "A"}}
            assert await on_b.recv() == news
            assert await on_a.recv() == news
            # and the other way round
            await http_b.post("/publish", json={"topic": "py", "text": "from B"})
            news = {"event": "news", "data": {"text": "from B", "by": "B"}}
            assert await on_a.recv() == news
            assert await on_b.recv() == news
            assert await on_a.nothing_within(0.2) and await on_b.nothing_within(0.01)
    for node in (a, b):
        assert "did not run lifespan" not in node.log.read_text()
