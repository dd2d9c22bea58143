"""``python -m benchmarks.routing``: what interest routing saves, against namespace routing.

One redis-server; for each worker count (1, 2, 4, 8 hypercorn processes) and each
routing mode (``"namespace"``: every order on one channel every worker reads;
``"interest"``: room and client channels, ``gatewayasgi.backplane.routing``), fresh
worker processes serve this module's app. Each worker has one client; for each room
count (10, 100, 1,000), every room gets a member on two workers (room ``i`` on workers
``i mod W`` and ``i+1 mod W``). A ``RedisEmitter`` (same routing) then emits ``--frames``
100-byte frames round-robin over the rooms, and a broadcast fence; with 100 rooms
(``--split``), again with each order to two consecutive rooms, from the emitter (which
publishes once per room channel in interest mode: a worker with members of both gets
two copies and delivers one, counted as a duplicate) and from worker 0 (which does the
same only when at least four other workers are live, else uses the namespace channel).
Measured between before and after, on Redis (``INFO commandstats``, ``INFO stats``) and
on the workers (their ``Backplane.stats``):

- PUBLISH commands and the bytes Redis wrote to its clients, per delivered frame;
- orders the workers received (all of them together) per order emitted, those dropped
  as not-for-me, the duplicates, and orders received per worker per delivered frame;
- SUBSCRIBE commands the joins cost.

Then the churn cost on one interest worker: a client joining and leaving the same five
rooms 1,000 times (the linger makes that five SUBSCRIBEs), and 2,000 fresh rooms joined
and left once each, with the default budget and with a small one (500 a second, 100 at
once), timed, with the SUBSCRIBE and UNSUBSCRIBE commands counted.

Workers and redis-server are pinned to core 0, this process (emitter and clients) runs
where it likes. Heartbeats (one PUBLISH per worker per second) are in the counts too.
Writes ``benchmarks/results/routing.md``; ``--quick`` runs 1, 2 and 4 workers only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .servers import ROOT, free_port, redis_server, running

NAMESPACE = "/route"
PAYLOAD = "x" * 100
WAIT = 60.0


# -- the app the workers serve (BENCH_REDIS_URL set) --------------------------------------


def _app() -> Any:
    from gatewayasgi import (
        ConnectedSocket,
        GatewayMiddleware,
        MessageBody,
        SubscribeMessage,
        WebSocketGateway,
    )
    from gatewayasgi.backplane.routing import Routing
    from gatewayasgi.brokers import RedisBroker

    @WebSocketGateway(namespace=NAMESPACE)
    class RoutingGateway:
        @SubscribeMessage("join")
        async def join(self, rooms: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            for room in rooms:
                await self.server.join(client, room)  # type: ignore[attr-defined]
            return {"event": "joined", "data": len(rooms)}

        @SubscribeMessage("churn")
        async def churn(self, data: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            server = self.server  # type: ignore[attr-defined]
            began = time.perf_counter()
            for _ in range(data["times"]):
                for room in data["rooms"]:
                    await server.join(client, room)
                    await server.leave(client, room)
            return {"event": "churned", "data": time.perf_counter() - began}

        @SubscribeMessage("emit_many")
        async def emit_many(self, targets: Any = MessageBody()) -> Any:
            server = self.server  # type: ignore[attr-defined]
            for names in targets:
                await server.to(*names).emit("frame", PAYLOAD)
            return {"event": "emitted", "data": len(targets)}

        @SubscribeMessage("stats")
        async def stats(self) -> Any:
            backplane = app.backplane
            counts = backplane.stats.snapshot()
            counts["subscribed"] = backplane.subscriptions.subscribed
            return {"event": "stats", "data": counts}

    app = GatewayMiddleware(
        gateways=[RoutingGateway],
        broker=RedisBroker(os.environ["BENCH_REDIS_URL"]),
        routing=Routing(
            mode=os.environ.get("BENCH_ROUTING", "interest"),  # type: ignore[arg-type]
            subscribe_rate=float(os.environ.get("BENCH_SUBSCRIBE_RATE", "2000")),
            subscribe_burst=int(os.environ.get("BENCH_SUBSCRIBE_BURST", "2000")),
        ),
        max_rooms_per_connection=10_000,
        heartbeat_interval=None,
    )
    return app


app = _app() if "BENCH_REDIS_URL" in os.environ else None


# -- the driver ----------------------------------------------------------------------------


@contextlib.contextmanager
def workers(count: int, redis_url: str, **env: str) -> Iterator[list[int]]:
    """``count`` hypercorn workers of this module's app; yields their ports."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "hypercorn", "benchmarks.routing:app"]
            command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
            stack.enter_context(running(command, port, {"BENCH_REDIS_URL": redis_url, **env}))
            ports.append(port)
        yield ports


