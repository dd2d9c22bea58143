"""``python -m benchmarks``: every peer under every server, interleaved, medians of reps.

Each repetition starts every (server, peer) pair once, in a shuffled peer order, and runs
on it: memory per 1000 idle connections, echo round trips, fan-out to a room and the same
fan-out with one stalled member. Then, once: 10,000 connections per (server, peer), and
fan-out through Redis across two processes. Servers are pinned to core 0 and the load
generator (``benchmarks.load``) to core 1. Results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import psutil

from . import report
from .apps import SOCKETIO_PATH as ENGINEIO_PATH
from .servers import (
    LOAD_CPU,
    ROOT,
    free_port,
    pinned,
    redis_server,
    running,
    server_command,
)

SOCKETIO_PATH = f"{ENGINEIO_PATH}/?EIO=4&transport=websocket"

# peer -> (ASGI target, client dialect)
PEERS: dict[str, tuple[str, str]] = {
    "raw": ("benchmarks.apps.raw:app", "json"),
    "raw-concurrent": ("benchmarks.apps.raw:concurrent_app", "json"),
    "gatewayasgi": ("benchmarks.apps.gateway:app", "json"),
    "starlette": ("benchmarks.apps.starlette_app:app", "json"),
    "fastapi": ("benchmarks.apps.fastapi_app:app", "json"),
    "litestar": ("benchmarks.apps.litestar_app:app", "json"),
    "python-socketio": ("benchmarks.apps.socketio_app:app", "socketio"),
    "gatewayasgi-socketio": ("benchmarks.apps.gateway_socketio:app", "socketio"),
    "pynest": ("benchmarks.apps.pynest_app:app", "json"),
}
REDIS_PEERS: dict[str, tuple[str, str]] = {
    "gatewayasgi": ("benchmarks.apps.gateway_redis:app", "json"),
    "python-socketio": ("benchmarks.apps.socketio_redis:app", "socketio"),
    "gatewayasgi-socketio": ("benchmarks.apps.gateway_socketio_redis:app", "socketio"),
}
SERVERS = ["hypercorn", "uvicorn", "granian"]
SCENARIOS = ["memory", "echo", "fanout", "stalled", "10k", "redis"]
QUICK_PEERS = [
    "raw",
    "raw-concurrent",
    "gatewayasgi",
    "starlette",
    "python-socketio",
    "gatewayasgi-socketio",
]


def url(port: int, dialect: str) -> str:
    return f"ws://127.0.0.1:{port}{SOCKETIO_PATH if dialect == 'socketio' else '/ws'}"


def load(job: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run one load job in its own pinned process and return its JSON result."""
    command = pinned([sys.executable, "-m", "benchmarks.load", json.dumps(job)], LOAD_CPU)
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"load generator timed out after {timeout}s"}
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"error": f"load generator failed: {done.stderr.strip()[-300:]}"}
    return dict(orjson.loads(lines[-1]))


def tree_rss(pid: int) -> int:
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


def hold(urls: list[str], dialect: str, conns: int, pid: int) -> dict[str, Any]:
    """Open ``conns`` idle connections; measure the server tree's RSS growth meanwhile."""
    job = {"scenario": "hold", "urls": urls, "dialect": dialect, "conns": conns}
    command = pinned([sys.executable, "-m", "benchmarks.load", json.dumps(job)], LOAD_CPU)
    before = tree_rss(pid)
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        first = process.stdout.readline().strip()
        if first != "READY":
            process.wait(60)
            return orjson.loads(first) if first.startswith("{") else {"error": "hold failed"}
        time.sleep(1.0)
        grown = tree_rss(pid) - before
        process.stdin.write("go\n")
        process.stdin.flush()
        result = dict(orjson.loads(process.stdout.readline()))
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
    result["mib_per_1000"] = grown / (1024 * 1024) / conns * 1000
    result["rss_mib"] = tree_rss(pid) / (1024 * 1024) if psutil.pid_exists(pid) else None
    return result


def echo(urls: list[str], dialect: str, conns: int, warmup: float, duration: float) -> Any:
    """Echo round trips from ``conns`` clients for ``duration`` s after ``warmup`` s."""
    job = {"scenario": "echo", "urls": urls, "dialect": dialect, "conns": conns}
    return load(job | {"warmup": warmup, "duration": duration})


