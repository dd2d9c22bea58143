"""``RedisLog`` on a real redis-server: order across workers, faults, epochs, replay.

Every test runs two (or more) logs on one namespace, as two worker processes would, and
checks what each would hand its clients. Every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.stores.base import HistoryGap
from tests.recovery.redis_workers import WAIT, Worker, fast_log, wait_until, workers
from tests.redis_server import RedisServer, redis_server_binary, running_redis_server

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def frames(tag: str, count: int) -> list[str]:
    return [f'{{"event":"m","data":"{tag}{i}"}}' for i in range(count)]


def subsequence(items: list[str], of: list[str]) -> bool:
    """``items`` appear in ``of`` in the same order."""
    position = {item: index for index, item in enumerate(of)}
    indexes = [position[item] for item in items]
    return indexes == sorted(indexes)


async def test_two_workers_deliver_every_entry_once_in_one_order(redis_server: RedisServer) -> None:
    """Both workers append concurrently; each delivers all entries once, in stream order."""
    a_frames, b_frames = frames("a", 300), frames("b", 300)
    async with workers(redis_server.url) as (a, b):

        async def emit_all(worker: Worker, batch: list[str]) -> None:
            for frame in batch:
                await worker.emit(frame)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(emit_all, a, a_frames)
            tg.start_soon(emit_all, b, b_frames)
        await wait_until(lambda: len(a.entries) >= 600 and len(b.entries) >= 600)
        await anyio.sleep(0.2)  # nothing more arrives
        assert a.frames == b.frames
        assert sorted(a.frames) == sorted(a_frames + b_frames)  # each once
        assert subsequence(a_frames, a.frames) and subsequence(b_frames, a.frames)
        offsets = [entry.offset for entry in a.entries]
        assert offsets == sorted(set(offsets))
        assert a.log.head == b.log.head == offsets[-1]
        assert a.resets == b.resets == []
        assert a.log.epoch == b.log.epoch != ""


async def test_targets_and_exclusions_travel_with_the_frame(redis_server: RedisServer) -> None:
    """Rooms, client ids and exclusions come back as they were appended."""
    targets = Targets(("room-1", "room-2"), ("c_" + "0" * 32,))
    exclude = Targets((), ("c_" + "1" * 32,))
    async with workers(redis_server.url) as (a, b):
        await a.log.append("frame", targets, exclude)
        await a.log.append("plain", NOBODY, NOBODY)
        await wait_until(lambda: len(b.entries) == 2)
        first, second = b.entries
        assert (first.frame, first.targets, first.exclude) == ("frame", targets, exclude)
        assert (second.targets, second.exclude) == (NOBODY, NOBODY)


async def test_a_new_log_starts_at_the_current_end(redis_server: RedisServer) -> None:
    """``head`` at start is the stream's last id: a late worker does not replay history."""
    async with workers(redis_server.url, count=1) as (a,):
        for frame in frames("x", 5):
            await a.emit(frame)
        await wait_until(lambda: len(a.entries) == 5)
        async with workers(redis_server.url, count=1) as (late,):
            assert late.log.head == a.log.head
            await a.emit("after")
            await wait_until(lambda: late.frames == ["after"])


async def test_killed_connections_lose_and_double_nothing(redis_server: RedisServer) -> None:
    """CLIENT KILL of every normal connection (readers and writers) during appends."""
    sent = frames("k", 1500)
    async with workers(redis_server.url) as (a, b):

        async def killer() -> None:
            for _ in range(6):
                await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(
                    redis_server.command, "CLIENT", "KILL", "TYPE", "normal"
                )

        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            for frame in sent:
                await a.emit(frame)
                if a.log.stats.pending > 200:
                    await anyio.sleep(0.005)  # let the writer catch up, as real traffic would
                await anyio.lowlevel.checkpoint()
        await wait_until(lambda: len(a.entries) >= 1500 and len(b.entries) >= 1500, WAIT * 2)
        await anyio.sleep(0.3)
        assert a.frames == sent and b.frames == sent
        assert a.log.stats.reconnects > 0 and b.log.stats.reconnects > 0
        assert a.resets == b.resets == []


