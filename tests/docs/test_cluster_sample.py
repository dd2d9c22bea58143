"""The Redis Cluster sample of ``docs/deployment/redis-cluster.md``, run as the page shows
it: a worker serving ``docs.examples.scaling.cluster:app`` on the test cluster, and the
sample's emitter reaching a client of it (through the history, with an offset)."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import websockets

from tests.cluster.nodes import eventually
from tests.redis_cluster import RedisCluster
from tests.workers import start_node, stop_node

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SAMPLE = "scaling.cluster"
SECRET = "docs-sample-secret-0123456789"


@pytest.fixture
def sample_env(redis_cluster: RedisCluster) -> Iterator[None]:
    saved = {
        name: os.environ.get(name) for name in ("REDIS_CLUSTER_URL", "GATEWAY_BACKPLANE_SECRET")
    }
    os.environ["REDIS_CLUSTER_URL"] = redis_cluster.url
    os.environ["GATEWAY_BACKPLANE_SECRET"] = SECRET
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def test_the_cluster_sample_serves_and_its_emitter_reaches_the_clients(
    redis_cluster: RedisCluster, sample_env: None, tmp_path: Path
) -> None:
    module = importlib.reload(importlib.import_module(f"docs.examples.{SAMPLE}"))
    node = start_node(
        "docs", redis_cluster.url.split(",")[0], tmp_path, f"docs.examples.{SAMPLE}:app"
    )
    try:
        async with websockets.connect(
            f"ws://{node.address}/chat", subprotocols=["gatewayasgi"], open_timeout=10
        ) as ws:
            with anyio.fail_after(10):
                first = json.loads(await ws.recv())
            assert first["event"] == "$session"
            async with module.emitter() as emitter:

                async def heard() -> bool:
                    await emitter.emit("news", "hello")
                    with anyio.move_on_after(0.5):
                        frame = json.loads(await ws.recv())
                        return bool(frame["event"] == "news" and "offset" in frame)
                    return False

                await eventually(heard, 15.0)
    finally:
        stop_node(node)
