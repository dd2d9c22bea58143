"""What running ``def`` handlers in anyio's thread pool costs a frame, in process.

``python -m benchmarks.sync_handlers`` feeds echo frames through ``GatewayMiddleware``
(``benchmarks.micro.app_round``: no sockets, one event loop) to three gateways:

- ``async def``: the echo as a coroutine, on the loop;
- ``def``: the same echo as a plain method, which the gateway runs in the thread pool;
- ``def inline``: what the plain method cost when it ran on the loop (an ``async def``
  calling the plain function directly), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway

from .micro import app_round


def echo(data: Any) -> Any:
    return {"event": "echo", "data": data}


@WebSocketGateway("/ws")
class AsyncEcho:
    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> Any:
        return {"event": "echo", "data": data}


@WebSocketGateway("/ws")
class SyncEcho:
    @SubscribeMessage("echo")
    def echo(self, data: Any = MessageBody()) -> Any:
        return {"event": "echo", "data": data}


@WebSocketGateway("/ws")
class InlineEcho:
    @SubscribeMessage("echo")
    async def echo(self, data: Any = MessageBody()) -> Any:
        return echo(data)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_handlers")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=9)
    opts = parser.parse_args()
    gateways = {"async def": AsyncEcho, "def": SyncEcho, "def inline": InlineEcho}
    apps = {
        name: GatewayMiddleware(gateways=[cls], rate_limit=None) for name, cls in gateways.items()
    }
    results: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(opts.reps):  # interleaved, so drift hits every variant alike
        for name, app in apps.items():
            results[name].append(asyncio.run(app_round(app, opts.frames)))
    for name, samples in results.items():
        median = statistics.median(samples) * 1e6
        print(f"{name:12} {median:7.2f} us/frame (median of {opts.reps}, {opts.frames} frames)")


if __name__ == "__main__":
    main()
