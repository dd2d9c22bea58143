"""Outbox under asyncio, the eager path: fan-out sends started in the emitting task,
ordering behind a send that must wait, overflow, failures.

The ASGI ``send`` here is a fake (this is a unit test of the outbox alone); the real
servers are exercised by the reliability suite. ``test_outbox_contract.py`` runs the
plain path (trio, and asyncio with eager starts off).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatewayasgi.runtime.outbox import Outbox
from gatewayasgi.settings import Overflow


class FakeSend:
    """Records messages; blocks on ``gate`` for the texts listed in ``block``."""

    def __init__(self, block: tuple[str, ...] = (), fail: bool = False) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.block = block
        self.fail = fail
        self.abandoned = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("peer gone")
        text = message.get("text", message["type"])
        try:
            if text in self.block:
                await self.gate.wait()
        except GeneratorExit:
            self.abandoned += 1
            raise
        self.sent.append(text)


def make(send: FakeSend, **caps: Any) -> tuple[Outbox, list[asyncio.Task[None]], list[str]]:
    events: list[str] = []
    outbox = Outbox(
        send,
        lambda reason: events.append("overflow"),
        lambda: events.append("gone"),
        max_messages=caps.get("max_messages", 100),
        max_bytes=caps.get("max_bytes", 1 << 20),
        overflow=caps.get("overflow", Overflow.CLOSE),
    )
    writers: list[asyncio.Task[None]] = []
    outbox.attach(lambda run: writers.append(asyncio.ensure_future(run())))
    return outbox, writers, events


def text(value: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": value}


async def settle(condition: Any) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), 2)


def test_a_send_with_room_completes_inside_put_without_a_writer_task() -> None:
    async def scenario() -> None:
        send = FakeSend()
        outbox, writers, _ = make(send)
        assert outbox.put_nowait(text("a"), 1)
        assert send.sent == ["a"]  # done before put returned
        assert writers == []
        assert outbox.sent == 1

    asyncio.run(scenario())


def test_frames_queue_behind_a_send_that_waits_and_leave_in_order() -> None:
    async def scenario() -> None:
        send = FakeSend(block=("a",))
        outbox, writers, _ = make(send)
        for value in "abc":
            assert outbox.put_nowait(text(value), 1)  # never waits
        assert send.sent == []
        assert len(outbox) == 2  # b and c wait behind the half-done a
        assert len(writers) == 1
        send.gate.set()
        await settle(lambda: len(send.sent) == 3)
        assert send.sent == ["a", "b", "c"]
        assert outbox.put_nowait(text("d"), 1)  # idle again: straight through
        assert send.sent[-1] == "d"
        writers[0].cancel()

    asyncio.run(scenario())


def test_a_reply_sent_while_a_fanout_frame_waits_goes_after_it() -> None:
    async def scenario() -> None:
        send = FakeSend(block=("fan",))
        outbox, writers, _ = make(send)
        outbox.put_nowait(text("fan"), 3)
        await outbox.send(text("reply"), 5)  # queued, not written ahead
        send.gate.set()
        await settle(lambda: len(send.sent) == 2)
        assert send.sent == ["fan", "reply"]
        writers[0].cancel()

    asyncio.run(scenario())


def test_overflow_behind_a_stalled_send_closes_the_outbox() -> None:
    async def scenario() -> None:
        send = FakeSend(block=("x",))
        outbox, writers, events = make(send, max_messages=2)
        outbox.put_nowait(text("x"), 1)
        assert outbox.put_nowait(text("y"), 1) and outbox.put_nowait(text("z"), 1)
        assert not outbox.put_nowait(text("overflow"), 1)
        assert events == ["overflow"]
        assert outbox.closed and len(outbox) == 0
        writers[0].cancel()

    asyncio.run(scenario())


def test_closing_before_the_writer_starts_abandons_the_half_done_send() -> None:
    async def scenario() -> None:
        send = FakeSend(block=("x",))
        outbox, writers, _ = make(send)
        outbox.put_nowait(text("x"), 1)
        outbox.close()  # the writer task was spawned but has not run yet
        assert send.abandoned == 1
        await asyncio.sleep(0)
        assert send.sent == []
        writers[0].cancel()

    asyncio.run(scenario())


def test_cancelling_the_writer_cancels_the_send_it_finishes() -> None:
    async def scenario() -> None:
        send = FakeSend(block=("x",))
        outbox, writers, _ = make(send)
        outbox.put_nowait(text("x"), 1)
        await asyncio.sleep(0.01)  # the writer has taken the send up and waits with it
        writers[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await writers[0]
        assert send.sent == []

    asyncio.run(scenario())


def test_a_failing_send_never_raises_and_reports_the_peer_gone() -> None:
    async def scenario() -> None:
        send = FakeSend(fail=True)
        outbox, _, events = make(send)
        assert outbox.put_nowait(text("a"), 1)
        assert events == ["gone"] and outbox.closed
        await outbox.send(text("b"), 1)  # dropped quietly
        assert events == ["gone"]

    asyncio.run(scenario())


def test_a_send_failing_after_it_waited_is_reported_by_the_writer() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            await gate.wait()
            raise OSError("peer gone")

        outbox, writers, events = make(send)  # type: ignore[arg-type]
        assert outbox.put_nowait(text("a"), 1)  # waits: handed to the writer
        assert events == []
        gate.set()
        await settle(lambda: events == ["gone"])
        assert outbox.closed and outbox.sent == 0
        writers[0].cancel()

    asyncio.run(scenario())


def test_a_send_returning_another_kind_of_awaitable_is_driven_too() -> None:
    """Some servers' ``send`` returns a future-like object rather than a coroutine."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        sent: list[str] = []

        def send(message: dict[str, Any]) -> asyncio.Future[None]:
            future = loop.create_future()
            future.add_done_callback(lambda _: sent.append(message["text"]))
            futures.append(future)
            return future

        outbox, writers, _ = make(send)  # type: ignore[arg-type]
        assert outbox.put_nowait(text("a"), 1) and outbox.put_nowait(text("b"), 1)
        assert len(futures) == 1  # b waits behind a
        futures[0].set_result(None)
        await settle(lambda: len(futures) == 2)
        futures[1].set_result(None)
        await settle(lambda: outbox.sent == 2)
        assert sent == ["a", "b"]
        writers[0].cancel()

    asyncio.run(scenario())
