"""``python -m benchmarks.cluster``: one redis-server against a 3-master Redis Cluster.

The same workers, the same load, the same run, on two backplanes: one redis-server
(PUBLISH/SUBSCRIBE) and a real Redis Cluster of three masters with one replica each
(``tests/redis_cluster.py``'s helpers; SPUBLISH/SSUBSCRIBE, ``RedisBroker(urls,
cluster=True)``). Every Redis node and every hypercorn worker is pinned to core 0 (as in
``benchmarks.routing``); this process (websocket clients and the ``RedisEmitter``) runs
where it likes. Each worker serves one client; room ``i`` has a member on workers
``i mod W`` and ``i+1 mod W`` (one member with one worker).

a. **Fan-out**: 2 and 4 workers, 100 rooms, interest routing. The emitter sends
   ``--frames`` frames round-robin over the rooms as fast as it can (each ``emit`` awaits
   its publish), every frame carrying its send time: deliveries per second (from the
   first send to the last arrival) and the p50/p99 of send-to-arrival at that load;
   then ``--paced`` frames a second for two seconds: p50/p99 when nothing queues.
   ``--reps`` (3) repetitions on the same processes; medians.
b. **Counts**: on the cluster (and on redis-server, for comparison), 1, 2, 4 and 8
   workers, 10, 100 and 1,000 rooms, interest and namespace routing; ``--count-frames``
   frames each. Read before and after on every
   master (``INFO commandstats``, ``INFO stats``, ``INFO cpu``): commands (all but
   INFO/PING/CLUSTER) and SPUBLISHes, bytes written to clients
   (``total_net_output_bytes``), CPU seconds and ``usec_per_call`` of SPUBLISH, per
   shard; and on every worker (``Backplane.stats``): orders received per worker per
   delivered frame.

Writes ``benchmarks/results/cluster.md``. ``--poll-latency`` measures only the cluster
reader's polling: redis-py's ``get_sharded_message(timeout=...)`` in a loop, one channel
on each master, 20 messages a second (adds its table to the results file of an earlier
full run). ``--quick``: 2 workers for the fan-out, 1, 2
and 4 for the counts, one repetition.

``--partitions 1,8`` measures only a gateway with session recovery on the cluster, its
history in that many partitions (``Recovery(partitions=N)``: Redis Streams of their own
hash tags), 2 workers, 100 rooms: the ``RedisEmitter`` (with the gateway's ``Recovery``)
appends ``--history-frames`` frames round-robin over the rooms, each worker reads every
partition. Per master: streams held, the history's commands (EVALSHA of the append
script, the XADDs it runs, the workers' XREADs), all commands, bytes in and out, CPU, per
delivered frame (net of the idle background, as for the counts). Adds its table to the
results file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .routing import Member, holders_of
from .servers import ROOT, free_port, redis_server, running

NAMESPACE = "/bench-cluster"
PAD = "x" * 100
WAIT = 60.0
IDLE = 2.0
SKIP = {"info", "ping", "cluster", "command", "client", "hello", "config"}
NET_OF_IDLE = ("bytes_out", "bytes_in", "cpu", "commands", "publish", "scripts", "xadd", "xread")
"""Counters a run's figures are given net of the idle background (and of reading them)."""


# -- the app the workers serve (BENCH_BACKPLANE_URL set; BENCH_CLUSTER=1 for a cluster) ------


def _app() -> Any:
    from gatewayasgi import (
        ConnectedSocket,
        GatewayMiddleware,
        MessageBody,
        Recovery,
        SubscribeMessage,
        WebSocketGateway,
    )
    from gatewayasgi.backplane.routing import Routing
    from gatewayasgi.brokers import RedisBroker

    partitions = os.environ.get("BENCH_PARTITIONS")
    recovery = None if partitions is None else Recovery(window=60, partitions=int(partitions))

    @WebSocketGateway(namespace=NAMESPACE, recovery=recovery)
    class FanoutGateway:
        @SubscribeMessage("join")
        async def join(self, rooms: Any = MessageBody(), client: Any = ConnectedSocket()) -> Any:
            for room in rooms:
                await self.server.join(client, room)  # type: ignore[attr-defined]
            return {"event": "joined", "data": len(rooms)}

        @SubscribeMessage("stats")
        async def stats(self) -> Any:
            return {"event": "stats", "data": app.backplane.stats.snapshot()}

    app = GatewayMiddleware(
        gateways=[FanoutGateway],
        broker=RedisBroker(
            os.environ["BENCH_BACKPLANE_URL"], cluster=os.environ.get("BENCH_CLUSTER") == "1"
        ),
        routing=Routing(mode=os.environ.get("BENCH_ROUTING", "interest")),  # type: ignore[arg-type]
        max_rooms_per_connection=10_000,
        heartbeat_interval=None,
    )
    return app


