"""The history's byte bounds: ``Recovery.max_bytes`` and ``Recovery.max_frame_bytes``.

In memory (``MemoryLog``, and a server's RSS end to end) and in Redis (``RedisLog``'s
stream on a real redis-server, ``MEMORY USAGE``): many large frames leave the history
under its bound, oldest out first, offsets contiguous; a frame over ``max_frame_bytes``
reaches live clients but is kept as a marker, so a client it was for that missed it
resumes with ``recovered: false`` (``"trimmed"``) while a client it was not for recovers.
Scaled to stay fast: a 4 MiB bound and 100 frames of 256 KiB. Every wait is bounded.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from gatewayasgi import GatewayMiddleware, Recovery
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.stores.base import HistoryGap
from gatewayasgi.stores.memory import MemoryLog
from tests.recovery.redis_workers import wait_until, workers
from tests.recovery.test_runtime_memory import chat_gateway
from tests.recovery.wire import Session
from tests.redis_server import RedisServer
from tests.servers import run_server, server_call

pytestmark = pytest.mark.anyio

KiB, MiB = 1024, 1024 * 1024
BOUND = 4 * MiB
# Redis's allocator (jemalloc) rounds a 256 KiB entry up to its 320 KiB size class.
REDIS_CEILING = BOUND * 5 // 4 + 256 * KiB
FRAMES = 100
FRAME = 256 * KiB


def big(tag: int, size: int = FRAME) -> str:
    """An emit frame of exactly ``size`` bytes."""
    head = f'{{"event":"m","data":"{tag}:'
    return head + "x" * (size - len(head) - 2) + '"}'


def rss() -> int:
    """This process's resident set size in bytes (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def kept_bytes(log: Any) -> int:
    """Bytes of the frames a ``MemoryLog`` could replay (counted from the entries)."""
    return sum(len(entry.frame) for _, *_, entry in log._entries)


# -- settings ----------------------------------------------------------------------------


def test_the_byte_bounds_have_safe_defaults_and_are_checked() -> None:
    recovery = Recovery()
    assert recovery.max_bytes == 64 * MiB
    assert recovery.max_frame_bytes == 64 * KiB
    for name in ("max_bytes", "max_frame_bytes"):
        for bad in (0, -1, 1.5, True, "1"):
            with pytest.raises(ConfigurationError, match=name):
                Recovery(**{name: bad})
    assert Recovery(max_bytes=1, max_frame_bytes=1).max_bytes == 1


# -- MemoryLog ---------------------------------------------------------------------------


async def test_memory_log_keeps_at_most_max_bytes_oldest_out_first() -> None:
    log = MemoryLog(10_000, 600.0, max_bytes=BOUND, max_frame_bytes=MiB)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(FRAMES):
            await log.append(big(n), NOBODY, NOBODY)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < BOUND + MiB, f"the log holds {held} bytes"
    assert log.size == kept_bytes(log) == 16 * FRAME <= BOUND
    # Offsets stay contiguous: the last 16 replay in order, anything older is trimmed.
    entries = await log.replay(log.head - 16, 1000)
    assert [entry.offset for entry in entries] == list(range(FRAMES - 15, FRAMES + 1))
    assert entries[-1].frame == big(FRAMES - 1)
    with pytest.raises(HistoryGap) as gap:
        await log.replay(log.head - 17, 1000)
    assert gap.value.reason == "trimmed"


async def test_memory_log_counts_utf8_bytes() -> None:
    log = MemoryLog(10_000, 600.0, max_bytes=4000, max_frame_bytes=4000)
    await log.append("é" * 1500, NOBODY, NOBODY)  # 3,000 bytes
    assert log.size == 3000
    await log.append("a" * 1500, NOBODY, NOBODY)  # 4,500 in all: the first one goes
    assert log.size == 1500
    assert [entry.offset for entry in await log.replay(1, 10)] == [2]


async def test_memory_log_keeps_an_oversized_frame_as_a_marker() -> None:
    log = MemoryLog(10_000, 600.0, max_bytes=BOUND, max_frame_bytes=1000)
    room = Targets(("r",), ())
    ex = Targets((), ("c_x",))
    await log.append("small", NOBODY, NOBODY)
    assert await log.append("y" * 1001, room, ex) == 2  # offsets go on
    await log.append("after", NOBODY, NOBODY)
    first, marker, last = await log.replay(0, 10)
    assert (first.frame, last.frame) == ("small", "after")
    assert (marker.offset, marker.frame, marker.targets, marker.exclude) == (2, "", room, ex)
    assert log.size == len("small") + len("after")


# -- end to end, in memory ---------------------------------------------------------------


def shout_gateway(recovery: Recovery) -> type:
    """The chat gateway, whose ``say`` carries the client's data to a room as it is."""
    return chat_gateway(recovery)


