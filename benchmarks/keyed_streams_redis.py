"""What writing a keyed stream's items to Redis costs its generator: one keyed stream in
one process, with no broker (kept in memory only) and with ``RedisBroker`` (also kept in
a Redis Stream for the other workers), in the same run, interleaved (no sockets: an
in-memory ``receive`` and a ``send`` that counts; the app's lifespan runs).

``python -m benchmarks.keyed_streams_redis`` starts a throwaway ``redis-server`` on a
free port (or uses ``--redis-url``) and prints, for each: microseconds per item as the
requester receives them (medians of ``--reps``), and with Redis also how long after the
end the Redis copy was complete (the writer catching up; the generator never waits for
it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import orjson

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway

from .micro import SCOPE


@WebSocketGateway("/ws")
class Streaming:
    def can_attach(self, client: Any, key: str) -> bool:
        return True

    @SubscribeMessage("stream")
    async def stream(self, n: int = MessageBody()) -> Any:
        for i in range(n):
            yield {"type": "text-delta", "id": "text-1", "delta": f"token {i} "}

    @SubscribeMessage("ticks")
    async def ticks(self, n: int = MessageBody()) -> Any:
        for _ in range(n):
            await asyncio.sleep(0.005)
            yield {"t": time.perf_counter()}


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run ``app``'s lifespan (startup before the body, shutdown after)."""
    to_app: Any = anyio.create_memory_object_stream[dict[str, Any]](4)
    from_app: Any = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def run() -> None:
        await app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
            to_app[1].receive,
            from_app[0].send,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await to_app[0].send({"type": "lifespan.startup"})
        assert (await from_app[1].receive())["type"] == "lifespan.startup.complete"
        try:
            yield
        finally:
            await to_app[0].send({"type": "lifespan.shutdown"})
            with anyio.move_on_after(5):
                await from_app[1].receive()
            tg.cancel_scope.cancel()


async def one_stream(app: Any, items: int, key: str) -> float:
    """Seconds per item of one keyed stream of ``items`` items, as the requester gets them."""
    request = orjson.dumps({"event": "stream", "data": items, "id": 1, "key": key}).decode()
    done = asyncio.Event()
    sent = 0
    state = {"step": 0}

    async def receive() -> dict[str, Any]:
        state["step"] += 1
        if state["step"] == 1:
            return {"type": "websocket.connect"}
        if state["step"] == 2:
            return {"type": "websocket.receive", "text": request}
        await done.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        if sent >= items + 2:  # accept, the items, the end
            done.set()

    started = time.perf_counter()
    await app(dict(SCOPE), receive, send)
    return (time.perf_counter() - started) / items


async def caught_up(app: Any, key: str) -> float:
    """Seconds until the Redis copy of ``key``'s stream holds its end."""
    hub = app.server_for("/ws").streams
    keyed = hub._keyed[key]
    run = keyed.run
    started = time.perf_counter()
    with anyio.fail_after(60):
        while not run.end_written:
            await anyio.sleep(0.0005)
    return time.perf_counter() - started


async def socket_of(app: Any, frames: list[str], on_frame: Any) -> None:
    """One connection to ``app``: sends ``frames``, hands each frame sent back to
    ``on_frame`` (which returns True at the last one), then disconnects."""
    done = asyncio.Event()
    queue = [{"type": "websocket.connect"}] + [
        {"type": "websocket.receive", "text": frame} for frame in frames
    ]

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await done.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send" and on_frame(orjson.loads(message["text"])):
            done.set()

    await app(dict(SCOPE), receive, send)


async def live_latency(a: Any, b: Any, items: int) -> list[float]:
    """Seconds from each item's making on ``a`` to its arrival at a client attached to it
    on ``b`` (two apps in one process: one clock; they share its CPU too)."""
    key = "chat-live"
    got: list[float] = []
    started = asyncio.Event()

    def at_a(frame: dict[str, Any]) -> bool:
        started.set()
        return bool(frame.get("end"))

    def at_b(frame: dict[str, Any]) -> bool:
        if "seq" in frame:
            got.append(time.perf_counter() - frame["data"]["t"])
        return ("seq" not in frame and frame.get("event") != "ticks") or bool(frame.get("end"))

    request = orjson.dumps({"event": "ticks", "data": items, "id": 1, "key": key}).decode()
    attach = orjson.dumps({"event": "$attach", "key": key, "after": 0, "id": 2}).decode()
    async with anyio.create_task_group() as tg:
        tg.start_soon(socket_of, a, [request], at_a)
        await started.wait()
        await asyncio.sleep(0.05)  # the stream's pointer is in Redis
        with anyio.fail_after(60):
            await socket_of(b, [attach], at_b)
    return got[5:]  # the replayed first ones are not live


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (or pass --redis-url)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


async def measure(url: str, items: int, reps: int) -> None:
    from gatewayasgi.brokers import RedisBroker

    memory = GatewayMiddleware(gateways=[Streaming], rate_limit=None)
    shared = GatewayMiddleware(gateways=[Streaming], rate_limit=None, broker=RedisBroker(url))
    results: dict[str, list[float]] = {"memory only": [], "memory + Redis": []}
    cpu: dict[str, list[float]] = {"memory only": [], "memory + Redis": []}
    behind: list[float] = []
    async with lifespan(memory), lifespan(shared):
        for rep in range(reps + 1):  # the first round warms up
            started = time.process_time()
            plain = await one_stream(memory, items, f"chat-{rep}")
            plain_cpu = (time.process_time() - started) / items
            started = time.process_time()
            redis = await one_stream(shared, items, f"chat-{rep}")
            lag = await caught_up(shared, f"chat-{rep}")
            redis_cpu = (time.process_time() - started) / items
            if rep:
                results["memory only"].append(plain)
                results["memory + Redis"].append(redis)
                cpu["memory only"].append(plain_cpu)
                cpu["memory + Redis"].append(redis_cpu)
                behind.append(lag)
    for name, samples in results.items():
        median = statistics.median(samples)
        print(
            f"{name:15} {median * 1e6:6.2f} us/item {1 / median:10,.0f} items/s; this process's "
            f"CPU {statistics.median(cpu[name]) * 1e6:6.2f} us/item (medians of {reps})"
        )
    ratio = statistics.median(results["memory + Redis"]) / statistics.median(results["memory only"])
    extra = statistics.median(cpu["memory + Redis"]) - statistics.median(cpu["memory only"])
    print(f"with Redis / without: {ratio:.2f}x; Redis costs this process {extra * 1e6:.2f} us/item")
    print(f"Redis copy complete {statistics.median(behind) * 1e3:.1f} ms after the end (median)")
    a, b = (
        GatewayMiddleware(gateways=[Streaming], rate_limit=None, broker=RedisBroker(url))
        for _ in range(2)
    )
    async with lifespan(a), lifespan(b):
        latencies = sorted(await live_latency(a, b, 400))
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(
        f"live item, made on one worker, at a client attached on another: p50 "
        f"{p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms ({len(latencies)} items)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keyed_streams_redis")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--redis-url", default=None)
    opts = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = opts.redis_url or stack.enter_context(redis_server())
        asyncio.run(measure(url, opts.items, opts.reps))


if __name__ == "__main__":
    main()