app = _app() if "BENCH_BACKPLANE_URL" in os.environ else None


# -- backplanes ----------------------------------------------------------------------------


class Backplane:
    """A backplane under test: its URL for the workers, and its masters' ports."""

    def __init__(self, name: str, url: str, masters: list[int], cluster: bool) -> None:
        self.name = name
        self.url = url
        self.masters = masters
        self.cluster = cluster

    def env(self) -> dict[str, str]:
        return {"BENCH_BACKPLANE_URL": self.url, "BENCH_CLUSTER": "1" if self.cluster else "0"}


@contextlib.contextmanager
def single() -> Iterator[Backplane]:
    with redis_server() as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        yield Backplane("redis-server", url, [port], cluster=False)


@contextlib.contextmanager
def cluster() -> Iterator[Backplane]:
    """Three masters, three replicas, no AOF, every node pinned to core 0."""
    sys.path.insert(0, str(ROOT))
    from tests.redis_cluster import running_redis_cluster

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as workdir:
        with running_redis_cluster(Path(workdir)) as nodes:
            if (os.cpu_count() or 1) >= 2:
                for server in nodes.servers:
                    process = server._process  # pinned like redis-server
                    if process is not None:
                        os.sched_setaffinity(process.pid, {0})
            masters = sorted(node.port for node in nodes.masters())
            yield Backplane("cluster (3 masters)", nodes.url, masters, cluster=True)


def shard_counts(port: int) -> dict[str, float]:
    """Counters of one master."""
    import redis

    with redis.Redis(port=port) as client:
        stats = client.info("stats")
        commands = client.info("commandstats")
        cpu = client.info("cpu")
    counts: dict[str, float] = {
        "bytes_out": int(stats["total_net_output_bytes"]),
        "bytes_in": int(stats["total_net_input_bytes"]),
        "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "commands": 0,
        "scripts": 0,
        "xadd": 0,
        "xread": 0,
    }
    for key, value in commands.items():
        name = key.removeprefix("cmdstat_")
        if name.split("|")[0] not in SKIP:
            counts["commands"] += int(value["calls"])
        if name in ("publish", "spublish"):
            counts["publish"] = counts.get("publish", 0) + int(value["calls"])
            counts["publish_usec"] = counts.get("publish_usec", 0) + int(value["usec"])
        if name in ("eval", "evalsha"):
            counts["scripts"] += int(value["calls"])
        if name in ("xadd", "xread"):  # a script's XADDs count too
            counts[name] += int(value["calls"])
    counts.setdefault("publish", 0)
    counts.setdefault("publish_usec", 0)
    return counts


def all_shards(backplane: Backplane) -> dict[int, dict[str, float]]:
    return {port: shard_counts(port) for port in backplane.masters}


def shard_diff(
    after: dict[int, dict[str, float]], before: dict[int, dict[str, float]]
) -> dict[int, dict[str, float]]:
    return {
        port: {key: value - before[port].get(key, 0) for key, value in counts.items()}
        for port, counts in after.items()
    }


# -- clients -------------------------------------------------------------------------------


