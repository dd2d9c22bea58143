"""``python -m benchmarks.recovery``: what session recovery costs, and how fast a resume is.

For each server, each repetition runs six configurations in a shuffled order, each on
fresh server processes (and a fresh redis-server for the two-worker ones):

- one process, recovery off (``benchmarks.apps.gateway``) and on (``Recovery()``, history
  in memory: ``benchmarks.apps.recovery_memory``);
- two worker processes on one redis-server, recovery off (``RedisBroker``: pub/sub) and on
  (``benchmarks.apps.recovery_redis``: a Redis Stream is the history, and delivery goes
  through it);
- the same two workers with the history split into four streams (``Recovery(partitions=4)``,
  ``benchmarks.apps.recovery_redis_split``), against pub/sub again.

On each: echo round trips/s from 50 clients and fan-out to 500 room members, with the
suite's own load generator (``benchmarks.load``). With recovery on, then, the resume
time: a room member is cut (its TCP connection aborted, no close frame), 1,000 frames
are emitted to the room, and the client reconnects with its resume credential (on the
other worker, with two); the time from starting the reconnect to having the last of
the 1,000 replayed frames. Servers (and redis-server) are pinned to core 0, the load to
core 1, as in ``python -m benchmarks``. Medians over the repetitions; ratios are on/off
from the same run. Writes ``benchmarks/results/recovery.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from picows import WSCloseCode, WSFrame, WSMsgType, WSTransport, ws_connect

from .__main__ import echo, machine, median_of, url, versions, warm
from .__main__ import load as run_load
from .load import Client, connect
from .servers import LOAD_CPU, ROOT, free_port, pinned, redis_server, running, server_command

TARGETS = {
    ("one", "off"): "benchmarks.apps.gateway:app",
    ("one", "on"): "benchmarks.apps.recovery_memory:app",
    ("two", "off"): "benchmarks.apps.gateway_redis:app",
    ("two", "on"): "benchmarks.apps.recovery_redis:app",
    ("split", "off"): "benchmarks.apps.gateway_redis:app",
    ("split", "on"): "benchmarks.apps.recovery_redis_split:app",
}
SETUPS = {
    "one": "one process (memory)",
    "two": "two workers (Redis)",
    "split": "two workers (Redis), history in 4 partitions",
}
ECHO_CONNS = 50
MEMBERS = 500
MISSED = 1000
PAYLOAD = 100


# -- the resume scenario (runs in the pinned load process) ---------------------------


class Recovering(Client):  # type: ignore[misc]
    """A JSON client that keeps what ``docs/recovery.md`` says to keep: its session (the
    ``$session`` frame) and the offset of the last frame it received, per partition of the
    history (``<p>~`` prefix)."""

    def __init__(self) -> None:
        super().__init__("json")
        loop = asyncio.get_running_loop()
        self.session: dict[str, Any] = {}
        self.positions: dict[str, str] = {}
        self.has_session: asyncio.Future[float] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()
        self.keys: list[int] = []
        self._want: tuple[int, asyncio.Future[float]] | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            super().on_ws_frame(transport, frame)
            return
        now = time.perf_counter()
        message = orjson.loads(frame.get_payload_as_bytes())
        event = message["event"]
        if event != "$session" and "offset" in message:
            offset = message["offset"]
            self.positions[offset.partition("~")[0] if "~" in offset else ""] = offset
        if event == "message":
            self.keys.append(message["data"]["k"])
            want = self._want
            if want is not None and len(self.keys) >= want[0] and not want[1].done():
                want[1].set_result(now)
        elif event == "$session":
            self.session = message["data"]
            self.positions = {
                item.partition("~")[0] if "~" in item else "": item
                for item in self.session["offset"].split("_")
            }
            if not self.has_session.done():
                self.has_session.set_result(now)
        elif event == "joined" and not self.joined.done():
            self.joined.set_result(None)

    def messages(self, count: int) -> asyncio.Future[float]:
        """Resolves (with the arrival time) once ``count`` ``message`` frames arrived."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if len(self.keys) >= count:
            future.set_result(time.perf_counter())
        self._want = (count, future)
        return future

    def credential(self) -> str:
        s = self.session
        position = "_".join(self.positions[key] for key in sorted(self.positions))
        return f"gatewayasgi.resume.{s['id']}.{s['token']}.{s['epoch']}.{position}"

    def cut(self) -> None:
        """Abort the TCP connection: no close frame, as a network failure would."""
        assert self.transport is not None
        self.transport.underlying_transport.abort()

    def leave(self) -> None:
        """Close with 1000: the session ends (it does not wait for a resume)."""
        if self.transport is not None and not self.closed:
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()


