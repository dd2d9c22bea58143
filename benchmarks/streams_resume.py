"""How long (and how many bytes) a client takes to get back a stream that missed items.

``python -m benchmarks.streams_resume --runs 5`` measures, for a stream whose client was
cut (its TCP connection aborted, no close frame) while the generator made ``--missed``
more items (1,000 by default):

- ``session, one process``: an unkeyed stream on a gateway with ``Recovery()`` (history
  in memory); the client resumes its session on the same worker;
- ``session, two workers``: the same with ``RedisBroker`` (the history in a Redis
  Stream) and two worker processes on one redis-server: cut from worker A, resumed on B;
- ``keyed, one process``: a keyed stream (no recovery), re-attached by key with
  ``{"event": "$attach", "key", "after"}`` on a new connection to the same worker;
- ``keyed, two workers``: the same, re-attached on worker B to the stream A runs.

Each run: the client starts the stream, reads ``--warm`` items, is cut; the generator then
makes ``--missed`` items at once (``{"n": 123}`` plus ``--pad`` bytes: with the default,
1,000 of them are about 10 KB, far below the 1 MiB ``outbox_max_bytes`` past which a
session stream waits for its client to come back) and waits. Once they are all made
(and 0.3 s more), the clock starts and the client reconnects: with its resume
credential, or with a plain handshake and then ``$attach`` after the last ``seq`` it
read. As soon as it is back (the ``$session`` frame, or the ``$attach`` sent) the
generator is told to go on, one item every 5 ms (with ``--hold``: only once the client
has the last missed item, so that no live item is made during the catch-up). Timed
from the start of the reconnect: the handshake, the first and the last of the missed
items, the first item made after them; and the bytes received (WebSocket payload plus
frame headers, the HTTP upgrade left out) up to the last missed item. Every missed item
must arrive once, in order.

The servers (uvicorn, or ``--server hypercorn``) and redis-server are pinned to core 0,
this client (picows on uvloop) to core 1; medians of ``--runs``. The app is this module's
``app``: the generator's controls (``burst``, ``status``, ``live``) are requests on a
gateway of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from gatewayasgi import (
    GatewayMiddleware,
    MessageBody,
    Recovery,
    StreamEnd,
    SubscribeMessage,
    WebSocketGateway,
)

NODE = os.environ.get("STREAMS_RESUME_NODE", "A")
LIVE_EVERY = 0.005
LIVE_ITEMS = 2_000


class Control:
    """What one run's generator is told: when to make the missed items, when to go on."""

    def __init__(self) -> None:
        self.burst = anyio.Event()
        self.live = anyio.Event()
        self.count = 0
        self.made = 0
        self.burst_done = False


CONTROLS: dict[str, Control] = {}


async def feed(tag: str, warm: int, pad: str) -> Any:
    control = CONTROLS.setdefault(tag, Control())
    n = 0
    for _ in range(warm):  # read by the client before it is cut
        yield {"n": n, "p": pad} if pad else {"n": n}
        n += 1
        control.made = n
        await anyio.sleep(0.01)
    await control.burst.wait()
    for _ in range(control.count):  # made while the client is away
        yield {"n": n, "p": pad} if pad else {"n": n}
        n += 1
        control.made = n
        if n % 100 == 0:
            await anyio.lowlevel.checkpoint()
    control.burst_done = True  # the last one went through the delivery: it is kept
    await control.live.wait()
    for _ in range(LIVE_ITEMS):  # after the client came back
        yield {"n": n, "p": pad} if pad else {"n": n}
        n += 1
        await anyio.sleep(LIVE_EVERY)
    yield StreamEnd(n)


@WebSocketGateway("/session", recovery=Recovery(window=60, client_share=1.0))
class SessionFeed:
    @SubscribeMessage("feed")
    async def feed(self, data: Any = MessageBody()) -> Any:
        async for item in feed(data["tag"], data["warm"], data.get("pad", "")):
            yield item


@WebSocketGateway("/keyed")
class KeyedFeed:
    def can_attach(self, client: Any, key: str) -> bool:
        return True

    @SubscribeMessage("feed")
    async def feed(self, data: Any = MessageBody()) -> Any:
        async for item in feed(data["tag"], data["warm"], data.get("pad", "")):
            yield item


@WebSocketGateway("/control")
class Controls:
    @SubscribeMessage("burst")
    async def burst(self, data: Any = MessageBody()) -> Any:
        control = CONTROLS.setdefault(data["tag"], Control())
        control.count = data["count"]
        control.burst.set()
        return NODE

    @SubscribeMessage("status")
    async def status(self, tag: str = MessageBody()) -> Any:
        control = CONTROLS.get(tag)
        return None if control is None else {"made": control.made, "done": control.burst_done}

    @SubscribeMessage("live")
    async def live(self, tag: str = MessageBody()) -> Any:
        CONTROLS[tag].live.set()
        return NODE


