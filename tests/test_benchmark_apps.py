"""Every benchmark app speaks the benchmark protocol, so ``make bench`` measures like with like.

Driven in-process (no server): the benchmark itself runs them under real servers; here
it only matters that each answers echo, join, publish and fill the same way. The Socket.IO
peers (python-socketio and gatewayasgi serving Socket.IO) are spoken to as the load
generator does: Engine.IO 4 over a WebSocket, ``42[event, data]`` packets, no acks.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from benchmarks.apps import SOCKETIO_PATH
from gatewayasgi.testing import GatewayTestClient, TestWebSocket

pytestmark = pytest.mark.anyio

PEERS = [
    "benchmarks.apps.raw:app",
    "benchmarks.apps.raw:concurrent_app",
    "benchmarks.apps.gateway:app",
    "benchmarks.apps.starlette_app:app",
    "benchmarks.apps.fastapi_app:app",
    "benchmarks.apps.litestar_app:app",
]
SOCKETIO_PEERS = [
    "benchmarks.apps.socketio_app:app",
    "benchmarks.apps.gateway_socketio:app",
]
LADDER = [
    f"benchmarks.apps.ladder:{step}"
    for step in importlib.import_module("benchmarks.apps.ladder").STEPS
]
ENGINEIO = f"{SOCKETIO_PATH}/?EIO=4&transport=websocket"


def load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("target", PEERS + LADDER)
async def test_app_echoes(target: str) -> None:
    async with GatewayTestClient(load(target)) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.emit("echo", {"text": "hello", "n": 1})
            assert await ws.receive_json() == {"event": "echo", "data": {"text": "hello", "n": 1}}


@pytest.mark.parametrize("target", PEERS)
async def test_peer_joins_and_publishes_to_its_room(target: str) -> None:
    async with GatewayTestClient(load(target)) as client:
        async with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
            for ws in (one, two):
                await ws.emit("join", "bench-test")
                assert await ws.receive_json() == {"event": "joined", "data": "bench-test"}
            await one.emit("publish", {"room": "bench-test", "payload": {"k": 1}})
            for ws in (one, two):
                assert await ws.receive_json() == {"event": "message", "data": {"k": 1}}


@pytest.mark.parametrize("target", PEERS)
async def test_peer_fills_the_caller(target: str) -> None:
    async with GatewayTestClient(load(target)) as client:
        async with client.websocket_connect("/ws") as ws:
            await ws.emit("fill", {"count": 3, "size": 5})
            for _ in range(3):
                assert await ws.receive_json() == {"event": "fill", "data": "xxxxx"}


@asynccontextmanager
async def socketio_connect(client: GatewayTestClient) -> AsyncIterator[TestWebSocket]:
    """An Engine.IO WebSocket joined to the main namespace, as ``benchmarks.load`` does."""
    # A real server passes the upgrade request's headers on; python-socketio checks them.
    headers = {"upgrade": "websocket", "connection": "Upgrade"}
    async with client.websocket_connect(ENGINEIO, headers=headers) as ws:
        opened = await ws.receive_text()
        assert opened.startswith("0{"), opened  # Engine.IO open
        await ws.send_text("40")
        connected = await ws.receive_text()
        assert connected.startswith("40"), connected
        yield ws


async def sio_emit(ws: TestWebSocket, event: str, data: Any) -> None:
    await ws.send_text("42" + orjson.dumps([event, data]).decode())


async def sio_receive(ws: TestWebSocket) -> list[Any]:
    """The next event's ``[event, *arguments]``, answering Engine.IO pings meanwhile."""
    while True:
        text = await ws.receive_text()
        if text == "2":
            await ws.send_text("3")
            continue
        assert text.startswith("42"), text
        return list(orjson.loads(text[2:]))


@pytest.mark.parametrize("target", SOCKETIO_PEERS)
async def test_socketio_peer_echoes(target: str) -> None:
    async with GatewayTestClient(load(target)) as client, socketio_connect(client) as ws:
        await sio_emit(ws, "echo", {"text": "hello", "n": 1})
        assert await sio_receive(ws) == ["echo", {"text": "hello", "n": 1}]


@pytest.mark.parametrize("target", SOCKETIO_PEERS)
async def test_socketio_peer_joins_and_publishes_to_its_room(target: str) -> None:
    async with GatewayTestClient(load(target)) as client:
        async with socketio_connect(client) as one, socketio_connect(client) as two:
            for ws in (one, two):
                await sio_emit(ws, "join", "bench-test")
                assert await sio_receive(ws) == ["joined", "bench-test"]
            await sio_emit(one, "publish", {"room": "bench-test", "payload": {"k": 1}})
            for ws in (one, two):
                assert await sio_receive(ws) == ["message", {"k": 1}]


@pytest.mark.parametrize("target", SOCKETIO_PEERS)
async def test_socketio_peer_fills_the_caller(target: str) -> None:
    async with GatewayTestClient(load(target)) as client, socketio_connect(client) as ws:
        await sio_emit(ws, "fill", {"count": 3, "size": 5})
        for _ in range(3):
            assert await sio_receive(ws) == ["fill", "xxxxx"]
