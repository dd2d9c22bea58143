"""MessagePack against JSON: bytes on the wire and echo round trips on one real server.

``python -m benchmarks.msgpack_wire [--server uvicorn] [--reps 5] [--duration 3]``
serves ``BenchGateway`` with ``protocols=[MessagePack()]`` (``apps/gateway_msgpack.py``)
from one server process pinned to one core; this process (picows clients on uvloop) is
pinned to another. Each rep runs every (payload, protocol) pair in turn (interleaved);
``conns`` connections (50) each keep one ``echo`` in flight. Payloads:

- ``text``: ``{"text": "hello gateway", "n": 1}`` (the benchmark suite's echo);
- ``record``: a 20-field object of numbers, strings, booleans and a nested list;
- ``blob``: ``{"name", "body"}`` with 4 KiB of random bytes: ``bin`` in MessagePack,
  base64 text in JSON (the client encodes and decodes it, as a JSON client must).

Printed per pair: median round trips/s over the reps, and the payload bytes of one
request and one reply (WebSocket frame headers excluded), measured on the traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import sys
import time
from typing import Any

import orjson
import ormsgpack
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .servers import LOAD_CPU, free_port, running, server_command

SUBPROTOCOL = "gatewayasgi.msgpack"
_rng = random.Random(7)
BLOB = bytes(_rng.getrandbits(8) for _ in range(4096))
PAYLOADS: dict[str, Any] = {
    "text": {"text": "hello gateway", "n": 1},
    "record": {
        **{f"count_{i}": i * 1009 for i in range(8)},
        **{f"ratio_{i}": i / 7 for i in range(4)},
        **{f"label_{i}": f"item-{i}" for i in range(4)},
        **{f"flag_{i}": i % 2 == 0 for i in range(3)},
        "tags": [[1, 2, 3], ["a", "b"], {"x": 1.5, "y": None}],
    },
    "blob": {"name": "blob", "body": BLOB},
}


class Echoer(WSListener):  # type: ignore[misc]
    """One connection that sends ``echo`` again each time its reply arrives."""

    def __init__(self, protocol: str, payload: Any, stats: dict[str, int]) -> None:
        super().__init__()
        self.msgpack = protocol == "msgpack"
        self.stats = stats
        self.transport: WSTransport | None = None
        if self.msgpack:
            self.kind = WSMsgType.BINARY
            self.frame = ormsgpack.packb({"event": "echo", "data": payload})
        else:
            self.kind = WSMsgType.TEXT
            self.frame = orjson.dumps({"event": "echo", "data": _to_json(payload)})

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send(self) -> None:
        assert self.transport is not None
        # Encoding is part of a round trip: a client sends data, not a cached frame.
        if self.msgpack:
            frame = ormsgpack.packb(ormsgpack.unpackb(self.frame))
        else:
            frame = orjson.dumps(orjson.loads(self.frame))
        self.stats["sent_bytes"] += len(frame)
        self.transport.send(self.kind, frame)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        raw = frame.get_payload_as_bytes()
        if self.msgpack:
            message = ormsgpack.unpackb(raw)
        else:
            message = orjson.loads(raw)
            _from_json(message["data"])
        if message["event"] != "echo":
            raise RuntimeError(f"unexpected frame {message!r:.200}")
        self.stats["received_bytes"] += len(raw)
        self.stats["replies"] += 1
        if self.stats["running"]:
            self.stats["count"] += 1
        self.send()


def _to_json(payload: Any) -> Any:
    if isinstance(payload, dict) and isinstance(payload.get("body"), bytes):
        return {**payload, "body": base64.b64encode(payload["body"]).decode()}
    return payload


def _from_json(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("body"), str) and "name" in data:
        return {**data, "body": base64.b64decode(data["body"])}
    return data


async def echo(
    url: str, protocol: str, payload: Any, conns: int, duration: float
) -> dict[str, float]:
    stats = {"running": 0, "count": 0, "sent_bytes": 0, "received_bytes": 0, "replies": 0}
    headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL} if protocol == "msgpack" else None
    clients = []
    for _ in range(conns):
        _, client = await ws_connect(
            lambda: Echoer(protocol, payload, stats), url, extra_headers=headers
        )
        clients.append(client)
    for client in clients:
        client.send()
    await asyncio.sleep(0.5)  # warm-up
    stats["running"] = 1
    started = time.perf_counter()
    await asyncio.sleep(duration)
    stats["running"] = 0
    elapsed = time.perf_counter() - started
    for client in clients:
        client.transport.send_close()
        client.transport.disconnect()
    replies = max(stats["replies"], 1)
    return {
        "round_trips_per_s": stats["count"] / elapsed,
        "request_bytes": stats["sent_bytes"] / (replies + conns),
        "reply_bytes": stats["received_bytes"] / replies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "hypercorn", "granian"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=50)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    port = free_port()
    command = server_command(args.server, "benchmarks.apps.gateway_msgpack:app", port)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with running(command, port):
        url = f"ws://127.0.0.1:{port}/ws"
        for rep in range(args.reps):
            for name, payload in PAYLOADS.items():
                for protocol in ("json", "msgpack"):
                    result = asyncio.run(echo(url, protocol, payload, args.conns, args.duration))
                    results.setdefault((name, protocol), []).append(result)
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
    print(
        f"server={args.server} reps={args.reps} duration={args.duration}s conns={args.conns} "
        f"(medians)"
    )
    print(f"{'payload':8} {'protocol':8} {'round trips/s':>14} {'request B':>10} {'reply B':>8}")
    for name in PAYLOADS:
        base = None
        for protocol in ("json", "msgpack"):
            runs = results[(name, protocol)]
            rate = statistics.median(run["round_trips_per_s"] for run in runs)
            request = statistics.median(run["request_bytes"] for run in runs)
            reply = statistics.median(run["reply_bytes"] for run in runs)
            ratio = "" if base is None else f"  x{rate / base:.2f} of json"
            base = base or rate
            print(f"{name:8} {protocol:8} {rate:14,.0f} {request:10,.0f} {reply:8,.0f}{ratio}")


if __name__ == "__main__":
    main()
