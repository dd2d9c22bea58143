"""What one streamed item costs: a generator handler against the manual ``client.emit``
loop it replaces, in the same process and the same run (no sockets: an in-memory
``receive`` and a ``send`` that counts).

``python -m benchmarks.streams`` prints microseconds per item for both (medians of
interleaved repetitions) and their ratio (the goal of issue 19: no worse than 1.1x).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import orjson

from gatewayasgi import (
    ConnectedSocket,
    GatewayMiddleware,
    MessageBody,
    SubscribeMessage,
    WebSocketGateway,
)

from .micro import SCOPE


@WebSocketGateway("/ws")
class Streaming:
    @SubscribeMessage("stream")
    async def stream(self, n: int = MessageBody()) -> Any:
        for i in range(n):
            yield {"i": i}

    @SubscribeMessage("manual")
    async def manual(self, n: int = MessageBody(), client: Any = ConnectedSocket()) -> Any:
        for i in range(n):
            await client.emit("manual.item", {"i": i})
        return {"items": n}


async def _run(app: Any, event: str, items: int) -> float:
    request = orjson.dumps({"event": event, "data": items, "id": 1}).decode()
    done = asyncio.Event()
    sent = 0

    async def receive() -> dict[str, Any]:
        if not hasattr(receive, "opened"):
            receive.opened = True  # type: ignore[attr-defined]
            return {"type": "websocket.connect"}
        if not hasattr(receive, "asked"):
            receive.asked = True  # type: ignore[attr-defined]
            return {"type": "websocket.receive", "text": request}
        await done.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        nonlocal sent
        sent += 1
        if sent >= items + 2:  # accept, the items, the end (or the reply)
            done.set()

    started = time.perf_counter()
    await app(dict(SCOPE), receive, send)
    return (time.perf_counter() - started) / items


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams")
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=5)
    opts = parser.parse_args()
    app = GatewayMiddleware(gateways=[Streaming], rate_limit=None)
    results: dict[str, list[float]] = {"generator handler": [], "manual emit loop": []}
    for _ in range(opts.reps):
        results["generator handler"].append(asyncio.run(_run(app, "stream", opts.items)))
        results["manual emit loop"].append(asyncio.run(_run(app, "manual", opts.items)))
    for name, samples in results.items():
        print(f"{name:18} {statistics.median(samples) * 1e6:6.2f} us/item (median of {opts.reps})")
    ratio = statistics.median(results["generator handler"]) / statistics.median(
        results["manual emit loop"]
    )
    print(f"stream / manual: {ratio:.2f}x")


if __name__ == "__main__":
    main()
