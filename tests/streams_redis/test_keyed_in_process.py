"""Keyed streams across two gateway apps in one process (two "workers": each has its own
Redis side) on one real redis-server: what the bounds trimmed is reported as trimmed to a
client of the other worker, as on the worker that runs the stream, and a position after
the trim still gets the rest and the end."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gatewayasgi import GatewayMiddleware
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.protocol import codec
from gatewayasgi.runtime import keyed_streams
from tests.redis_server import RedisServer
from tests.servers import Client, connect, run_server
from tests.streams_redis.app import Agent

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TIMEOUT = 20.0


async def _frames(ws: Client, frame_id: int) -> list[Any]:
    frames: list[Any] = []
    with anyio.fail_after(TIMEOUT):
        while True:
            frame = await ws.recv(TIMEOUT)
            if frame.get("id") != frame_id:
                continue
            frames.append(frame)
            if "seq" not in frame:
                return frames


async def test_what_was_trimmed_is_trimmed_for_another_worker_too(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyed_streams, "KEPT_ITEMS", 5)
    a = GatewayMiddleware(gateways=[Agent], broker=RedisBroker(redis_server.url))
    b = GatewayMiddleware(gateways=[Agent], broker=RedisBroker(redis_server.url))
    async with run_server(a) as address_a, run_server(b) as address_b:
        async with connect(address_a, "/agent") as starter:
            await starter.send("run", {"n": 20, "tag": "t", "delay": 0}, id=1, key="chat-t")
            assert len(await _frames(starter, 1)) == 21
            for address in (address_a, address_b):  # the same answers on both workers
                async with connect(address, "/agent") as late:
                    await late.send("$attach", None, id=2, key="chat-t")
                    assert await _frames(late, 2) == [
                        {"event": "error", "data": {"message": codec.STREAM_TRIMMED}, "id": 2}
                    ]
                    await late.send("$attach", None, id=3, key="chat-t", after=17)
                    frames = await _frames(late, 3)
                    assert [f.get("seq") for f in frames] == [18, 19, 20, None]
                    assert frames[-1]["data"]["done"] == "t"