class Timed(Member):
    """A ``Member`` that also keeps each frame's send-to-arrival time."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.latencies: list[float] = []
        self.arrival = 0.0

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if "id" in frame:
                self.replies[frame["id"]] = frame.get("data")
            elif frame["event"] == "frame":
                self.frames += 1
                self.arrival = time.perf_counter()
                self.latencies.append(self.arrival - frame["data"]["t"])
            self.changed.set()


@contextlib.asynccontextmanager
async def deployment(
    backplane: Backplane,
    count: int,
    mode: str,
    room_counts: list[int],
    partitions: int | None = None,
) -> Any:
    """``count`` workers and their clients; yields (members, emitter, rooms by count).
    With ``partitions``, the gateway keeps a history in that many partitions
    (``Recovery(partitions=...)``) and the emitter appends to it."""
    import websockets

    from gatewayasgi import Recovery
    from gatewayasgi.emitter import RedisEmitter

    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "hypercorn", "benchmarks.cluster:app"]
            command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
            env = {**backplane.env(), "BENCH_ROUTING": mode}
            if partitions is not None:
                env["BENCH_PARTITIONS"] = str(partitions)
            stack.enter_context(running(command, port, env))
            ports.append(port)
        sockets = [
            await websockets.connect(f"ws://127.0.0.1:{port}{NAMESPACE}", max_size=None)
            for port in ports
        ]
        members = [Timed(ws) for ws in sockets]
        readers = [asyncio.create_task(member.read()) for member in members]
        recovery = None if partitions is None else Recovery(window=60, partitions=partitions)
        emitter = RedisEmitter(
            backplane.url,
            namespace=NAMESPACE,
            routing=mode,
            cluster=backplane.cluster,
            recovery=recovery,
        )
        try:
            await asyncio.sleep(0.5)  # the clients' own channels, subscribed in the background
            rooms: dict[int, list[str]] = {}
            for room_count in room_counts:
                names = [f"{room_count}-{i}" for i in range(room_count)]
                held: dict[int, list[str]] = {w: [] for w in range(count)}
                for i, name in enumerate(names):
                    for w in holders_of(i, count):
                        held[w].append(name)
                await asyncio.gather(
                    *(members[w].call("join", held[w]) for w in range(count) if held[w])
                )
                rooms[room_count] = names
            yield members, emitter, rooms
        finally:
            await emitter.aclose()
            for ws in sockets:
                await ws.close()
            for task in readers:
                task.cancel()


async def arrived(members: list[Timed], expected: int, within: float = WAIT) -> int:
    """Wait (bounded) until ``expected`` frames arrived in all; return how many did."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if sum(m.frames for m in members) >= expected:
            break
        await asyncio.sleep(0.005)
    return sum(m.frames for m in members)


def reset(members: list[Timed]) -> None:
    for member in members:
        member.frames = 0
        member.latencies = []


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def send(emitter: Any, names: list[str], frames: int, rate: float | None) -> None:
    began = time.perf_counter()
    for j in range(frames):
        if rate:
            delay = began + j / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await emitter.to(names[j % len(names)]).emit("frame", {"t": time.perf_counter(), "p": PAD})


def expected_for(names: list[str], frames: int, count: int) -> int:
    return sum(len(holders_of(j % len(names), count)) for j in range(frames))


# -- a. fan-out throughput and latency ------------------------------------------------------


async def fanout(
    backplane: Backplane, count: int, frames: int, paced: int, reps: int
) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    async with deployment(backplane, count, "interest", [100]) as (members, emitter, rooms):
        names = rooms[100]
        await send(emitter, names, 200, None)  # warm the connections up
        await arrived(members, expected_for(names, 200, count))
        for _ in range(reps):
            reset(members)
            expected = expected_for(names, frames, count)
            began = time.perf_counter()
            await send(emitter, names, frames, None)
            delivered = await arrived(members, expected)
            latencies = [lat for m in members for lat in m.latencies]
            run = {
                "delivered": delivered,
                "expected": expected,
                "p50": percentile(latencies, 0.50),
                "p99": percentile(latencies, 0.99),
            }
            run["seconds"] = max(m.arrival for m in members if m.frames) - began
            run["rate"] = delivered / run["seconds"]
            reset(members)
            paced_frames = 2 * paced
            expected = expected_for(names, paced_frames, count)
            await send(emitter, names, paced_frames, float(paced))
            await arrived(members, expected)
            latencies = [lat for m in members for lat in m.latencies]
            run["paced_p50"] = percentile(latencies, 0.50)
            run["paced_p99"] = percentile(latencies, 0.99)
            runs.append(run)
            print(f"{backplane.name} W={count} " + " ".join(f"{k}={v:.4g}" for k, v in run.items()))
    row: dict[str, Any] = {"backplane": backplane.name, "workers": count, "runs": len(runs)}
    for key in runs[0]:
        row[key] = statistics.median(run[key] for run in runs)
    row["delivered_all"] = sum(run["delivered"] for run in runs)
    row["expected_all"] = sum(run["expected"] for run in runs)
    return row


