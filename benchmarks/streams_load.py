"""Many streams at once on one worker: delivery rate, item latency, memory, cancel time.

``python -m benchmarks.streams_load --streams 200 --rate 50 --seconds 5`` serves
``benchmarks.streams_load:app`` under uvicorn in a process of its own (pinned to core 0
when it can be), opens ``--streams`` connections that each start one stream of ``--rate``
items a second (the item carries the time it was made), and prints:

- items per second delivered, and the p50 / p99 latency from an item's making to its
  arrival;
- the worker's RSS growth per running stream;
- the time from a ``$cancel`` to the generator's ``finally``, p50 / p99 (the server
  records it; the client fetches it with a request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import websockets

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway

ROOT = Path(__file__).resolve().parent.parent


@WebSocketGateway("/ws")
class Ticker:
    def __init__(self) -> None:
        self.cancelled_at: dict[str, float] = {}
        self.finally_after: list[float] = []

    @SubscribeMessage("tick")
    async def tick(self, rate: float = MessageBody("rate"), tag: str = MessageBody("tag")) -> Any:
        try:
            while True:
                yield time.time()
                await anyio.sleep(1 / rate)
        finally:
            asked = self.cancelled_at.pop(tag, None)
            if asked is not None:
                self.finally_after.append(time.time() - asked)

    @SubscribeMessage("cancelling")
    async def cancelling(self, tag: str = MessageBody()) -> Any:
        self.cancelled_at[tag] = time.time()
        return "ok"

    @SubscribeMessage("cancel_times")
    async def cancel_times(self) -> Any:
        return self.finally_after


app = GatewayMiddleware(gateways=[Ticker], rate_limit=None, max_connections=None)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _run(opts: argparse.Namespace, port: int, pid: int) -> None:
    url = f"ws://127.0.0.1:{port}/ws"
    latencies: list[float] = []
    counting = False
    delivered = 0

    async def reader(ws: Any) -> None:
        nonlocal delivered
        async for raw in ws:
            frame = json.loads(raw)
            if "seq" in frame and counting:
                delivered += 1
                latencies.append(time.time() - frame["data"])

    sockets = []
    async with anyio.create_task_group() as tasks:
        idle_rss = _rss(pid)
        for n in range(opts.streams):
            ws = await websockets.connect(url, max_queue=None)
            sockets.append(ws)
            request = {"event": "tick", "data": {"rate": opts.rate, "tag": str(n)}, "id": n}
            await ws.send(json.dumps(request))
            tasks.start_soon(reader, ws)
        await anyio.sleep(1.0)
        running_rss = _rss(pid)
        counting = True
        started = time.perf_counter()
        await anyio.sleep(opts.seconds)
        counting = False
        elapsed = time.perf_counter() - started
        # Cancel every stream, timed from the server's own clock.
        for n, ws in enumerate(sockets):
            await ws.send(json.dumps({"event": "cancelling", "data": str(n), "id": -1}))
            await ws.send(json.dumps({"event": "$cancel", "id": n}))
        await anyio.sleep(1.0)
        tasks.cancel_scope.cancel()
    times: list[float] = []
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"event": "cancel_times", "id": "t"}))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") == "t":
                times = frame["data"]
                break
    for ws in sockets:
        await ws.close()
    latencies.sort()
    print(f"{opts.streams} streams x {opts.rate} items/s for {opts.seconds:g} s on one worker")
    print(f"delivered: {delivered / elapsed:,.0f} items/s (asked {opts.streams * opts.rate:,})")
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        print(f"item latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    per = (running_rss - idle_rss) / opts.streams / 1024
    print(f"RSS per connection with its running stream: {per:.1f} KiB")
    if times:
        times.sort()
        print(
            f"$cancel -> finally: p50 {statistics.median(times) * 1000:.2f} ms, "
            f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms ({len(times)} streams)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams_load")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8941)
    opts = parser.parse_args()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.streams_load:app"]
    command += ["--port", str(opts.port), "--log-level", "warning", "--ws-max-queue", "1024"]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "0", *command]
    server = subprocess.Popen(command, cwd=ROOT)
    try:
        time.sleep(3.0)
        pid = int(
            subprocess.run(
                ["pgrep", "-f", f"benchmarks.streams_load:app --port {opts.port}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
        )
        asyncio.run(_run(opts, opts.port, pid))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