async def open_session(address: str, resume: Recovering | None = None) -> Recovering:
    protocols = "gatewayasgi" + (f", {resume.credential()}" if resume else "")
    _, client = await ws_connect(
        Recovering,
        address,
        websocket_handshake_timeout=30,
        extra_headers={"Sec-WebSocket-Protocol": protocols},
    )
    await asyncio.wait_for(client.has_session, 30)
    return client  # type: ignore[no-any-return]


async def member(address: str, room: str) -> Recovering:
    client = await open_session(address)
    client.emit("join", room)
    await asyncio.wait_for(client.joined, 30)
    return client


async def resume_once(job: dict[str, Any], room: str) -> dict[str, Any]:
    """One cut, ``missed`` frames emitted to the room, one resume; times of the resume."""
    first, other = job["urls"][0], job["urls"][-1]
    missed, pad = job["missed"], "p" * job["payload"]
    witness = await member(other, room)  # on the worker the victim comes back to
    victim = await member(first, room)
    publisher = await connect(first, "json")
    try:
        seen = [witness.messages(1), victim.messages(1)]
        publisher.emit("publish", {"room": room, "payload": {"k": -1, "pad": pad}})
        await asyncio.wait_for(asyncio.gather(*seen), 30)  # the victim has an offset
        victim.cut()
        await asyncio.sleep(0.3)  # the server notices the cut and keeps the session
        everything = witness.messages(1 + missed)
        for k in range(missed):
            publisher.emit("publish", {"room": room, "payload": {"k": k, "pad": pad}})
        # Once the witness has all of them, the history has too (and with two workers the
        # one the victim comes back to has read them): only the resume is timed.
        await asyncio.wait_for(everything, 60)
        started = time.perf_counter()
        resumed = await open_session(other, resume=victim)
        session_at = resumed.has_session.result()
        try:
            if not resumed.session.get("recovered"):
                raise RuntimeError(f"not recovered: {resumed.session.get('reason')}")
            done_at = await asyncio.wait_for(resumed.messages(missed), 60)
            if resumed.keys != list(range(missed)):
                raise RuntimeError("replayed frames missing, doubled or out of order")
        finally:
            resumed.leave()
    finally:
        for client in (witness, victim, publisher):
            if isinstance(client, Recovering):
                client.leave()
            else:
                client.close()
    return {
        "session_ms": (session_at - started) * 1000,
        "resume_ms": (done_at - started) * 1000,
    }


async def resume(job: dict[str, Any]) -> dict[str, Any]:
    """``trials`` resumes, one room each; medians."""
    times = [await resume_once(job, f"resume-{trial}") for trial in range(job["trials"])]
    return {key: statistics.median(t[key] for t in times) for key in times[0]}


def job_main(raw: str) -> None:
    from uvloop import run

    try:
        result = run(resume(orjson.loads(raw)))
    except Exception as exc:  # the runner records the failure in the table
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(orjson.dumps(result).decode(), flush=True)