# -- b. counts ----------------------------------------------------------------------------


async def counts(
    backplane: Backplane,
    count: int,
    mode: str,
    room_counts: list[int],
    frames: int,
    partitions: int | None = None,
) -> list[dict[str, Any]]:
    rows = []
    async with deployment(backplane, count, mode, room_counts, partitions) as (
        members,
        emitter,
        rooms,
    ):
        first = all_shards(backplane)
        overhead = shard_diff(all_shards(backplane), first)  # reading the counters itself
        idle_began = time.perf_counter()
        idle_before = all_shards(backplane)
        await asyncio.sleep(IDLE)
        idle = shard_diff(all_shards(backplane), idle_before)
        idle_seconds = time.perf_counter() - idle_began
        for port, shard in idle.items():
            for key, value in shard.items():
                shard[key] = max(0.0, value - overhead[port][key]) / idle_seconds
        for room_count in room_counts:
            names = rooms[room_count]
            reset(members)
            expected = expected_for(names, frames, count)
            workers_before = [await m.call("stats") for m in members]
            before = all_shards(backplane)
            began = time.perf_counter()
            await send(emitter, names, frames, None)
            delivered = await arrived(members, expected)
            seconds = time.perf_counter() - began
            await asyncio.sleep(0.2)  # let stray replies and counters settle
            shards = shard_diff(all_shards(backplane), before)
            window = time.perf_counter() - began
            for port, shard in shards.items():  # less reading them and the idle background
                for key in NET_OF_IDLE:
                    shard[key] -= overhead[port][key] + idle[port][key] * window
            workers_after = [await m.call("stats") for m in members]
            received = sum(
                a["received"] - b["received"]
                for a, b in zip(workers_after, workers_before, strict=True)
            )
            dropped = sum(
                a["dropped"] - b["dropped"]
                for a, b in zip(workers_after, workers_before, strict=True)
            )
            row = {
                "backplane": backplane.name,
                "partitions": partitions,
                "mode": mode,
                "workers": count,
                "rooms": room_count,
                "frames": frames,
                "delivered": delivered,
                "expected": expected,
                "seconds": seconds,
                "shards": shards,
                "received_per_worker_per_frame": received / count / max(delivered, 1),
                "received_per_order": received / frames,
                "dropped_per_order": dropped / frames,
                "idle_per_second": idle,
                "read_overhead": overhead,
            }
            rows.append(row)
            print(one_line(row), flush=True)
    return rows


def one_line(row: dict[str, Any]) -> str:
    per = row["delivered"] or 1
    shards = " ".join(
        f"[{s['publish'] / per:.2f}p {s['commands'] / per:.2f}c {s['bytes_out'] / per:.0f}B]"
        for s in row["shards"].values()
    )
    return (
        f"{row['mode']:9} W={row['workers']} rooms={row['rooms']:5} "
        f"delivered={row['delivered']}/{row['expected']} {shards} "
        f"recv/worker/frame={row['received_per_worker_per_frame']:.3f} {row['seconds']:.2f}s"
    )


# -- the cluster reader's polling, apart from the gateway --------------------------------