@asynccontextmanager
async def serving(app: Any, server: str = "uvicorn") -> AsyncIterator[str]:
    async with run_server(app, server) as address:
        yield address


async def publish(sender: Session, room: str, count: int, size: int, first_id: int = 100) -> None:
    """``count`` frames of about ``size`` bytes to ``room``, each acknowledged."""
    for n in range(count):
        data = {"room": room, "n": "x" * size}
        assert await sender.request("say", data, first_id + n) == "ok"


async def test_a_server_emitting_large_frames_keeps_its_rss_under_the_bound() -> None:
    """100 frames of 256 KiB to an empty room: the history keeps at most 4 MiB of them.

    The app emits them itself (as a background job would): a client's own emits are
    also limited by ``client_share``.
    """
    recovery = Recovery(window=30, max_bytes=BOUND, max_frame_bytes=MiB)
    gateway = shout_gateway(recovery)
    app = GatewayMiddleware(gateways=[gateway])

    async def emit(count: int) -> None:
        server = app.server_for(gateway)
        for _ in range(count):
            await server.to_room("nobody").emit("m", "x" * (FRAME - 64))

    async with serving(app) as address:
        listener = Session(address)  # a client connected, in no room
        await listener.open()
        log = app.keepers[0].log
        await server_call(address, emit, 8)  # warm up: buffers, allocator
        gc.collect()
        start = rss()
        await server_call(address, emit, FRAMES)
        gc.collect()
        grown = rss() - start
        await listener.ws.close()
    assert kept_bytes(log) <= BOUND
    assert len(cast(MemoryLog, log)) == 16  # the newest 16 of 108
    # Without the bound the history alone holds 100 x 256 KiB = 25 MiB more.
    assert grown < BOUND + 4 * MiB, f"RSS grew by {grown / MiB:.1f} MiB"


async def test_a_server_keeps_oversized_frames_out_of_its_history() -> None:
    """The defaults: 100 frames of 256 KiB (over 64 KiB) are markers, costing nothing."""
    app = GatewayMiddleware(gateways=[shout_gateway(Recovery(window=30, client_share=1.0))])
    async with serving(app) as address:
        log = app.keepers[0].log
        sender = Session(address)
        await sender.open()
        await publish(sender, "nobody", 8, FRAME - 64)
        gc.collect()
        start = rss()
        await publish(sender, "nobody", FRAMES, FRAME - 64, first_id=1000)
        gc.collect()
        grown = rss() - start
        await sender.ws.close()
    assert kept_bytes(log) == 0
    assert len(cast(MemoryLog, log)) == 108  # every offset is there, as a marker
    assert grown < 4 * MiB, f"RSS grew by {grown / MiB:.1f} MiB"


async def missed_oversized_frame(address: str, big_size: int) -> None:
    """Two clients cut (in rooms ``r`` and ``s``) while ``r`` gets a frame over the
    bound (a third client in ``r`` gets it live) and both rooms a small one; the one in
    ``r`` resumes told "trimmed", the one in ``s`` recovers and gets its frame."""
    member, other, watcher, sender = (Session(address) for _ in range(4))
    for session, room in ((member, "r"), (other, "s"), (watcher, "r")):
        await session.open()
        assert (await session.request("join", room))["joined"] == room
    await sender.open()
    await sender.request("say", {"room": "r", "n": "hello"})
    assert (await member.recv())["data"] == "hello"
    assert (await watcher.recv())["data"] == "hello"
    await sender.request("say", {"room": "s", "n": "hello s"})
    assert (await other.recv())["data"] == "hello s"

    member.cut()
    other.cut()
    huge = "z" * big_size
    assert await sender.request("say", {"room": "r", "n": huge}, 2) == "ok"
    live = await watcher.recv()
    assert live["data"] == huge and live["offset"]  # delivered live, with its offset
    await sender.request("say", {"room": "r", "n": "after r"}, 3)
    await sender.request("say", {"room": "s", "n": "after s"}, 4)
    assert (await watcher.recv())["data"] == "after r"

    resumed = await member.open(resume=True)
    assert resumed["recovered"] is True  # the history reaches back that far ...
    told = await member.recv_raw()  # ... but a frame it was for is not in it
    assert told["event"] == "$session", told
    assert told["data"]["recovered"] is False and told["data"]["reason"] == "trimmed"
    assert told["data"]["id"] == resumed["id"]
    # It goes on from now: live frames arrive, nothing missed is replayed.
    await sender.request("say", {"room": "r", "n": "live r"}, 5)
    assert (await member.recv())["data"] == "live r"

    back = await other.open(resume=True)
    assert back["recovered"] is True, back
    assert (await other.recv())["data"] == "after s"  # the marker was not its concern
    await sender.request("say", {"room": "s", "n": "live s"}, 6)
    assert (await other.recv())["data"] == "live s"
    for session in (member, other, watcher, sender):
        await session.ws.close()