def warm(urls: list[str], dialect: str) -> None:
    """A short echo so lazy imports and first-connection costs are paid before measuring."""
    echo(urls, dialect, 10, 0.2, 0.3)


def run_pair(
    server: str, peer: str, scenarios: list[str], opts: argparse.Namespace
) -> dict[str, Any]:
    target, dialect = PEERS[peer]
    port = free_port()
    urls = [url(port, dialect)]
    results: dict[str, Any] = {}
    with running(server_command(server, target, port), port) as process:
        warm(urls, dialect)
        if "memory" in scenarios:
            results["memory"] = hold(urls, dialect, 1000, process.pid)
        if "echo" in scenarios:
            results["echo"] = echo(urls, dialect, 50, 1.0, opts.duration)
        fanout = {"scenario": "fanout", "urls": urls, "dialect": dialect, "members": 500}
        fanout |= {
            "frames": opts.frames,
            "payload": 100,
            "frame_timeout": 2.0,
            "warmup_publishes": 10,
        }
        if "fanout" in scenarios:
            results["fanout"] = load(fanout)
        if "stalled" in scenarios:
            results["stalled"] = load(fanout | {"stalled": True, "fill_frames": 128})
    return results


def run_10k(server: str, peer: str, conns: int) -> dict[str, Any]:
    target, dialect = PEERS[peer]
    port = free_port()
    with running(server_command(server, target, port), port) as process:
        warm([url(port, dialect)], dialect)
        return hold([url(port, dialect)], dialect, conns, process.pid)


def run_redis(server: str, peer: str, opts: argparse.Namespace) -> dict[str, Any]:
    target, dialect = REDIS_PEERS[peer]
    ports = [free_port(), free_port()]
    with redis_server() as redis_url:
        env = {"BENCH_REDIS_URL": redis_url}
        with running(server_command(server, target, ports[0]), ports[0], env):
            with running(server_command(server, target, ports[1]), ports[1], env):
                urls = [url(port, dialect) for port in ports]
                time.sleep(1.0)  # both nodes subscribed
                return load(
                    {"scenario": "fanout", "urls": urls, "dialect": dialect, "members": 500}
                    | {
                        "frames": opts.frames,
                        "payload": 100,
                        "frame_timeout": 2.0,
                        "warmup_publishes": 10,
                    }
                )