async def poll_latency(url: str, masters: dict[int, str], timeout: float) -> list[str]:
    """redis-py's ``ClusterPubSub.get_sharded_message(timeout=...)`` read in a loop (as the
    broker's cluster subscriber reads), one channel subscribed on each master: send-to-
    receive latency of 200 messages at 20 a second to each master's channel, then with
    only one master's channel subscribed."""
    from redis.asyncio.cluster import RedisCluster

    async def measure(subscribed: list[str], target: str) -> tuple[float, float, float]:
        sub = RedisCluster.from_url(url.split(",")[0])
        pub = RedisCluster.from_url(url.split(",")[0])
        pubsub = sub.pubsub()
        await pubsub.ssubscribe(*subscribed)
        latencies: list[float] = []

        async def read() -> None:
            while True:
                message = await pubsub.get_sharded_message(
                    timeout=timeout, ignore_subscribe_messages=True
                )
                if message and message["type"] in (b"smessage", "smessage"):
                    latencies.append(time.perf_counter() - float(message["data"]))

        reader = asyncio.create_task(read())
        try:
            await asyncio.sleep(0.5)
            for _ in range(200):
                await pub.spublish(target, str(time.perf_counter()))
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            reader.cancel()
            await pubsub.aclose()
            await sub.aclose()
            await pub.aclose()
        return (
            percentile(latencies, 0.5),
            percentile(latencies, 0.9),
            percentile(latencies, 0.99),
        )

    lines = []
    channels = list(masters.values())
    for port, channel in masters.items():
        p50, p90, p99 = await measure(channels, channel)
        lines.append(
            f"| {timeout * 1e3:.0f} ms | 3 | {port} | {p50 * 1e3:.1f} | {p90 * 1e3:.1f} "
            f"| {p99 * 1e3:.1f} |"
        )
    port, channel = next(iter(masters.items()))
    p50, p90, p99 = await measure([channel], channel)
    lines.append(
        f"| {timeout * 1e3:.0f} ms | 1 | {port} | {p50 * 1e3:.1f} | {p90 * 1e3:.1f} "
        f"| {p99 * 1e3:.1f} |"
    )
    return lines


def channel_per_master(backplane: Backplane) -> dict[int, str]:
    """A room channel name owned by each master."""
    import redis

    with redis.Redis(port=backplane.masters[0]) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
        owned: dict[int, str] = {}
        for i in range(1000):
            channel = f"gatewayasgi:room:{NAMESPACE}:poll-{i}"
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", channel))
            for first, last, master, *_ in slots:
                if first <= slot <= last:
                    owned.setdefault(int(master[1]), channel)
            if len(owned) == len(backplane.masters):
                break
    return dict(sorted(owned.items()))


POLL_HEAD = [
    "## The cluster reader's polling",
    "",
    "`python -m benchmarks.cluster --poll-latency` (written after the full run, on the "
    "same VM): redis-py's `ClusterPubSub.get_sharded_message(timeout=...)` read in a loop "
    "by one task, as the broker's cluster subscriber reads (with a 50 ms poll), one room "
    "channel subscribed on each of the 3 masters; 200 messages at 20 a second to each "
    "master's channel in turn, then with one master's channel subscribed only. "
    "Send-to-receive latency, no gateway involved.",
    "",
]


# -- c. the history's partitions on the cluster ---------------------------------------------


def history_keys(partitions: int) -> list[str]:
    """The stream keys of the gateway's history on a cluster (``RedisLog.key``)."""
    if partitions == 1:
        return [f"gatewayasgi:{{history:{NAMESPACE}}}"]
    return [f"gatewayasgi:{{history:{NAMESPACE}#{part}}}" for part in range(partitions)]


def streams_per_master(backplane: Backplane, partitions: int) -> dict[int, int]:
    """How many of the history's streams each master owns (``CLUSTER KEYSLOT``, ``SLOTS``)."""
    import redis

    held = dict.fromkeys(backplane.masters, 0)
    with redis.Redis(port=backplane.masters[0]) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
        for key in history_keys(partitions):
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for first, last, master, *_ in slots:
                if first <= slot <= last:
                    held[int(master[1])] += 1
    return held


async def history(
    backplane: Backplane, partitions: int, frames: int, workers: int = 2
) -> dict[str, Any]:
    """One run: ``workers`` workers, 100 rooms, ``frames`` appended by the emitter."""
    (row,) = await counts(backplane, workers, "interest", [100], frames, partitions)
    row["streams"] = streams_per_master(backplane, partitions)
    return row


HISTORY_HEAD = "## History partitions on the cluster"


