"""The README's Gateways, streaming and HTTP push samples run as written."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from gatewayasgi.testing import GatewayTestClient, WebSocketClosed, WebSocketDenied
from tests.rough_edges.readme import python_block, run_block

MEMBER = {"x-role": "member"}
ADMIN = {"x-role": "admin"}


@pytest.mark.anyio
async def test_the_gateways_sample_defines_every_name_and_serves() -> None:
    sample: Any = run_block("Gateways", "class EventsGateway")
    app = sample["app"]
    async with GatewayTestClient(app) as client:
        with pytest.raises(WebSocketDenied, match="gateway /events refused it"):
            async with client.websocket_connect("/events", headers=MEMBER):
                pass
        async with client.websocket_connect("/events?token=secret", headers=ADMIN) as ws:
            await ws.emit("join", {"room": "r1"}, id=1)
            assert await ws.receive_json() == {"event": "join", "data": {"room": "r1"}, "id": 1}
            await ws.emit("post", {"title": "hello"}, id=2)
            assert await ws.receive_json() == {
                "event": "posted",
                "data": {"id": 1, "title": "hello"},
                "id": 2,
            }
            await ws.emit("post", {"body": "no title"}, id=3)
            invalid = await ws.receive_json()
            assert invalid["data"]["errors"][0]["loc"] == ["title"]
        async with client.websocket_connect("/events?token=secret", headers=MEMBER) as ws:
            await ws.emit("post", {"title": "not mine to post"}, id=4)
            denied = await ws.receive_json()
            assert denied["data"]["message"] == "Access denied: insufficient permissions"
            with pytest.raises(WebSocketClosed) as closed:
                await ws.receive_json()
            assert closed.value.code == 1008


@pytest.mark.anyio
async def test_the_streaming_recipe_runs() -> None:
    namespace: dict[str, Any] = {}
    exec("from gatewayasgi import *", namespace)
    exec(python_block("Streaming replies", "class JobsGateway"), namespace)
    from gatewayasgi import GatewayMiddleware

    app = GatewayMiddleware(gateways=[namespace["JobsGateway"]])
    async with GatewayTestClient(app) as client:
        async with client.websocket_connect("/jobs") as ws:
            await ws.emit("count", {"n": 2}, id=7)
            frames = [await ws.receive_json() for _ in range(3)]
    assert frames == [
        {"event": "count.item", "data": {"i": 0}},
        {"event": "count.item", "data": {"i": 1}},
        {"event": "count", "data": {"done": True, "items": 2}, "id": 7},
    ]


@pytest.mark.parametrize("variant", ["server_for", "add_middleware"])
def test_pushing_from_an_http_route_reaches_websocket_clients(variant: str) -> None:
    """Both README recipes, under Starlette's TestClient (lifespan included)."""
    containing = "server_for(NewsGateway)" if variant == "server_for" else "add_middleware"
    sample: Any = run_block("Pushing from HTTP routes", containing)
    app = sample["app"] if variant == "server_for" else sample["api"]
    with TestClient(app) as client:
        with client.websocket_connect("/news") as first, client.websocket_connect("/news") as two:
            response = client.post("/headlines", params={"text": "extra!"})
            assert response.json() == {"sent": True}
            expected = {"event": "headline", "data": {"text": "extra!"}}
            assert first.receive_json() == expected
            assert two.receive_json() == expected