class Member:
    """One websocket client: counts room frames and fences, answers calls."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames = 0
        self.fences: set[str] = set()
        self.replies: dict[int, Any] = {}
        self.changed = asyncio.Event()
        self.next_id = 0

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if "id" in frame:
                self.replies[frame["id"]] = frame.get("data")
            elif frame["event"] == "fence":
                self.fences.add(frame["data"])
            elif frame["event"] == "frame":
                self.frames += 1
            self.changed.set()

    async def until(self, predicate: Any, within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def call(self, event: str, data: Any = None, within: float = WAIT) -> Any:
        self.next_id += 1
        frame_id = self.next_id
        await self.ws.send(json.dumps({"event": event, "data": data, "id": frame_id}))
        await self.until(lambda: frame_id in self.replies, within)
        return self.replies.pop(frame_id)


def redis_counts(client: Any) -> dict[str, int]:
    stats = client.info("stats")
    commands = client.info("commandstats")
    counts = {
        "bytes_out": int(stats["total_net_output_bytes"]),
        "bytes_in": int(stats["total_net_input_bytes"]),
    }
    for name in ("publish", "subscribe", "unsubscribe"):
        counts[name] = int(commands.get(f"cmdstat_{name}", {}).get("calls", 0))
    return counts


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


async def worker_counts(members: list[Member]) -> list[dict[str, int]]:
    return [await member.call("stats") for member in members]


def holders_of(index: int, count: int) -> set[int]:
    """The workers with a member of room ``index``."""
    return {index % count, (index + 1) % count}


async def emit_round(
    mode: str,
    count: int,
    client: Any,
    emitter: Any,
    members: list[Member],
    names: list[str],
    frames: int,
    per_order: int,
    origin: str,
) -> dict[str, Any]:
    """Emit ``frames`` orders, each to ``per_order`` consecutive rooms, from the emitter
    or from worker 0 (``origin``); count everything."""
    rooms = len(names)
    targets = [[(j + k) % rooms for k in range(per_order)] for j in range(frames)]
    expected = sum(len(set().union(*(holders_of(i, count) for i in t))) for t in targets)
    for member in members:
        member.frames = 0
    workers_before = await worker_counts(members)
    before = redis_counts(client)
    began = time.perf_counter()
    if origin == "worker":
        await members[0].call("emit_many", [[names[i] for i in chosen] for chosen in targets])
    else:
        for chosen in targets:
            await emitter.to(*(names[i] for i in chosen)).emit("frame", PAYLOAD)
    tag = f"fence-{mode}-{count}-{rooms}-{per_order}-{origin}"
    await emitter.emit("fence", tag)
    for member in members:
        await member.until(lambda m=member, t=tag: t in m.fences)  # type: ignore[misc]
    elapsed = time.perf_counter() - began
    after = diff(redis_counts(client), before)
    workers_after = await worker_counts(members)

    def total(key: str) -> int:
        pairs = zip(workers_after, workers_before, strict=True)
        return sum(a[key] - b[key] for a, b in pairs)

    received = total("received") - count  # the fence: once per worker
    delivered = sum(member.frames for member in members)
    return {
        "mode": mode,
        "workers": count,
        "rooms": rooms,
        "per_order": per_order,
        "origin": origin,
        "frames": frames,
        "delivered": delivered,
        "expected": expected,
        "publish_per_frame": after["publish"] / delivered,
        "bytes_out_per_frame": after["bytes_out"] / delivered,
        "bytes_in_per_frame": after["bytes_in"] / delivered,
        "received_per_order": received / frames,
        "dropped_per_order": total("dropped") / frames,
        "duplicates_per_order": total("duplicates") / frames,
        "received_per_worker_per_frame": received / count / delivered,
        "seconds": elapsed,
    }


async def fanout(
    mode: str, count: int, redis_url: str, room_counts: list[int], frames: int, split: set[int]
) -> list[dict[str, Any]]:
    """One worker count in one mode: every room count, on the same processes."""
    import redis
    import websockets

    from gatewayasgi.emitter import RedisEmitter

    rows: list[dict[str, Any]] = []
    client = redis.Redis.from_url(redis_url)
    with workers(count, redis_url, BENCH_ROUTING=mode) as ports:
        sockets = [
            await websockets.connect(f"ws://127.0.0.1:{port}{NAMESPACE}", max_size=None)
            for port in ports
        ]
        members = [Member(ws) for ws in sockets]
        readers = [asyncio.create_task(member.read()) for member in members]
        await asyncio.sleep(0.5)  # the clients' own channels are subscribed in the background
        async with RedisEmitter(redis_url, namespace=NAMESPACE, routing=mode) as emitter:
            for rooms in room_counts:
                names = [f"{rooms}-{i}" for i in range(rooms)]
                holders = {w: [] for w in range(count)}  # type: dict[int, list[str]]
                for i, name in enumerate(names):
                    for w in holders_of(i, count):
                        holders[w].append(name)
                joins = sum(len(held) for held in holders.values())
                before_join = redis_counts(client)
                await asyncio.gather(
                    *(members[w].call("join", holders[w]) for w in range(count) if holders[w])
                )
                joined = diff(redis_counts(client), before_join)
                cases = [(1, "emitter")]
                if rooms in split:
                    cases += [(2, "emitter"), (2, "worker")]
                for per_order, origin in cases:
                    rows.append(
                        await emit_round(
                            mode, count, client, emitter, members, names, frames, per_order, origin
                        )
                    )
                    rows[-1]["join_subscribes"] = joined["subscribe"]
                    rows[-1]["joins"] = joins
                    print(one_line(rows[-1]), flush=True)
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
    client.close()
    return rows


async def churn(redis_url: str, label: str, **env: str) -> list[dict[str, Any]]:
    """Join/leave costs on one interest worker."""
    import redis
    import websockets

    rows = []
    client = redis.Redis.from_url(redis_url)
    with workers(1, redis_url, BENCH_ROUTING="interest", **env) as (port,):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}{NAMESPACE}", max_size=None)
        member = Member(ws)
        reader = asyncio.create_task(member.read())
        await asyncio.sleep(0.5)  # the client's own channel is subscribed in the background
        cases = [
            ("same 5 rooms x 1000", {"rooms": [f"same-{n}" for n in range(5)], "times": 1000}),
            ("2000 fresh rooms x 1", {"rooms": [f"fresh-{n}" for n in range(2000)], "times": 1}),
        ]
        for name, job in cases:
            before = redis_counts(client)
            seconds = await member.call("churn", job, within=120.0)
            at_once = diff(redis_counts(client), before)
            await asyncio.sleep(3.0)  # past the linger (2 s): the unsubscribes go out
            later = diff(redis_counts(client), before)
            cycles = len(job["rooms"]) * job["times"]
            rows.append(
                {
                    "budget": label,
                    "case": name,
                    "join_leave_cycles": cycles,
                    "seconds": seconds,
                    "cycles_per_second": cycles / seconds,
                    "subscribes": at_once["subscribe"],
                    "unsubscribes_after_linger": later["unsubscribe"],
                }
            )
            print(rows[-1], flush=True)
        await ws.close()
        reader.cancel()
    client.close()
    return rows


def one_line(row: dict[str, Any]) -> str:
    return (
        f"{row['mode']:9} W={row['workers']} rooms={row['rooms']:5}x{row['per_order']} "
        f"from={row['origin']:7} "
        f"delivered={row['delivered']}/{row['expected']} "
        f"publish/frame={row['publish_per_frame']:.2f} "
        f"bytes_out/frame={row['bytes_out_per_frame']:.0f} "
        f"recv/order={row['received_per_order']:.2f} "
        f"dropped/order={row['dropped_per_order']:.2f} "
        f"dup/order={row['duplicates_per_order']:.2f} "
        f"recv/worker/frame={row['received_per_worker_per_frame']:.2f} "
        f"{row['seconds']:.2f}s"
    )


def markdown(rows: list[dict[str, Any]], churns: list[dict[str, Any]], frames: int) -> str:
    lines = [
        "# Interest routing vs namespace routing",
        "",
        f"`python -m benchmarks.routing`: {frames} frames of 100 bytes from a RedisEmitter, "
        "round-robin over the rooms (or over pairs of consecutive rooms: two rooms per "
        "order, from the emitter or from worker 0), each room with members on two workers "
        "(one with one worker). Per delivered frame: PUBLISH commands and bytes Redis "
        "wrote; orders the workers received (all together), dropped as not-for-me and "
        "duplicated, per order emitted; SUBSCRIBEs the joins cost.",
        "",
        "| workers | rooms | rooms per order | from | mode | delivered | PUBLISH / frame "
        "| Redis bytes out / frame | orders received / order | dropped / order "
        "| duplicates / order | received per worker per frame | join SUBSCRIBEs (joins) "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['rooms']} | {row['per_order']} | {row['origin']} "
            f"| {row['mode']} "
            f"| {row['delivered']}/{row['expected']} | {row['publish_per_frame']:.2f} "
            f"| {row['bytes_out_per_frame']:.0f} | {row['received_per_order']:.2f} "
            f"| {row['dropped_per_order']:.2f} | {row['duplicates_per_order']:.2f} "
            f"| {row['received_per_worker_per_frame']:.2f} "
            f"| {row['join_subscribes']} ({row['joins']}) | {row['seconds']:.2f} |"
        )
    lines += [
        "",
        "## Join and leave churn (one interest worker)",
        "",
        "| budget | case | join+leave cycles | seconds | cycles/s | SUBSCRIBEs "
        "| UNSUBSCRIBEs after the linger |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in churns:
        lines.append(
            f"| {row['budget']} | {row['case']} | {row['join_leave_cycles']} "
            f"| {row['seconds']:.2f} | {row['cycles_per_second']:.0f} | {row['subscribes']} "
            f"| {row['unsubscribes_after_linger']} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.routing", description=__doc__)
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts (default 1,2,4,8)")
    parser.add_argument("--rooms", default="10,100,1000", help="room counts (10,100,1000)")
    parser.add_argument("--frames", type=int, default=2000, help="frames per run (2000)")
    parser.add_argument(
        "--split", default="100", help="room counts also run with two-room orders (100)"
    )
    parser.add_argument("--quick", action="store_true", help="1, 2 and 4 workers only")
    parser.add_argument("--no-churn", action="store_true", help="skip the churn runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "routing.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    counts = [int(n) for n in opts.workers.split(",")]
    if opts.quick:
        counts = [n for n in counts if n <= 4]
    room_counts = [int(n) for n in opts.rooms.split(",")]
    rows: list[dict[str, Any]] = []
    churns: list[dict[str, Any]] = []
    with redis_server() as url:
        for count in counts:
            for mode in ("namespace", "interest"):
                split = {int(n) for n in opts.split.split(",") if n}
                rows += asyncio.run(fanout(mode, count, url, room_counts, opts.frames, split))
        if not opts.no_churn:
            churns += asyncio.run(churn(url, "default (2000/s, 2000 at once)"))
            small = {"BENCH_SUBSCRIBE_RATE": "500", "BENCH_SUBSCRIBE_BURST": "100"}
            churns += asyncio.run(churn(url, "small (500/s, 100 at once)", **small))
    text = markdown(rows, churns, opts.frames)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(text)
    print(text)
    print(f"written to {opts.out}")


if __name__ == "__main__":
    main()
