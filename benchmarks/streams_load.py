"""Many streams at once on one worker: delivery rate, item latency, memory, cancel time.

``python -m benchmarks.streams_load --streams 1000 --rate 50 --seconds 5`` serves
``benchmarks.streams_load:app`` under uvicorn in a process of its own (pinned to core 0
when it can be), and from this process (picows clients on uvloop, pinned to core 1)
opens ``--streams`` connections, then starts one stream of ``--rate`` items a second on
each (the starts spread over one period, so the streams are not in step; each item
carries the time it was made and the time it was due on its schedule), and prints:

- items per second delivered against the rate asked, and the p50 / p99 latency from an
  item's making to its arrival, and from its due time (which also counts a generator
  that runs late) to its arrival (over ``--seconds``, after ``--warmup`` seconds: the
  start of 1,000 streams leaves a backlog that takes seconds to clear, and a shorter
  warm-up measures that instead);
- the CPU the server and this client used meanwhile, and the server's CPU time per
  item delivered (the generators keep a fixed schedule: a worker that cannot keep up
  delivers less than asked, and its latency grows);
- the worker's RSS growth per idle connection, and per running stream on top of it;
- the time from a ``$cancel`` to the generator's ``finally``, p50 / p99 (the streams
  are cancelled one after another over about a second, the others still running; the
  server records each time, the client fetches them with a request).

``--rates 10,20,50`` runs one fresh server per rate and prints a line each, for finding
the largest rate the worker sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from gatewayasgi import GatewayMiddleware, MessageBody, SubscribeMessage, WebSocketGateway

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@WebSocketGateway("/ws")
class Ticker:
    def __init__(self) -> None:
        self.cancelled_at: dict[str, float] = {}
        self.finally_after: list[float] = []

    @SubscribeMessage("tick")
    async def tick(
        self,
        rate: float = MessageBody("rate"),
        tag: str = MessageBody("tag"),
        phase: float = MessageBody("phase"),
    ) -> Any:
        try:
            due = time.time() + phase
            while True:  # on a fixed schedule: a late item does not delay the next ones
                await anyio.sleep(max(0.0, due - time.time()))
                yield [time.time(), due]  # made, and when it was due
                due += 1 / rate
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


class Counting(WSListener):  # type: ignore[misc]
    """One connection: counts stream items (and their latency) while ``on`` is set."""

    def __init__(self, stats: dict[str, Any]) -> None:
        super().__init__()
        self.stats = stats
        self.transport: WSTransport | None = None
        self.replies: dict[Any, asyncio.Future[Any]] = {}

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        now = time.time()
        message = orjson.loads(frame.get_payload_as_bytes())
        stats = self.stats
        if "seq" in message:
            if stats["on"]:
                stats["delivered"] += 1
                made, due = message["data"]
                stats["latencies"].append(now - made)
                stats["lateness"].append(now - due)
            return
        waiting = self.replies.pop(message.get("id"), None)
        if waiting is not None and not waiting.done():
            waiting.set_result(message.get("data"))

    def send(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    def request(self, event: str, data: Any, frame_id: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.replies[frame_id] = future
        self.send({"event": event, "data": data, "id": frame_id})
        return future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.send_close()
            self.transport.disconnect()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))]


async def _run(opts: argparse.Namespace, rate: float, port: int, pid: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}/ws"
    stats: dict[str, Any] = {"on": False, "delivered": 0, "latencies": [], "lateness": []}
    empty_rss = _rss(pid)
    clients: list[Counting] = []
    for start in range(0, opts.streams, 100):  # 100 handshakes at a time
        batch = range(start, min(start + 100, opts.streams))
        made = await asyncio.gather(
            *(
                ws_connect(lambda: Counting(stats), url, websocket_handshake_timeout=60)
                for _ in batch
            )
        )
        for transport, client in made:
            client.transport = transport
            clients.append(client)
    await asyncio.sleep(0.5)
    idle_rss = _rss(pid)
    period = 1 / rate
    for n, client in enumerate(clients):
        phase = period * n / opts.streams
        client.send(
            {"event": "tick", "data": {"rate": rate, "tag": str(n), "phase": phase}, "id": n}
        )
    await asyncio.sleep(opts.warmup)
    running_rss = _rss(pid)
    server_cpu, own_cpu = _cpu_seconds(pid), _own_cpu()
    stats["on"] = True
    started = time.perf_counter()
    await asyncio.sleep(opts.seconds)
    stats["on"] = False
    elapsed = time.perf_counter() - started
    server_cpu = (_cpu_seconds(pid) - server_cpu) / elapsed
    own_cpu = (_own_cpu() - own_cpu) / elapsed
    # Cancel every stream, one after another over about a second (the others still
    # running), each timed from the server's own clock.
    for n, client in enumerate(clients):
        client.send({"event": "cancelling", "data": str(n), "id": -1})
        client.send({"event": "$cancel", "id": n})
        await asyncio.sleep(1 / opts.streams)
    times: list[float] = []
    deadline = time.monotonic() + 30
    while len(times) < opts.streams and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        times = await asyncio.wait_for(clients[0].request("cancel_times", None, "t"), 30)
    for client in clients:
        client.close()
    latencies = sorted(stats["latencies"])
    lateness = sorted(stats["lateness"])
    times.sort()
    return {
        "rate": rate,
        "asked": opts.streams * rate,
        "delivered": stats["delivered"] / elapsed,
        "p50_ms": _pct(latencies, 0.5) * 1000 if latencies else float("nan"),
        "p99_ms": _pct(latencies, 0.99) * 1000 if latencies else float("nan"),
        "due_p50_ms": _pct(lateness, 0.5) * 1000 if lateness else float("nan"),
        "due_p99_ms": _pct(lateness, 0.99) * 1000 if lateness else float("nan"),
        "server_cpu": server_cpu,
        "server_us_per_item": server_cpu / max(1.0, stats["delivered"] / elapsed) * 1e6,
        "client_cpu": own_cpu,
        "idle_kib": (idle_rss - empty_rss) / opts.streams / 1024,
        "stream_kib": (running_rss - idle_rss) / opts.streams / 1024,
        "cancel_p50_ms": statistics.median(times) * 1000 if times else float("nan"),
        "cancel_p99_ms": _pct(times, 0.99) * 1000 if times else float("nan"),
        "cancelled": len(times),
    }


def _report(opts: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"{opts.streams} streams x {r['rate']:g} items/s for {opts.seconds:g} s on one worker")
    print(
        f"delivered: {r['delivered']:,.0f} items/s (asked {r['asked']:,.0f}: "
        f"{r['delivered'] / r['asked']:.0%})"
    )
    print(
        f"item latency from making: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms; "
        f"from its due time: p50 {r['due_p50_ms']:.2f} ms, p99 {r['due_p99_ms']:.2f} ms"
    )
    print(
        f"CPU: server {r['server_cpu']:.0%} of a core ({r['server_us_per_item']:.1f} us an "
        f"item), this client {r['client_cpu']:.0%}"
    )
    print(
        f"RSS: {r['idle_kib']:.1f} KiB per idle connection, "
        f"+{r['stream_kib']:.1f} KiB per running stream"
    )
    print(
        f"$cancel -> finally: p50 {r['cancel_p50_ms']:.2f} ms, "
        f"p99 {r['cancel_p99_ms']:.2f} ms ({r['cancelled']} streams)"
    )
    print("JSON " + orjson.dumps(r).decode(), flush=True)


def _serve_and_run(opts: argparse.Namespace, rate: float) -> dict[str, Any]:
    from .servers import free_port, pinned, wait_for_port

    port = opts.port or free_port()
    command = [sys.executable, "-m", "uvicorn", "benchmarks.streams_load:app"]
    command += ["--port", str(port), "--log-level", "warning", "--ws-max-queue", "1024"]
    server = subprocess.Popen(pinned(command, "0"), cwd=ROOT)  # taskset execs: same pid
    try:
        wait_for_port(port, server)  # type: ignore[arg-type]
        time.sleep(0.5)
        import uvloop

        return uvloop.run(_run(opts, rate, port, server.pid))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams_load")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rates", default=None, help="comma-separated: one run per rate")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    opts = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load apart from the server's core
    rates = [float(r) for r in opts.rates.split(",")] if opts.rates else [opts.rate]
    for rate in rates:
        _report(opts, _serve_and_run(opts, rate))


if __name__ == "__main__":
    main()