def _broker() -> Any:
    url = os.environ.get("STREAMS_RESUME_REDIS_URL")
    if not url:
        return None
    from gatewayasgi.brokers import RedisBroker

    return RedisBroker(url)


app = GatewayMiddleware(
    gateways=[SessionFeed, KeyedFeed, Controls],
    broker=_broker(),
    rate_limit=None,
    max_connections=None,
)


# -- the client ------------------------------------------------------------------------


def _wire_size(payload: int) -> int:
    """Bytes of an unmasked server frame carrying ``payload`` bytes."""
    return payload + (2 if payload < 126 else 4 if payload < 65536 else 10)


class Wire(WSListener):  # type: ignore[misc]
    """One JSON connection that keeps what it received: (time, bytes on the wire, frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.frames: list[tuple[float, int, dict[str, Any]]] = []
        self.offset: str | None = None
        self.session: dict[str, Any] = {}
        self.closed = False
        self._waiting: tuple[Callable[[dict[str, Any]], bool], asyncio.Future[float]] | None
        self._waiting = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        waiting = self._waiting
        if waiting is not None and not waiting[1].done():
            waiting[1].set_exception(ConnectionError("closed"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type is not WSMsgType.TEXT:
            return
        now = time.perf_counter()
        payload = frame.get_payload_as_bytes()
        message = orjson.loads(payload)
        self.frames.append((now, _wire_size(len(payload)), message))
        if "offset" in message:
            self.offset = message["offset"]
        if message.get("event") == "$session":
            self.session = message["data"]
            self.offset = self.session["offset"]
        waiting = self._waiting
        if waiting is not None and waiting[0](message) and not waiting[1].done():
            waiting[1].set_result(now)
            self._waiting = None

    def until(
        self, predicate: Callable[[dict[str, Any]], bool], *, past: bool = False
    ) -> asyncio.Future[float]:
        """Resolves with the arrival time of the next frame that ``predicate`` accepts
        (with ``past``, of the first one received so far, if any)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if past:
            for at, _, message in self.frames:
                if predicate(message):
                    future.set_result(at)
                    return future
        self._waiting = (predicate, future)
        return future

    def send(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))

    async def request(self, event: str, data: Any, frame_id: Any) -> Any:
        reply = self.until(lambda m: m.get("id") == frame_id and "seq" not in m)
        self.send({"event": event, "data": data, "id": frame_id})
        await asyncio.wait_for(reply, 30)
        return self.frames[-1][2].get("data")

    def credential(self) -> str:
        s = self.session
        return f"gatewayasgi.resume.{s['id']}.{s['token']}.{s['epoch']}.{self.offset}"

    def cut(self) -> None:
        """Abort the TCP connection: no close frame, as a network failure would."""
        assert self.transport is not None
        self.transport.underlying_transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send_close()
            self.transport.disconnect()


async def _open(url: str, protocols: str | None = None) -> Wire:
    extra = {"extra_headers": {"Sec-WebSocket-Protocol": protocols}} if protocols else {}
    transport, wire = await ws_connect(Wire, url, websocket_handshake_timeout=30, **extra)
    wire.transport = transport
    return wire  # type: ignore[no-any-return]


async def _open_session(url: str, resume: Wire | None = None) -> Wire:
    protocols = "gatewayasgi" + (f", {resume.credential()}" if resume else "")
    wire = await _open(url, protocols)
    if not wire.session:
        await asyncio.wait_for(wire.until(lambda m: m.get("event") == "$session"), 30)
    return wire