async def test_restart_with_persistence_keeps_everything(tmp_path: Path) -> None:
    """Redis restarted with an append-only file during appends: all frames, once, same epoch."""
    sent = frames("p", 600)
    with running_redis_server(tmp_path, persistent=True) as server:
        async with workers(server.url) as (a, b):
            epoch = a.log.epoch
            for index, frame in enumerate(sent):
                await a.emit(frame)
                if index == 300:
                    await anyio.to_thread.run_sync(server.restart)
                if index % 20 == 0:
                    await anyio.sleep(0.001)
            await wait_until(lambda: len(a.entries) >= 600 and len(b.entries) >= 600, WAIT * 2)
            await anyio.sleep(0.3)
            assert a.frames == sent and b.frames == sent
            assert a.log.epoch == b.log.epoch == epoch
            assert a.resets == b.resets == []


async def test_restart_without_persistence_resets_to_one_new_epoch(
    redis_server: RedisServer,
) -> None:
    """Redis comes back empty: each worker calls reset once, all on the same new epoch,
    and frames appended afterwards are delivered from the new stream's start."""
    async with workers(redis_server.url, count=3) as team:
        a = team[0]
        old = a.log.epoch
        for frame in frames("before", 50):
            await a.emit(frame)
        await wait_until(lambda: all(len(w.entries) == 50 for w in team))
        await anyio.to_thread.run_sync(redis_server.restart)
        await wait_until(lambda: all(w.resets for w in team))
        new = a.log.epoch
        assert new != old
        assert all(w.resets == [new] and w.log.epoch == new for w in team)
        assert all(w.log.head <= a.log.head for w in team)
        after = frames("after", 20)
        for frame in after:
            await team[1].emit(frame)
        await wait_until(lambda: all(w.frames[-20:] == after for w in team))
        await anyio.sleep(0.2)
        assert all(w.frames == frames("before", 50) + after for w in team)


async def test_a_break_in_the_chain_calls_reset(redis_server: RedisServer) -> None:
    """An entry whose predecessor is not the last one read (entries lost in between):
    reset with the same epoch, then delivery goes on."""
    async with workers(redis_server.url) as (a, b):
        await a.emit("one")
        await wait_until(lambda: b.frames == ["one"])
        redis_server.command("XADD", a.log.key, "*", "f", "orphan", "p", "0-0")
        await a.emit("two")
        await wait_until(lambda: b.frames == ["one", "orphan", "two"])
        assert b.resets == [b.log.epoch] and a.resets == [a.log.epoch]
        assert b.log.head == b.entries[-1].offset


async def test_trimmed_while_a_reader_was_away_calls_reset(redis_server: RedisServer) -> None:
    """A reader's link drops; while it waits to reconnect, the entries after its last one
    are trimmed away: on reconnect it calls reset (same epoch) and goes on from what is
    left, in order."""
    writer = fast_log(redis_server.url, max_frames=10)  # not followed: flushes inline
    async with workers(redis_server.url, count=1) as (b,):
        b.log._backoff = lambda attempt: 1.0  # type: ignore[method-assign]
        await writer.append("one", NOBODY, NOBODY)
        await wait_until(lambda: b.frames == ["one"])
        redis_server.command("CLIENT", "KILL", "TYPE", "normal")
        await wait_until(lambda: not b.log.stats.connected)
        sent = frames("t", 500)
        for frame in sent:
            await writer.append(frame, NOBODY, NOBODY)
        await wait_until(lambda: b.frames[-1:] == sent[-1:])
        assert b.resets == [b.log.epoch]
        after = b.frames[1:]
        assert 0 < len(after) < 500 and after == sent[-len(after) :]
    await writer.close()


async def test_outage_appends_are_kept_then_flushed_in_order(tmp_path: Path) -> None:
    """Appends while Redis is down return at once and arrive, in order, once it is back."""
    with running_redis_server(tmp_path, persistent=True) as server:
        async with workers(server.url) as (a, b):
            await a.emit("first")
            await wait_until(lambda: b.frames == ["first"])
            await anyio.to_thread.run_sync(server.stop)
            during = frames("down", 100)
            with anyio.fail_after(1.0):  # append never waits on Redis
                for frame in during:
                    await a.emit(frame)
            assert a.log.stats.pending > 0
            await anyio.to_thread.run_sync(server.start)
            await wait_until(lambda: len(b.entries) == 101 and len(a.entries) == 101)
            assert a.frames == b.frames == ["first", *during]
            assert a.log.stats.pending == 0 and a.resets == b.resets == []