def run_ladder(servers: list[str], opts: argparse.Namespace) -> str:
    """Echo throughput of each step of ``benchmarks.apps.ladder``; a Markdown table."""
    from .apps.ladder import STEPS

    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rep in range(opts.reps):
        for server in servers:
            for step in random.sample(STEPS, len(STEPS)):
                port = free_port()
                urls = [url(port, "json")]
                target = f"benchmarks.apps.ladder:{step}"
                with running(server_command(server, target, port), port):
                    warm(urls, "json")
                    result = echo(urls, "json", 50, 1.0, opts.duration)
                rate = result.get("msgs_per_s")
                shown = f"{rate:,.0f}/s" if rate else result.get("error", result)
                print(f"[ladder {rep + 1}/{opts.reps}] {server:9} {step:12} {shown}")
                if rate:
                    samples[(server, step)].append(rate)
    lines = [
        "# The echo path, one layer at a time",
        "",
        f"{time.strftime('%Y-%m-%d')}, {machine()}. Echo round trips/s, 50 connections, "
        f"medians of {opts.reps} interleaved runs of {opts.duration:.0f} s (ratio to `plain`). "
        "Each step adds one piece of the gateway's per-frame work: see "
        "`benchmarks/apps/ladder.py`.",
        "",
        "| server | " + " | ".join(STEPS) + " |",
        "|---" * (len(STEPS) + 1) + "|",
    ]
    for server in servers:
        base = statistics.median(samples[(server, "plain")] or [0.0])
        cells = []
        for step in STEPS:
            values = samples[(server, step)]
            if not values or not base:
                cells.append("n/a")
                continue
            rate = statistics.median(values)
            cells.append(f"{rate:,.0f} ({rate / base:.2f})")
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def median_of(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over the repetitions that did not fail."""
    good = [sample for sample in samples if "error" not in sample]
    if not good:
        return {"error": samples[0].get("error", "failed") if samples else "not run"}
    merged: dict[str, Any] = {"reps": len(good)}
    for key, value in good[0].items():
        values = [sample[key] for sample in good if isinstance(sample.get(key), (int, float))]
        if isinstance(value, bool):
            merged[key] = any(sample.get(key) for sample in good)
        elif values:
            merged[key] = statistics.median(values)
    return merged


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in [
        "gatewayasgi",
        "hypercorn",
        "uvicorn",
        "granian",
        "starlette",
        "fastapi",
        "litestar",
        "python-socketio",
        "pynest-api",
        "orjson",
        "picows",
        "uvloop",
        "redis",
    ]:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {psutil.cpu_count()} cores, {memory:.0f} GiB, {system}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 rep, short runs, fewer peers")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="echo seconds per run")
    parser.add_argument("--frames", type=int, default=500, help="fan-out publishes per run")
    parser.add_argument("--conns-10k", type=int, default=10_000, dest="conns_10k")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument(
        "--ladder", action="store_true", help="only the echo path, built up layer by layer"
    )
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.reps, opts.duration, opts.frames = 1, 2.0, 50
        if opts.peers == ",".join(PEERS):
            opts.peers = ",".join(QUICK_PEERS)
        if opts.scenarios == ",".join(SCENARIOS):
            opts.scenarios = "memory,echo,fanout,stalled"
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    servers = opts.servers.split(",")
    if opts.ladder:
        markdown = run_ladder(servers, opts)
        output = Path(opts.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "ladder.md").write_text(markdown)
        print(markdown)
        return
    scenarios = opts.scenarios.split(",")
    peers = [peer for peer in opts.peers.split(",") if peer in PEERS]
    if "pynest" in peers and importlib.util.find_spec("nest") is None:
        print("pynest-api is not installed: skipping PyNest (make bench installs it)")
        peers.remove("pynest")
    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    pair_scenarios = [s for s in scenarios if s in ("memory", "echo", "fanout", "stalled")]
    started = time.monotonic()
    for rep in range(opts.reps if pair_scenarios else 0):
        order = peers[:]
        random.shuffle(order)
        for server in servers:
            for peer in order:
                print(f"[rep {rep + 1}/{opts.reps}] {server:9} {peer:16}", end=" ", flush=True)
                try:
                    results = run_pair(server, peer, pair_scenarios, opts)
                except Exception as exc:
                    results = {s: {"error": str(exc)} for s in pair_scenarios}
                for scenario, result in results.items():
                    samples[(scenario, server, peer)].append(result)
                print(report.one_line(results), flush=True)
    if "10k" in scenarios:
        for server in servers:
            for peer in peers:
                print(f"[10k] {server:9} {peer:16}", end=" ", flush=True)
                try:
                    result = run_10k(server, peer, opts.conns_10k)
                except Exception as exc:
                    result = {"error": str(exc)}
                samples[("10k", server, peer)].append(result)
                print(report.one_line({"10k": result}), flush=True)
    if "redis" in scenarios:
        for server in [s for s in servers if s != "granian"]:
            for peer in [p for p in REDIS_PEERS if p in peers]:
                print(f"[redis] {server:9} {peer:16}", end=" ", flush=True)
                try:
                    result = run_redis(server, peer, opts)
                except Exception as exc:
                    result = {"error": str(exc)}
                samples[("redis", server, peer)].append(result)
                print(report.one_line({"redis": result}), flush=True)
    table = {"|".join(key): median_of(value) for key, value in samples.items()}
    meta = {
        "machine": machine(),
        "versions": versions(),
        "reps": opts.reps,
        "echo_duration_s": opts.duration,
        "fanout_frames": opts.frames,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "pinned": pinned(["x"], "0") != ["x"],
        "date": time.strftime("%Y-%m-%d"),
    }
    output = Path(opts.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "latest.json").write_bytes(
        orjson.dumps({"meta": meta, "results": table}, option=orjson.OPT_INDENT_2)
    )
    markdown = report.markdown(table, meta, servers, peers)
    (output / "latest.md").write_text(markdown)
    report.chart(table, servers, peers, output / "latest.png")
    print(markdown)
    print(f"wrote {output / 'latest.md'} and {output / 'latest.png'}")


if __name__ == "__main__":
    main()
