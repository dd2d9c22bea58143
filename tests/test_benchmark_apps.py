"""Every benchmark app speaks the benchmark protocol, so ``make bench`` measures like with like.

Driven in-process (no server): the benchmark itself runs them under real servers; here
it only matters that each answers echo, join and publish the same way.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from gatewayasgi.testing import GatewayTestClient

pytestmark = pytest.mark.anyio

PEERS = [
    "benchmarks.apps.raw:app",
    "benchmarks.apps.raw:concurrent_app",
    "benchmarks.apps.gateway:app",
    "benchmarks.apps.starlette_app:app",
    "benchmarks.apps.fastapi_app:app",
    "benchmarks.apps.litestar_app:app",
]
LADDER = [
    f"benchmarks.apps.ladder:{step}"
    for step in importlib.import_module("benchmarks.apps.ladder").STEPS
]


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
