"""Micro-benchmarks of the pure path: no sockets, no server, one event loop.

``python -m benchmarks.micro`` prints microseconds per frame for:

- ``codec``: decode a client frame and encode the reply (gatewayasgi.protocol.codec);
- ``raw app``: the hand-written ASGI app of the benchmarks, fed frames by an in-memory
  ``receive`` and a no-op ``send``;
- ``gatewayasgi app``: the same frames through ``GatewayMiddleware`` (routing, receive
  loop, size and rate checks, decode, dispatch, handler, encode, outbox).

The last two differ only by what the gateway does per frame, so a regression in the
runtime shows here without the noise of a server and a network.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import orjson

from gatewayasgi import GatewayMiddleware
from gatewayasgi.protocol.codec import decode, encode

from .apps.gateway import BenchGateway
from .apps.raw import app as raw_app

FRAME = orjson.dumps({"event": "echo", "data": {"text": "hello gateway", "n": 1}}).decode()
SCOPE: dict[str, Any] = {
    "type": "websocket",
    "asgi": {"version": "3.0"},
    "path": "/ws",
    "raw_path": b"/ws",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"localhost")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "subprotocols": [],
    "state": {},
}


def codec_round(frames: int) -> float:
    started = time.perf_counter()
    for _ in range(frames):
        frame = decode(FRAME)
        encode(frame.event, frame.data, frame.id)
    return (time.perf_counter() - started) / frames


async def app_round(app: Any, frames: int) -> float:
    messages: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    messages += [{"type": "websocket.receive", "text": FRAME}] * frames
    messages.append({"type": "websocket.disconnect", "code": 1000})
    feed = iter(messages)
    sent = 0

    async def receive() -> dict[str, Any]:
        return next(feed)

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1

    started = time.perf_counter()
    await app(dict(SCOPE), receive, send)
    elapsed = time.perf_counter() - started
    if sent < frames:  # accept + one reply per frame
        raise RuntimeError(f"{sent} sends for {frames} frames: the app did not answer")
    return elapsed / frames


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro")
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    opts = parser.parse_args()
    # No rate limit: every frame here arrives at the same instant.
    gateway_app = GatewayMiddleware(gateways=[BenchGateway], rate_limit=None)
    results: dict[str, list[float]] = {"codec": [], "raw app": [], "gatewayasgi app": []}
    for _ in range(opts.reps):
        results["codec"].append(codec_round(opts.frames))
        results["raw app"].append(asyncio.run(app_round(raw_app, opts.frames)))
        results["gatewayasgi app"].append(asyncio.run(app_round(gateway_app, opts.frames)))
    for name, samples in results.items():
        print(f"{name:16} {statistics.median(samples) * 1e6:6.2f} us/frame (median of {opts.reps})")
    overhead = statistics.median(results["gatewayasgi app"]) - statistics.median(results["raw app"])
    print(f"gateway overhead over the raw app: {overhead * 1e6:.2f} us/frame")


if __name__ == "__main__":
    main()