def run_resume(job: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """The resume scenario in its own process, pinned to the load core."""
    command = pinned(
        [sys.executable, "-m", "benchmarks.recovery", "--job", json.dumps(job)], LOAD_CPU
    )
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"resume job timed out after {timeout}s"}
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"error": f"resume job failed: {done.stderr.strip()[-300:]}"}
    return dict(orjson.loads(lines[-1]))


# -- the runner ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(server: str, setup: str, recovery: str) -> Iterator[list[str]]:
    """The servers of one configuration; yields their URLs (first, then the other worker)."""
    target = TARGETS[(setup, recovery)]
    with contextlib.ExitStack() as stack:
        env = None
        workers = 1
        if setup != "one":
            env = {"BENCH_REDIS_URL": stack.enter_context(redis_server())}
            workers = 2
        ports = [free_port() for _ in range(workers)]
        for port in ports:
            stack.enter_context(running(server_command(server, target, port), port, env))
        if setup != "one":
            time.sleep(1.0)  # both workers subscribed (or reading the stream)
        yield [url(port, "json") for port in ports]


def run_config(server: str, setup: str, recovery: str, opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with serving(server, setup, recovery) as urls:
        warm(urls, "json")
        results["echo"] = echo(urls, "json", ECHO_CONNS, 1.0, opts.duration)
        results["fanout"] = run_load(
            {"scenario": "fanout", "urls": urls, "dialect": "json", "members": MEMBERS}
            | {"frames": opts.frames, "payload": PAYLOAD}
            | {"frame_timeout": 2.0, "warmup_publishes": 10}
        )
        if recovery == "on":
            time.sleep(1.0)  # the fan-out's 500 clients are gone (their sessions kept)
            job = {"urls": urls, "missed": MISSED, "payload": PAYLOAD, "trials": opts.trials}
            results["resume"] = run_resume(job)
    return results


def one_line(results: dict[str, Any]) -> str:
    parts = []
    for scenario, result in results.items():
        if "error" in result:
            parts.append(f"{scenario}: ERROR {result['error'][:100]}")
        elif scenario == "echo":
            parts.append(f"echo {result['msgs_per_s']:,.0f}/s")
        elif scenario == "fanout":
            parts.append(f"fan-out p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f} ms")
            if result.get("timeouts"):
                parts[-1] += f" ({result['timeouts']} timeouts)"
        elif scenario == "resume":
            parts.append(f"resume {result['resume_ms']:.1f} ms")
    return "; ".join(parts)


Samples = dict[tuple[str, str, str, str], dict[int, dict[str, Any]]]
"""(scenario, server, setup, recovery) -> repetition -> result."""


def paired_ratios(
    samples: Samples, scenario: str, field: str, server: str, setup: str
) -> list[float]:
    """on/off of ``field`` in each repetition where both ran: the two ran minutes apart,
    so a machine that is busier in one repetition than in another moves both."""
    off = samples.get((scenario, server, setup, "off"), {})
    on = samples.get((scenario, server, setup, "on"), {})
    ratios = []
    for rep in sorted(off.keys() & on.keys()):
        a, b = off[rep].get(field), on[rep].get(field)
        if "error" not in off[rep] and "error" not in on[rep] and a and b:
            ratios.append(b / a)
    return ratios


def markdown(
    samples: Samples,
    servers: list[str],
    opts: argparse.Namespace,
    minutes: float,
) -> str:
    table = {key: median_of(list(by_rep.values())) for key, by_rep in samples.items()}

    def get(*key: str) -> dict[str, Any]:
        return table.get(key, {"error": "not run"})

    def value(result: dict[str, Any], field: str) -> float | None:
        return None if "error" in result else result.get(field)

    lines = [
        "# Session recovery: cost and resume time",
        "",
        f"{time.strftime('%Y-%m-%d')}, {machine()}. `python -m benchmarks.recovery"
        f"{' --quick' if opts.quick else f' --reps {opts.reps}'}`: servers (and redis-server) "
        "pinned to core 0, the picows load generator to core 1; recovery off and on "
        f"interleaved in a shuffled order in each of {opts.reps} repetitions, medians; "
        f"echo {opts.duration:.0f} s per run, fan-out {opts.frames} publishes per run "
        f"(after 10 unmeasured), {opts.trials} resumes per run. Took {minutes:.1f} min. "
        "A noisy, shared 2-core machine: read the ratios, not the third digit.",
        "",
        "**Cost of recovery: off -> on, medians (on/off: the median of the repetitions' "
        "own ratios, and their range)**",
        "",
        "| server | setup | echo round trips/s, 50 clients | fan-out to 500, p50 ms "
        "| fan-out to 500, p99 ms |",
        "|---|---|---|---|---|",
    ]
    for server in servers:
        for setup, label in SETUPS.items():
            cells = []
            for scenario, field, fmt in (
                ("echo", "msgs_per_s", ",.0f"),
                ("fanout", "p50_ms", ".1f"),
                ("fanout", "p99_ms", ".1f"),
            ):
                off = value(get(scenario, server, setup, "off"), field)
                on = value(get(scenario, server, setup, "on"), field)
                ratios = paired_ratios(samples, scenario, field, server, setup)
                if off is None or on is None or not ratios:
                    cells.append("n/a")
                    continue
                spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
                cells.append(
                    f"{off:{fmt}} -> {on:{fmt}} (**{statistics.median(ratios):.2f}**, {spread})"
                )
            lines.append(f"| {server} | {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"**Resume after missing {MISSED:,} frames ({PAYLOAD}-byte payloads)**: from starting "
        "the reconnect to the `$session` frame, and to the last replayed frame (ms)",
        "",
        "| server | setup | to `$session` | to all 1,000 frames | frames/s |",
        "|---|---|---|---|---|",
    ]
    for server in servers:
        for setup, label in SETUPS.items():
            result = get("resume", server, setup, "on")
            if "error" in result:
                lines.append(f"| {server} | {label} | {result['error'][:80]} | | |")
                continue
            rate = MISSED / result["resume_ms"] * 1000
            lines.append(
                f"| {server} | {label}{', the other worker' if setup != 'one' else ''} "
                f"| {result['session_ms']:.1f} | {result['resume_ms']:.1f} | {rate:,.0f} |"
            )
    found = versions()
    shown = ", ".join(
        f"{name} {found[name]}"
        for name in ("python", "gatewayasgi", "hypercorn", "uvicorn", "picows", "redis")
        if name in found
    )
    lines += ["", f"Versions: {shown}."]
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 rep, short runs")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--servers", default="hypercorn,uvicorn")
    parser.add_argument("--duration", type=float, default=5.0, help="echo seconds per run")
    parser.add_argument("--frames", type=int, default=500, help="fan-out publishes per run")
    parser.add_argument("--trials", type=int, default=3, help="resumes per run")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--job", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.reps, opts.duration, opts.frames, opts.trials = 1, 2.0, 50, 1
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse(argv)
    if opts.job:
        job_main(opts.job)
        return
    servers = opts.servers.split(",")
    samples: Samples = defaultdict(dict)
    started = time.monotonic()
    for rep in range(opts.reps):
        for server in servers:
            for setup, recovery in random.sample(list(TARGETS), len(TARGETS)):
                print(f"[rep {rep + 1}/{opts.reps}] {server:9} {setup} {recovery:3}", end=" ")
                try:
                    results = run_config(server, setup, recovery, opts)
                except Exception as exc:
                    results = {"run": {"error": f"{type(exc).__name__}: {exc}"}}
                for scenario, result in results.items():
                    samples[(scenario, server, setup, recovery)][rep] = result
                print(one_line(results), flush=True)
    text = markdown(samples, servers, opts, (time.monotonic() - started) / 60)
    output = Path(opts.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "recovery.md").write_text(text)
    print(text)
    print(f"wrote {output / 'recovery.md'}")


if __name__ == "__main__":
    main()
