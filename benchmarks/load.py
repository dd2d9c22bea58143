"""The load generator: picows clients on uvloop, run in their own process.

``python -m benchmarks.load '<json job>'`` runs one scenario against running servers and
prints one JSON line with the result. The runner (``python -m benchmarks``) pins this
process to a core apart from the server's. Scenarios:

- ``echo``: ``conns`` connections each keep one ``echo`` in flight for ``duration`` s.
- ``fanout``: ``members`` connections join one room (spread over ``urls``); a publisher
  sends ``frames`` publishes one at a time and times each until every member has it.
  With ``stalled``, one extra member fills its own socket buffers and stops reading.
- ``hold``: ``conns`` idle connections; prints ``READY`` and waits for a line on stdin
  (the runner measures the server's memory meanwhile), then one echo round on each.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

Handler = Callable[[str, Any], None]
_IGNORE: Handler = lambda event, data: None  # noqa: E731


class Client(WSListener):  # type: ignore[misc]
    """One connection. ``dialect`` is ``json`` or ``socketio`` (Engine.IO 4 / Socket.IO 5)."""

    def __init__(self, dialect: str, handler: Handler = _IGNORE) -> None:
        super().__init__()
        self.socketio = dialect == "socketio"
        self.handler = handler
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if not self.socketio:
            self.ready.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
            return
        payload = frame.get_payload_as_bytes()
        if not self.socketio:
            message = orjson.loads(payload)
            self.handler(message["event"], message.get("data"))
        elif payload[:2] == b"42":
            event, *rest = orjson.loads(payload[2:])
            self.handler(event, rest[0] if rest else None)
        elif payload == b"2":  # Engine.IO ping
            transport.send(WSMsgType.TEXT, b"3")
        elif payload[:2] == b"40":
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload[:1] == b"0":  # Engine.IO open: connect to the default namespace
            transport.send(WSMsgType.TEXT, b"40")

    def emit(self, event: str, data: Any) -> None:
        assert self.transport is not None
        if self.socketio:
            self.transport.send(WSMsgType.TEXT, b"42" + orjson.dumps([event, data]))
        else:
            self.transport.send(WSMsgType.TEXT, orjson.dumps({"event": event, "data": data}))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send_close()
            self.transport.disconnect()


def _small_buffer_socket(url: Any) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def connect(
    url: str, dialect: str, handler: Handler = _IGNORE, *, small_buffer: bool = False
) -> Client:
    extra: dict[str, Any] = {"socket_factory": _small_buffer_socket} if small_buffer else {}
    _, client = await ws_connect(
        lambda: Client(dialect, handler), url, websocket_handshake_timeout=30, **extra
    )
    await asyncio.wait_for(client.ready, 30)
    return client  # type: ignore[no-any-return]


async def connect_many(
    urls: list[str], count: int, dialect: str, make_handler: Callable[[int], Handler]
) -> list[Client]:
    """``count`` connections spread round-robin over ``urls``, 100 handshakes at a time."""
    clients: list[Client] = []
    for start in range(0, count, 100):
        batch = range(start, min(start + 100, count))
        clients += await asyncio.gather(
            *(connect(urls[i % len(urls)], dialect, make_handler(i)) for i in batch)
        )
    return clients


async def join_all(clients: list[Client], joined: dict[str, int], room: str) -> None:
    for client in clients:
        client.emit("join", room)
    deadline = time.monotonic() + 30
    while joined["n"] < len(clients):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {joined['n']} of {len(clients)} members joined")
        await asyncio.sleep(0.01)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def echo(job: dict[str, Any]) -> dict[str, Any]:
    state = {"running": False, "count": 0}
    latencies: list[float] = []
    sent_at: dict[int, float] = {}
    payload = {"text": "hello gateway", "n": 1}
    clients: list[Client] = []

    def make_handler(i: int) -> Handler:
        def on_event(event: str, data: Any) -> None:
            if event != "echo":
                return
            now = time.perf_counter()
            if state["running"]:
                state["count"] += 1
                latencies.append(now - sent_at[i])
            sent_at[i] = now
            clients[i].emit("echo", payload)

        return on_event

    clients += await connect_many(job["urls"], job["conns"], job["dialect"], make_handler)
    for i, client in enumerate(clients):
        sent_at[i] = time.perf_counter()
        client.emit("echo", payload)
    await asyncio.sleep(job["warmup"])
    state["running"] = True
    started = time.perf_counter()
    await asyncio.sleep(job["duration"])
    state["running"] = False
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    if not latencies:
        return {"error": "no echo replies"}
    return {
        "msgs_per_s": state["count"] / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def fanout(job: dict[str, Any]) -> dict[str, Any]:
    members, dialect = job["members"], job["dialect"]
    # The first publishes pay one-time costs (lazy writers, first-call paths, socket
    # buffers growing) on every peer: they are sent and awaited but not measured.
    warmup = job.get("warmup_publishes", 0)
    frames = warmup + job["frames"]
    joined = {"n": 0}
    received: list[int] = [0] * frames
    done: dict[int, asyncio.Future[float]] = {}

    def on_member_event(event: str, data: Any) -> None:
        if event == "message":
            k = data["k"]
            received[k] += 1
            if received[k] == members and k in done and not done[k].done():
                done[k].set_result(time.perf_counter())
        elif event == "joined":
            joined["n"] += 1

    clients = await connect_many(job["urls"], members, dialect, lambda i: on_member_event)
    await join_all(clients, joined, "bench")
    stalled: Client | None = None
    if job.get("stalled"):
        stalled_joined = {"n": 0}

        def on_stalled_event(event: str, data: Any) -> None:
            if event == "joined":
                stalled_joined["n"] += 1

        stalled = await connect(job["urls"][0], dialect, on_stalled_event, small_buffer=True)
        await join_all([stalled], stalled_joined, "bench")
        # Stop reading, then ask for more than the socket buffers hold on both sides.
        assert stalled.transport is not None
        stalled.transport.underlying_transport.pause_reading()
        stalled.emit("fill", {"count": job["fill_frames"], "size": 65536})
        await asyncio.sleep(1.0)
    publisher = await connect(job["urls"][0], dialect)
    pad = "p" * job["payload"]
    latencies: list[float] = []
    timeouts = 0
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for k in range(frames):
        done[k] = loop.create_future()
        sent = time.perf_counter()
        publisher.emit("publish", {"room": "bench", "payload": {"k": k, "pad": pad}})
        try:
            latency = await asyncio.wait_for(done[k], job["frame_timeout"]) - sent
        except asyncio.TimeoutError:
            timeouts += 1
            latency = job["frame_timeout"]
            if timeouts >= 3:
                latencies.append(latency)
                break
        if k == warmup - 1:
            started = time.perf_counter()
        elif k >= warmup:
            latencies.append(latency)
    elapsed = time.perf_counter() - started
    delivered = sum(received[warmup:])
    for client in [*clients, publisher, *([stalled] if stalled else [])]:
        client.close()
    return {
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "deliveries_per_s": delivered / elapsed,
        "timeouts": timeouts,
        "stalled_closed": bool(stalled and stalled.closed),
    }


async def hold(job: dict[str, Any]) -> dict[str, Any]:
    replies: list[float] = []
    sent_at: dict[int, float] = {}

    def make_handler(i: int) -> Handler:
        def on_event(event: str, data: Any) -> None:
            if event == "echo":
                replies.append(time.perf_counter() - sent_at[i])

        return on_event

    started = time.perf_counter()
    clients = await connect_many(job["urls"], job["conns"], job["dialect"], make_handler)
    connect_s = time.perf_counter() - started
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for i, client in enumerate(clients):
        sent_at[i] = time.perf_counter()
        client.emit("echo", {"n": i})
    deadline = time.monotonic() + 60
    while len(replies) < len(clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for client in clients:
        client.close()
    return {
        "connected": len(clients),
        "connect_s": connect_s,
        "answered": len(replies),
        "echo_p50_ms": statistics.median(replies) * 1000 if replies else None,
        "echo_p99_ms": _percentile(replies, 0.99) * 1000 if replies else None,
    }


SCENARIOS = {"echo": echo, "fanout": fanout, "hold": hold}


def main() -> None:
    job = orjson.loads(sys.argv[1])
    try:
        from uvloop import run
    except ImportError:  # pragma: no cover - Windows
        run = asyncio.run
    try:
        result = run(SCENARIOS[job["scenario"]](job))
    except Exception as exc:  # the runner records the failure in the table
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