async def test_a_frozen_redis_doubles_nothing(redis_server: RedisServer) -> None:
    """A batch that timed out while Redis was frozen runs when it thaws, and its retry is
    skipped by the producer's sequence numbers: every frame once."""
    async with workers(redis_server.url) as (a, b):
        redis_server.freeze()
        sent = frames("f", 50)
        for frame in sent:
            await a.emit(frame)
        await anyio.sleep(1.5)  # longer than the command timeout: the batch is retried
        redis_server.thaw()
        await wait_until(lambda: len(b.entries) >= 50 and len(a.entries) >= 50)
        await anyio.sleep(0.5)
        assert a.frames == b.frames == sent
        assert a.log.stats.write_failures > 0


async def test_the_outage_queue_is_bounded_and_its_drops_are_told(tmp_path: Path) -> None:
    """Past ``max_pending`` the oldest queued frames go; readers see a reset, then the rest."""
    with running_redis_server(tmp_path, persistent=True) as server:
        async with workers(server.url, max_pending=30) as (a, b):
            await anyio.to_thread.run_sync(server.stop)
            sent = frames("q", 100)
            for frame in sent:
                await a.emit(frame)
            assert a.log.stats.pending == 30 and a.log.stats.dropped == 70
            await anyio.to_thread.run_sync(server.start)
            await wait_until(lambda: len(b.entries) == 30 and len(a.entries) == 30)
            assert a.frames == b.frames == sent[70:]
            assert a.resets == [a.log.epoch] and b.resets == [b.log.epoch]
            with pytest.raises(HistoryGap):
                await a.log.replay(0, 100)  # the gap marker is in the range


async def test_the_outage_queue_bounds_bytes_too(redis_server: RedisServer) -> None:
    """``max_pending_bytes`` holds as well as the count."""
    log = fast_log(redis_server.url, max_pending_bytes=1000)
    try:
        redis_server.stop()
        for _ in range(50):
            await log.append("x" * 100, NOBODY, NOBODY)  # no follow: flushed inline, fails
        assert log.stats.pending == 10 and log.stats.dropped == 40
    finally:
        await log.close()
    assert log.stats.pending == 0 and log.stats.dropped == 50


async def test_replay_ranges_limits_and_gaps(redis_server: RedisServer) -> None:
    """Replay returns what follows an offset, up to ``limit``; trimmed and invalid raise."""
    async with workers(redis_server.url, count=1) as (a,):
        sent = frames("r", 20)
        for frame in sent:
            await a.emit(frame)
        await wait_until(lambda: len(a.entries) == 20)
        log, offsets = a.log, [entry.offset for entry in a.entries]
        assert [e.frame for e in await log.replay(0, 100)] == sent
        assert [e.frame for e in await log.replay(offsets[4], 3)] == sent[5:8]
        assert await log.replay(offsets[-1], 10) == []
        assert await log.replay(offsets[4], 0) == []
        assert [e.offset for e in await log.replay(offsets[9], 100)] == offsets[10:]
        with pytest.raises(HistoryGap) as invalid:
            await log.replay(offsets[-1] + (1 << 30), 10)
        assert invalid.value.reason == "invalid"
        # An offset the log never gave out, between two real ones.
        forged = next(o + 1 for o in offsets if o + 1 not in offsets)
        if forged < offsets[-1]:
            with pytest.raises(HistoryGap):
                await log.replay(forged, 10)


async def test_replay_past_trimming_raises_trimmed(redis_server: RedisServer) -> None:
    """With a small ``max_frames`` old offsets are out of reach; recent ones are not."""
    log = fast_log(redis_server.url, max_frames=10)  # not followed: appends flush inline
    try:
        await log.append("first", NOBODY, NOBODY)
        (first,) = await log.replay(0, 10)
        for frame in frames("t", 400):
            await log.append(frame, NOBODY, NOBODY)
        length = redis_server.command("XLEN", log.key)
        assert isinstance(length, int) and length < 400  # MAXLEN ~ trims whole nodes
        with pytest.raises(HistoryGap) as gap:
            await log.replay(first.offset, 10)
        assert gap.value.reason == "trimmed"
        with pytest.raises(HistoryGap):
            await log.replay(0, 10)
        newest = redis_server.command("XREVRANGE", log.key, "+", "-", "COUNT", "6")
        assert isinstance(newest, list) and isinstance(newest[-1], list)
        sixth = newest[-1][0]
        assert isinstance(sixth, bytes)
        recent = await log.replay(log.parse_offset(sixth.decode()) or 0, 10)
        assert [e.frame for e in recent] == frames("t", 400)[-5:]
    finally:
        await log.close()


