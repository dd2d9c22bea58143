"""Mounted under a root path: the namespace still matches, everything else reaches the app.

Servers disagree on what ``root_path`` means: hypercorn passes the request path as
is (clients keep the prefix), uvicorn prepends ``root_path`` to it (a proxy stripped
the prefix). A Starlette ``Mount`` keeps the full path and extends ``root_path``.
The gateway must match its namespace in all three.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets.exceptions
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from gatewayasgi import ConnectedSocket, GatewayMiddleware, SubscribeMessage, WebSocketGateway
from tests.reliability import eventually
from tests.servers import connect, run_server

pytestmark = pytest.mark.anyio


@WebSocketGateway("/chat")
class ChatGateway:
    @SubscribeMessage("where")
    def where(self, client=ConnectedSocket()):
        return {"path_params": client.path_params, "url_path": client.url.path}


@WebSocketGateway("/rooms/{room_id}")
class RoomGateway:
    @SubscribeMessage("where")
    def where(self, client=ConnectedSocket()):
        return {"path_params": client.path_params, "url_path": client.url.path}


GATEWAYS = [ChatGateway, RoomGateway]


class PlainApp:
    """The wrapped app: answers HTTP with the scope's paths, records websocket scopes."""

    def __init__(self) -> None:
        self.websocket_paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            body = json.dumps({"path": scope["path"], "root_path": scope.get("root_path", "")})
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body.encode()})
        elif scope["type"] == "websocket":
            self.websocket_paths.append(scope["path"])
            await receive()
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return


async def where(address: str, path: str) -> Any:
    async with connect(address, path) as client:
        reply = await client.request("where", id=1)
    assert reply["event"] == "where" and reply["id"] == 1
    return reply["data"]


async def refused(address: str, path: str) -> bool:
    """True when the websocket handshake at ``path`` is refused (no gateway owns it)."""
    try:
        async with connect(address, path) as client:
            await client.expect_close()
    except websockets.exceptions.InvalidStatus:
        return True
    return False


async def http_get(address: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"http://{address}{path}")


async def test_hypercorn_root_path_keeps_the_prefix_in_the_request_path() -> None:
    """hypercorn ``root_path="/api"``: clients use /api/chat; HTTP /api/... reaches the app."""
    inner = PlainApp()
    app = GatewayMiddleware(inner, gateways=GATEWAYS)
    async with run_server(app, "hypercorn", root_path="/api") as address:
        chat = await where(address, "/api/chat")
        assert chat["path_params"] == {}
        assert chat["url_path"].endswith("/chat")
        room = await where(address, "/api/rooms/7")
        assert room["path_params"] == {"room_id": "7"}

        response = await http_get(address, "/api/hello")
        assert response.status_code == 200
        assert response.json() == {"path": "/api/hello", "root_path": "/api"}
        assert await refused(address, "/api/elsewhere")
        assert inner.websocket_paths == ["/api/elsewhere"]
        await eventually(lambda: not app.server_for(ChatGateway).clients)


async def test_uvicorn_root_path_is_prepended_to_the_proxied_path() -> None:
    """uvicorn ``root_path="/api"``: a proxy forwards /chat, the scope says /api/chat."""
    inner = PlainApp()
    app = GatewayMiddleware(inner, gateways=GATEWAYS)
    async with run_server(app, "uvicorn", root_path="/api") as address:
        chat = await where(address, "/chat")
        assert chat["path_params"] == {}
        assert chat["url_path"].endswith("/chat")
        room = await where(address, "/rooms/abc")
        assert room["path_params"] == {"room_id": "abc"}

        response = await http_get(address, "/hello")
        assert response.status_code == 200
        assert response.json() == {"path": "/api/hello", "root_path": "/api"}
        assert await refused(address, "/elsewhere")
        assert inner.websocket_paths == ["/api/elsewhere"]
        await eventually(lambda: not app.server_for(ChatGateway).clients)


def starlette_app() -> tuple[Starlette, GatewayMiddleware, GatewayMiddleware]:
    """Gateways alone under /api, gateways in front of an inner Starlette app under /v2."""

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def status(request: Any) -> JSONResponse:
        return JSONResponse(
            {"path": request.scope["path"], "root_path": request.scope.get("root_path", "")}
        )

    bare = GatewayMiddleware(None, gateways=GATEWAYS)
    fronted = GatewayMiddleware(Starlette(routes=[Route("/status", status)]), gateways=GATEWAYS)
    app = Starlette(
        routes=[Route("/hello", hello), Mount("/api", app=bare), Mount("/v2", app=fronted)]
    )
    return app, bare, fronted


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_starlette_mount_matches_namespaces_under_the_mount(server: str) -> None:
    """``Mount("/api", GatewayMiddleware(None, ...))``: /api/chat is the gateway; the
    outer routes and an inner app behind the middleware still answer HTTP."""
    app, bare, fronted = starlette_app()
    async with run_server(app, server) as address:
        chat = await where(address, "/api/chat")
        assert chat["path_params"] == {}
        assert chat["url_path"].endswith("/api/chat")
        room = await where(address, "/api/rooms/9")
        assert room["path_params"] == {"room_id": "9"}
        assert (await where(address, "/v2/rooms/x"))["path_params"] == {"room_id": "x"}

        assert (await http_get(address, "/hello")).text == "hello"
        inner = await http_get(address, "/v2/status")
        assert inner.status_code == 200
        assert inner.json()["path"] == "/v2/status"
        assert (await http_get(address, "/api/status")).status_code == 404
        assert await refused(address, "/api/elsewhere")
        assert await refused(address, "/chat")  # outside the mount: not the gateway
        await eventually(lambda: not bare.server_for(ChatGateway).clients)
        await eventually(lambda: not fronted.server_for(RoomGateway).clients)