def history_markdown(rows: list[dict[str, Any]], command: str) -> str:
    frames = rows[0]["frames"] if rows else 0
    lines = [
        HISTORY_HEAD,
        "",
        f"`{command}` (on the same VM, written after the full run): a gateway with session "
        "recovery on the cluster (3 masters, 3 replicas, no AOF, every node and worker "
        "pinned to core 0), its history in 1 or more partitions (`Recovery(partitions=N)`, "
        "one Redis Stream each, keys of their own hash tags), 2 workers (or as the table "
        "says), 100 rooms with members spread over the workers. The `RedisEmitter` "
        "(with the gateway's `Recovery`) appends "
        f"{frames} frames of ~130 bytes round-robin over the rooms (each `emit` awaits its "
        "append script: one EVALSHA a frame); every worker reads every partition "
        "(`XREAD BLOCK`). Per master, ordered by port: the history's streams it holds, "
        "then per frame sent: EVALSHA, the XADDs the script runs, the workers' XREADs (each "
        "returns what came since the last), all commands (the script's own included; not "
        "INFO, PING, CLUSTER, CLIENT, HELLO, "
        "COMMAND, CONFIG), bytes in and out (`total_net_input_bytes`, "
        "`total_net_output_bytes`: the workers' reads and the replica's copy) and CPU "
        "(user+sys), net of reading the counters and of each master's idle background "
        f"({IDLE:.0f} s, scaled to the run's window).",
        "",
        "| partitions | workers | delivered | streams per master | EVALSHA / frame "
        "| XADD / frame | XREAD / frame | commands / frame | bytes in / frame "
        "| bytes out / frame | CPU µs / frame | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        shards = row["shards"]

        def each(fmt: str, key: str, scale: float = 1.0, row: dict[str, Any] = row) -> str:
            sent = row["frames"] or 1
            values = [max(0.0, s[key]) * scale / sent for s in row["shards"].values()]
            return " / ".join(format(value, fmt) for value in values)

        held = " / ".join(str(row["streams"].get(port, 0)) for port in shards)
        lines.append(
            f"| {row['partitions']} | {row['workers']} | {row['delivered']}/{row['expected']} "
            f"| {held} "
            f"| {each('.2f', 'scripts')} | {each('.2f', 'xadd')} | {each('.3f', 'xread')} "
            f"| {each('.1f', 'commands')} | {each('.0f', 'bytes_in')} "
            f"| {each('.0f', 'bytes_out')} | {each('.1f', 'cpu', 1e6)} "
            f"| {row['seconds']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def replace_section(path: Path, heading: str, text: str) -> None:
    """Put ``text`` (a section starting with ``heading``) in the results file ``path``:
    in place of an earlier copy of that section (up to the next ``## `` heading), or at
    the end."""
    earlier = path.read_text() if path.exists() else ""
    head, found, rest = earlier.partition(heading)
    tail = ""
    if found:
        _, following, after = rest.partition("\n## ")
        tail = "## " + after if following else ""
    parts = [part.strip("\n") for part in (head, text, tail) if part.strip("\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(parts) + "\n")


# -- report -------------------------------------------------------------------------------


def usec(shard: dict[str, float]) -> float:
    return shard["publish_usec"] / shard["publish"] if shard["publish"] else float("nan")


def markdown(fan: list[dict[str, Any]], rows: list[dict[str, Any]], opts: Any) -> str:
    lines = [
        "# One redis-server against a Redis Cluster",
        "",
        "`python -m benchmarks.cluster` on a 2-core VM shared with other jobs (numbers are "
        "noisy): every Redis node and every hypercorn worker pinned to core 0, the "
        "websocket clients and the `RedisEmitter` in one driver process on either core. "
        "The cluster: 3 masters and 3 replicas, Redis 7 (`tests/redis_cluster.py`'s "
        "helpers, no AOF). One client per worker; room *i* has members on workers "
        "*i* mod W and *i*+1 mod W.",
        "",
        "## Fan-out: deliveries per second and latency (interest routing, 100 rooms)",
        "",
        f"{opts.frames} frames of ~130 bytes round-robin over the rooms from the emitter, as "
        "fast as it publishes (each `emit` awaits its PUBLISH/SPUBLISH), then "
        f"{opts.paced} frames/s for 2 s. Latency is from `emit` to arrival at the client, "
        f"both in the driver process. Medians of {opts.reps} runs.",
        "",
        "| backplane | workers | delivered (all runs) | deliveries/s | p50 ms | p99 ms "
        f"| p50 ms at {opts.paced}/s | p99 ms at {opts.paced}/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in fan:
        lines.append(
            f"| {row['backplane']} | {row['workers']} "
            f"| {row['delivered_all']:.0f}/{row['expected_all']:.0f} | {row['rate']:.0f} "
            f"| {row['p50'] * 1e3:.1f} | {row['p99'] * 1e3:.1f} "
            f"| {row['paced_p50'] * 1e3:.1f} | {row['paced_p99'] * 1e3:.1f} |"
        )
    lines += [
        "",
        "## Counts per delivered frame, per shard",
        "",
        f"{opts.count_frames} frames round-robin over the rooms from the emitter. Per "
        "master (ordered by port; the cluster's three slot ranges): SPUBLISH (PUBLISH on "
        "redis-server), commands (all but INFO, PING, CLUSTER, CLIENT, HELLO, COMMAND, "
        "CONFIG), bytes written to clients (`total_net_output_bytes`), all per delivered "
        "frame; the master's CPU (user+sys) per delivered frame, and SPUBLISH's "
        "`usec_per_call` (the command alone, without the socket writes that follow). "
        "Bytes, commands, SPUBLISHes and CPU are net of reading the counters and of each "
        "master's idle background (measured for "
        f"{IDLE:.0f} s before the runs, with the workers connected and the rooms joined: "
        "cluster bus, replicas, health checks), scaled to the run's window. "
        "Orders received by the workers, per worker per delivered frame.",
        "",
        "| backplane | mode | workers | rooms | delivered | SPUBLISH / frame, per shard "
        "| commands / frame, per shard | bytes out / frame, per shard "
        "| CPU µs / frame, per shard | SPUBLISH µs/call, per shard "
        "| received per worker per frame | dropped / order | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        shards = list(row["shards"].values())

        def each(fmt: str, key: str, scale: float = 1.0, row: dict[str, Any] = row) -> str:
            per = row["delivered"] or 1
            values = [max(0.0, s[key]) * scale / per for s in row["shards"].values()]
            return " / ".join(format(value, fmt) for value in values)

        lines.append(
            f"| {row['backplane']} | {row['mode']} | {row['workers']} | {row['rooms']} "
            f"| {row['delivered']}/{row['expected']} "
            f"| {each('.2f', 'publish')} | {each('.2f', 'commands')} "
            f"| {each('.0f', 'bytes_out')} | {each('.1f', 'cpu', 1e6)} "
            f"| {' / '.join(format(usec(s), '.1f') for s in shards)} "
            f"| {row['received_per_worker_per_frame']:.3f} | {row['dropped_per_order']:.2f} "
            f"| {row['seconds']:.2f} |"
        )
    lines += [
        "",
        "## What one publish costs Redis",
        "",
        "All shards together, over the three room counts of each row above: PUBLISH or "
        "SPUBLISH `usec_per_call` (the command: finding the channel's subscribers and "
        "queueing the message to each), the masters' CPU per publish (user+sys, net of "
        "the idle background: the command, the socket writes to the subscribers, the "
        "event loop, and on the cluster the copy to the replica over the cluster bus), "
        "and bytes written per publish.",
        "",
        "| backplane | mode | workers | subscribers per channel | publishes | µs per call "
        "| CPU µs per publish | bytes out per publish |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in publish_costs(rows):
        lines.append(
            f"| {row['backplane']} | {row['mode']} | {row['workers']} | {row['subscribers']} "
            f"| {row['publishes']:.0f} | {row['usec_per_call']:.2f} "
            f"| {row['cpu_per_publish']:.1f} | {row['bytes_per_publish']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def publish_costs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backplane, mode, workers): the publish cost over its room counts."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["backplane"], row["mode"], row["workers"]), []).append(row)
    costs = []
    for (backplane, mode, workers), group in groups.items():
        shards = [shard for row in group for shard in row["shards"].values()]
        publishes = sum(max(0.0, s["publish"]) for s in shards) or 1.0
        costs.append(
            {
                "backplane": backplane,
                "mode": mode,
                "workers": workers,
                "subscribers": min(2, workers) if mode == "interest" else workers,
                "publishes": publishes,
                "usec_per_call": sum(s["publish_usec"] for s in shards) / publishes,
                "cpu_per_publish": sum(max(0.0, s["cpu"]) for s in shards) * 1e6 / publishes,
                "bytes_per_publish": sum(max(0.0, s["bytes_out"]) for s in shards) / publishes,
            }
        )
    return costs


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument("--fanout-workers", default="2,4", help="fan-out worker counts (2,4)")
    parser.add_argument("--workers", default="1,2,4,8", help="count worker counts (1,2,4,8)")
    parser.add_argument("--rooms", default="10,100,1000", help="room counts (10,100,1000)")
    parser.add_argument("--frames", type=int, default=2000, help="fan-out frames per run")
    parser.add_argument("--paced", type=int, default=200, help="paced frames per second")
    parser.add_argument("--reps", type=int, default=3, help="fan-out repetitions (3)")
    parser.add_argument("--count-frames", type=int, default=1000, help="frames per count run")
    parser.add_argument(
        "--cluster-only", action="store_true", help="counts on the cluster only (not redis-server)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer workers, one repetition")
    parser.add_argument(
        "--poll-latency",
        action="store_true",
        help="only: latency of redis-py's sharded reader polling 3 masters (50 and 5 ms)",
    )
    parser.add_argument(
        "--partitions",
        help="only: a gateway with recovery, its history in these partition counts (1,8)",
    )
    parser.add_argument(
        "--history-frames", type=int, default=2000, help="frames per --partitions run (2000)"
    )
    parser.add_argument(
        "--history-workers", default="2", help="worker counts of the --partitions runs (2)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw rows here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cluster.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    fan_counts = [int(n) for n in opts.fanout_workers.split(",")]
    counts_for = [int(n) for n in opts.workers.split(",")]
    if opts.quick:
        fan_counts, counts_for, opts.reps = fan_counts[:1], [n for n in counts_for if n <= 4], 1
    room_counts = [int(n) for n in opts.rooms.split(",")]
    if opts.poll_latency:
        with cluster() as many:
            masters = channel_per_master(many)
            lines = [
                "| poll timeout | masters subscribed | message sent to | p50 ms | p90 ms "
                "| p99 ms |",
                "|---|---|---|---|---|---|",
            ]
            for timeout in (0.05, 0.005):
                lines += asyncio.run(poll_latency(many.url, masters, timeout))
        text = "\n".join([*POLL_HEAD, *lines]) + "\n"
        print(text)
        if opts.out.exists():  # replace (or add) this section of an earlier full run's file
            replace_section(opts.out, POLL_HEAD[0], text)
            print(f"section written to {opts.out}")
        return
    if opts.partitions:
        command = " ".join(["python -m benchmarks.cluster", *(argv or sys.argv[1:])])
        with cluster() as many:
            history_rows = [
                asyncio.run(history(many, int(n), opts.history_frames, int(w)))
                for w in opts.history_workers.split(",")
                for n in opts.partitions.split(",")
            ]
        text = history_markdown(history_rows, command)
        print(text)
        replace_section(opts.out, HISTORY_HEAD, text)
        if opts.json:
            opts.json.write_text(json.dumps({"history": history_rows}))
        print(f"section written to {opts.out}")
        return
    fan: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    with single() as one, cluster() as many:
        for count in fan_counts:
            for backplane in (one, many):
                fan.append(
                    asyncio.run(fanout(backplane, count, opts.frames, opts.paced, opts.reps))
                )
        for count in counts_for:
            backplanes = [many] if opts.cluster_only else [one, many]
            for backplane in backplanes:
                for mode in ("interest", "namespace"):
                    rows += asyncio.run(
                        counts(backplane, count, mode, room_counts, opts.count_frames)
                    )
    text = markdown(fan, rows, opts)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(text)
    if opts.json:
        opts.json.write_text(json.dumps({"fanout": fan, "counts": rows}))
    print(text)
    print(f"written to {opts.out}")


if __name__ == "__main__":
    main()