async def test_a_client_that_missed_an_oversized_frame_is_told_trimmed_in_memory() -> None:
    app = GatewayMiddleware(gateways=[shout_gateway(Recovery(window=30, client_share=1.0))])
    async with serving(app) as address:
        await missed_oversized_frame(address, 100 * KiB)


# -- Redis -------------------------------------------------------------------------------


async def memory_usage(redis_server: RedisServer, key: str) -> int:
    usage = await anyio.to_thread.run_sync(
        redis_server.command, "MEMORY", "USAGE", key, "SAMPLES", "0"
    )
    return int(cast(int | None, usage) or 0)


async def redis_field(redis_server: RedisServer, *command: str) -> Any:
    return await anyio.to_thread.run_sync(lambda: redis_server.command(*command))


@pytest.mark.redis
async def test_the_redis_stream_stays_under_max_bytes(redis_server: RedisServer) -> None:
    async with workers(redis_server.url, count=1, max_bytes=BOUND, max_frame_bytes=MiB) as (
        worker,
    ):
        log = worker.log
        for n in range(FRAMES):
            await log.append(big(n), NOBODY, NOBODY)
            # Paced by the reader: a writer that ran 16 frames ahead of it on a
            # loaded machine would trim what the reader had not read yet (which
            # is reported as a reset, and tested elsewhere), not what this checks.
            await wait_until(lambda n=n: len(worker.entries) == n + 1)
        await wait_until(lambda: log.stats.appended == FRAMES and not log.stats.pending)
        usage = await memory_usage(redis_server, log.key)
        assert usage < REDIS_CEILING, f"MEMORY USAGE {usage}"
        counted = await redis_field(redis_server, "HGET", log.bytes_key, "history")
        assert int(cast(bytes, counted)) == 16 * FRAME  # the newest 16, exactly
        assert await redis_field(redis_server, "XLEN", log.key) == 16
        # The chain of what is left is whole: replay from the oldest kept entry's
        # predecessor works; from further back it is trimmed.
        await wait_until(lambda: log.head != 0 and len(worker.entries) == FRAMES)
        offsets = [entry.offset for entry in worker.entries]
        replayed = await log.replay(offsets[-17], 100)
        assert [entry.offset for entry in replayed] == offsets[-16:]
        assert replayed[-1].frame == big(FRAMES - 1)
        with pytest.raises(HistoryGap) as gap:
            await log.replay(offsets[-18], 100)
        assert gap.value.reason == "trimmed"
        # Every frame reached the reader, in order (it was never behind the trim).
        assert worker.frames == [big(n) for n in range(FRAMES)] and worker.resets == []


@pytest.mark.redis
async def test_oversized_frames_are_markers_in_redis_and_live_copies_are_bounded(
    redis_server: RedisServer,
) -> None:
    room = Targets(("r",), ())
    async with workers(redis_server.url, max_bytes=BOUND, max_frame_bytes=64 * KiB) as (a, b):
        await a.log.append("small", NOBODY, NOBODY)
        await a.log.append(big(0), room, NOBODY)
        await wait_until(lambda: len(a.entries) == 2 and len(b.entries) == 2)
        for worker in (a, b):  # delivered live, whole, to both workers
            assert worker.frames == ["small", big(0)]
            assert worker.entries[1].targets == room
        marker = (await a.log.replay(a.entries[0].offset, 10))[0]
        assert (marker.offset, marker.frame, marker.targets) == (a.entries[1].offset, "", room)
        assert await memory_usage(redis_server, a.log.key) < 16 * KiB

        for n in range(1, FRAMES):  # 25 MiB of oversized frames
            await a.log.append(big(n), room, NOBODY)
        await wait_until(lambda: a.log.stats.appended == FRAMES + 1 and not a.log.stats.pending)
        assert await memory_usage(redis_server, a.log.key) < 64 * KiB
        live = await memory_usage(redis_server, a.log.live_key)
        assert live < REDIS_CEILING, f"live copies: MEMORY USAGE {live}"
        assert await redis_field(redis_server, "PTTL", a.log.live_key) > 0


@pytest.mark.redis
async def test_a_client_that_missed_an_oversized_frame_is_told_trimmed_on_redis(
    redis_server: RedisServer,
) -> None:
    """The defaults on a ``RedisBroker``: 100 KiB is over ``max_frame_bytes``."""
    broker = RedisBroker(redis_server.url)
    app = GatewayMiddleware(
        gateways=[shout_gateway(Recovery(window=30, client_share=1.0))], broker=broker
    )
    async with serving(app) as address:
        await missed_oversized_frame(address, 100 * KiB)
        key = cast(Any, app.keepers[0].log).key
        assert await memory_usage(redis_server, key) < 32 * KiB