def _item(frame_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("id") == frame_id and "seq" in m


async def one_run(opts: argparse.Namespace, kind: str, first: str, back: str, tag: str) -> Any:
    """One cut and one return; ``first`` and ``back`` are the workers' ``host:port``."""
    warm, missed = opts.warm, opts.missed
    control_a = await _open(f"ws://{first}/control")  # the generator's worker
    request: dict[str, Any] = {"event": "feed", "id": 1}
    request["data"] = {"tag": tag, "warm": warm, "pad": "p" * opts.pad}
    if kind == "session":
        client = await _open_session(f"ws://{first}/session")
    else:
        client = await _open(f"ws://{first}/keyed")
        request["key"] = f"bench-{tag}"
    got_warm = client.until(lambda m: m.get("id") == 1 and m.get("seq") == warm)
    client.send(request)
    await asyncio.wait_for(got_warm, 30)
    client.cut()
    await asyncio.sleep(0.3)  # the server notices the cut (and keeps the session)
    await control_a.request("burst", {"tag": tag, "count": missed}, "b")
    deadline = time.monotonic() + 60
    while True:
        status = await control_a.request("status", tag, "s")
        if status and status["done"]:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the generator made {status} of {warm + missed}")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # settled (with two workers: in Redis, read by B)
    last_missed, first_live = warm + missed - 1, warm + missed
    started = time.perf_counter()
    if kind == "session":
        again = await _open_session(f"ws://{back}/session", resume=client)
        if not again.session.get("recovered"):
            raise RuntimeError(f"not recovered: {again.session}")
    else:
        again = await _open(f"ws://{back}/keyed")
    back_at = time.perf_counter()
    item = _item(2 if kind == "keyed" else 1)
    if kind == "keyed":
        again.send({"event": "$attach", "key": f"bench-{tag}", "after": warm, "id": 2})
    if opts.hold:  # the generator goes on once the client has every missed item
        caught_up = again.until(lambda m: item(m) and m["data"]["n"] >= last_missed, past=True)
        await asyncio.wait_for(caught_up, 60)
    live_at = again.until(lambda m: item(m) and m["data"]["n"] >= first_live, past=True)
    control_a.send({"event": "live", "data": tag, "id": "l"})
    try:
        arrived = await asyncio.wait_for(live_at, 60)
    finally:
        frame_id = 2 if kind == "keyed" else 1
        again.send({"event": "$cancel", "id": frame_id})
        await asyncio.sleep(0.05)
        again.close()
        control_a.close()
    frame_id = 2 if kind == "keyed" else 1
    items = [(t, size, m) for t, size, m in again.frames if m.get("id") == frame_id and "seq" in m]
    numbers = [m["data"]["n"] for _, _, m in items]
    expected = list(range(warm, first_live))
    if numbers[: len(expected)] != expected:
        raise RuntimeError(f"missed items doubled, lost or out of order: {numbers[:20]}...")
    first_at = items[0][0]
    done_at = next(t for t, _, m in items if m["data"]["n"] == last_missed)
    wire_bytes = sum(size for t, size, _ in again.frames if t <= done_at)
    return {
        "handshake_ms": (back_at - started) * 1000,
        "first_ms": (first_at - started) * 1000,
        "missed_ms": (done_at - started) * 1000,
        "live_ms": (arrived - started) * 1000,
        "kib": wire_bytes / 1024,
    }


# -- the runner ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(opts: argparse.Namespace, workers: int) -> Iterator[list[str]]:
    from .servers import free_port, redis_server, running, server_command

    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if workers > 1:
            env["STREAMS_RESUME_REDIS_URL"] = stack.enter_context(redis_server())
        addresses = []
        for n in range(workers):
            port = free_port()
            command = server_command(opts.server, "benchmarks.streams_resume:app", port)
            stack.enter_context(running(command, port, {**env, "STREAMS_RESUME_NODE": "AB"[n]}))
            addresses.append(f"127.0.0.1:{port}")
        if workers > 1:
            time.sleep(1.0)  # both workers read the Redis streams
        yield addresses


CASES = [
    ("session", 1, "session, one process (memory)"),
    ("session", 2, "session, two workers (Redis), A -> B"),
    ("keyed", 1, "keyed $attach, one process"),
    ("keyed", 2, "keyed $attach, two workers (Redis), A -> B"),
]


async def _runs(opts: argparse.Namespace, kind: str, addresses: list[str], label: str) -> Any:
    first, back = addresses[0], addresses[-1]
    results = []
    for run in range(opts.runs):
        result = await one_run(opts, kind, first, back, f"{kind}-{run}-{time.time_ns()}")
        print(
            f"  {label} run {run + 1}: handshake {result['handshake_ms']:.1f} ms, "
            f"first missed {result['first_ms']:.1f} ms, "
            f"last missed {result['missed_ms']:.1f} ms, live {result['live_ms']:.1f} ms, "
            f"{result['kib']:.1f} KiB",
            flush=True,
        )
        results.append(result)
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams_resume")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--pad", type=int, default=0, help="bytes of padding in each item")
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "hypercorn"])
    parser.add_argument(
        "--hold",
        action="store_true",
        help="the generator goes on only once the client has every missed item",
    )
    parser.add_argument("--cases", default="1,2,3,4", help="which of the four, e.g. 1,3")
    opts = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client apart from the servers' core
    import uvloop

    table = []
    for number in opts.cases.split(","):
        kind, workers, label = CASES[int(number) - 1]
        with serving(opts, workers) as addresses:
            try:
                medians = uvloop.run(_runs(opts, kind, addresses, label))
            except Exception as exc:  # one case failing leaves the others' results
                print(f"  {label}: FAILED {type(exc).__name__}: {exc}", flush=True)
                medians = None
        table.append((label, medians))
    print()
    print(
        f"Resuming a stream that missed {opts.missed:,} items ({opts.server}, "
        f"medians of {opts.runs}; ms from the start of the reconnect)"
    )
    print()
    print(
        "| case | handshake | first missed item | last missed item | first live item "
        "| bytes to catch up |"
    )
    print("|---|---|---|---|---|---|")
    for label, m in table:
        if m is None:
            print(f"| {label} | failed | | | | |")
            continue
        print(
            f"| {label} | {m['handshake_ms']:.1f} ms | {m['first_ms']:.1f} ms "
            f"| {m['missed_ms']:.1f} ms "
            f"| {m['live_ms']:.1f} ms | {m['kib']:.1f} KiB |"
        )


if __name__ == "__main__":
    main()