async def test_offsets_stay_below_the_counter_limit(redis_server: RedisServer) -> None:
    """When an id's counter passes 2**19 (clock went back), the next id moves to the next
    millisecond, so every id maps onto ``(ms << 20) | seq``."""
    log = fast_log(redis_server.url)
    try:
        future = 99_999_999_999_999
        redis_server.command("XADD", log.key, f"{future}-524300", "f", "seed", "p", "0-0")
        for frame in ("a", "b", "c"):
            await log.append(frame, NOBODY, NOBODY)
        replayed = await log.replay(log.parse_offset(f"{future}-524300") or 0, 10)
        ids = [log.format_offset(entry.offset) for entry in replayed]
        assert ids[0] == f"{future}-524301"
        assert all(log.parse_offset(i) is not None for i in ids)
        assert [e.frame for e in replayed] == ["a", "b", "c"]
    finally:
        await log.close()


async def test_redis_down_at_start_then_up(tmp_path: Path) -> None:
    """``follow`` returns after one attempt; once Redis answers, the epoch is set, reset is
    called (clients attached meanwhile may have missed frames) and frames flow."""
    server = RedisServer(redis_server_binary(), tmp_path)
    try:
        async with workers(server.url) as (a, b):
            assert a.log.epoch == ""
            await a.emit("queued")
            await anyio.to_thread.run_sync(server.start)
            await wait_until(lambda: a.log.epoch != "" and b.log.epoch != "")
            assert a.log.epoch == b.log.epoch
            await wait_until(lambda: a.resets == [a.log.epoch] and b.resets == [b.log.epoch])
            await a.emit("live")
            await wait_until(lambda: b.frames[-1:] == ["live"])
    finally:
        server.stop()


async def test_close_is_idempotent_and_counts_what_it_could_not_write(
    redis_server: RedisServer,
) -> None:
    """Closing with Redis away drops (and counts) what was queued; appends after close too."""
    async with workers(redis_server.url, count=1) as (a,):
        redis_server.stop()
        await a.emit("lost")
        with anyio.fail_after(WAIT):
            await a.log.close()
            await a.log.close()
        await a.emit("after close")
        assert a.log.stats.dropped == 2


async def test_a_burst_without_checkpoints_waits_for_the_writer(redis_server: RedisServer) -> None:
    """Appends in a tight loop never fill the queue while Redis answers: nothing dropped."""
    sent = frames("burst", 3000)
    async with workers(redis_server.url, max_pending=1100) as (a, b):
        for frame in sent:
            await a.emit(frame)
        await wait_until(lambda: len(b.entries) == 3000)
        assert b.frames == sent and a.log.stats.dropped == 0 and b.resets == []


async def test_a_batch_written_again_after_a_failover_is_delivered_once(
    redis_server: RedisServer,
) -> None:
    """A master that fails over before its replica got the producer's last number: the
    writer's batch (sent again, its reply lost) is written a second time. Every reader
    skips the entries it delivered already."""
    import redis as redis_py

    from gatewayasgi.stores._redis_outbox import FRAME, Pending

    async with workers(redis_server.url, 2) as (writer, reader):
        for frame in frames("a", 3):
            await writer.emit(frame)
        await wait_until(lambda: reader.frames == frames("a", 3))
        log = writer.log
        client = redis_py.Redis.from_url(redis_server.url)
        try:
            client.delete(log._producer_key)  # what the promoted replica never had
        finally:
            client.close()
        again = [
            Pending(n + 1, FRAME, frame.encode(), b"") for n, frame in enumerate(frames("a", 3))
        ]
        with anyio.fail_after(WAIT):
            await log._write(again)
        await writer.emit("b0")
        await wait_until(lambda: "b0" in reader.frames)
        assert reader.frames == [*frames("a", 3), "b0"]
        assert writer.frames == [*frames("a", 3), "b0"]
        assert reader.log.stats.duplicates == 3
        assert reader.log.stats.resets == 0
