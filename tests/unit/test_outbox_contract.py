"""Outbox contract on every path: plain (trio; asyncio with eager starts off) and eager.

Order, caps counted in real bytes, the overflow policies for fan-out and replies alike,
and the process-wide budget that closes the biggest holders first.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gatewayasgi.runtime import eager
from gatewayasgi.runtime.outbox import Outbox, OutboxBudget, frame_cost
from gatewayasgi.settings import Overflow

pytestmark = pytest.mark.anyio

PATHS = [
    pytest.param(("asyncio", True), id="asyncio-eager"),
    pytest.param(("asyncio", False), id="asyncio-plain"),
    pytest.param(("trio", False), id="trio-plain"),
]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> tuple[str, bool]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(path: tuple[str, bool]) -> str:
    return path[0]


class Gate:
    """An ASGI ``send`` that records texts and holds those listed in ``hold``."""

    def __init__(self, hold: tuple[str, ...] = ()) -> None:
        self.sent: list[str] = []
        self.hold = set(hold)
        self.open = anyio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        text = message.get("text", message["type"])
        if text in self.hold:
            await self.open.wait()
        self.sent.append(text)


def text(value: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": value}


class Harness:
    def __init__(
        self, send: Gate, eager_on: bool, budget: OutboxBudget | None = None, **caps: Any
    ) -> None:
        self.events: list[str] = []
        self.outbox = Outbox(
            send,
            self.events.append,
            lambda: self.events.append("gone"),
            max_messages=caps.get("max_messages", 100),
            max_bytes=caps.get("max_bytes", 1 << 20),
            overflow=caps.get("overflow", Overflow.CLOSE),
            budget=budget,
        )
        self.outbox._eager = eager_on and eager.available()


async def until(condition: Any) -> None:
    with anyio.fail_after(2):
        while not condition():
            await anyio.sleep(0.001)


async def test_frames_leave_in_order_behind_a_send_that_waits(path: tuple[str, bool]) -> None:
    send = Gate(hold=("a",))
    async with anyio.create_task_group() as tasks:
        h = Harness(send, path[1])
        h.outbox.attach(tasks.start_soon)
        for value in "abc":
            assert h.outbox.put_nowait(text(value), 10)
        await anyio.sleep(0.01)
        assert send.sent == []
        await h.outbox.send(text("reply"), 10)  # queued behind, not written ahead
        send.open.set()
        await until(lambda: len(send.sent) == 4)
        assert send.sent == ["a", "b", "c", "reply"]
        assert h.outbox.held() == 0
        tasks.cancel_scope.cancel()


async def test_non_ascii_text_is_counted_as_the_memory_it_holds(path: tuple[str, bool]) -> None:
    """A 1,000-character emoji text holds ~4 KB: 4 frames of it fill a 16 KB cap, not 16."""
    frame = "😀" * 1000
    assert frame_cost(frame) >= 4000 > len(frame) * 3
    send = Gate(hold=("first",))
    async with anyio.create_task_group() as tasks:
        h = Harness(send, path[1], max_bytes=16_000, overflow=Overflow.DROP_NEW)
        h.outbox.attach(tasks.start_soon)
        h.outbox.put_nowait(text("first"), frame_cost("first"))
        taken = sum(h.outbox.put_nowait(text(frame), frame_cost(frame)) for _ in range(16))
        assert taken == 3
        assert h.outbox.statistics().dropped == 13
        tasks.cancel_scope.cancel()


async def test_a_reply_larger_than_the_cap_applies_the_policy(path: tuple[str, bool]) -> None:
    """Direct replies respect the caps too: an oversized one is never written."""
    send = Gate()
    async with anyio.create_task_group() as tasks:
        h = Harness(send, path[1], max_bytes=1000)
        h.outbox.attach(tasks.start_soon)
        await h.outbox.send(text("x" * 2000), 2049)
        assert send.sent == []
        assert h.events == ["slow_consumer"] and h.outbox.closed
        tasks.cancel_scope.cancel()


async def test_drop_oldest_keeps_the_newest_frames(path: tuple[str, bool]) -> None:
    send = Gate(hold=("hold",))
    async with anyio.create_task_group() as tasks:
        h = Harness(send, path[1], max_messages=2, overflow=Overflow.DROP_OLDEST)
        h.outbox.attach(tasks.start_soon)
        h.outbox.put_nowait(text("hold"), 1)
        await anyio.sleep(0.01)  # the writer has taken "hold" up and waits with it
        for value in "abcd":
            assert h.outbox.put_nowait(text(value), 1)
        send.open.set()
        await until(lambda: len(send.sent) == 3)
        assert send.sent == ["hold", "c", "d"]
        assert h.outbox.statistics().dropped == 2
        tasks.cancel_scope.cancel()


async def test_the_budget_closes_the_biggest_holders_first(path: tuple[str, bool]) -> None:
    budget = OutboxBudget(10_000)
    async with anyio.create_task_group() as tasks:
        small, big = Gate(hold=("s",)), Gate(hold=("b",))
        hs = Harness(small, path[1], budget=budget)
        hb = Harness(big, path[1], budget=budget)
        for h in (hs, hb):
            h.outbox.attach(tasks.start_soon)
        hs.outbox.put_nowait(text("s"), 1000)
        hb.outbox.put_nowait(text("b"), 1000)
        for _ in range(7):
            hb.outbox.put_nowait(text("more"), 1000)
        assert budget.total == 9000 and hb.events == [] and hs.events == []
        hs.outbox.put_nowait(text("last straw"), 2000)  # 11,000 > 10,000
        assert hb.events == ["budget"] and hb.outbox.closed
        assert hs.events == [] and not hs.outbox.closed
        await anyio.sleep(0.01)
        assert budget.total <= 9000
        tasks.cancel_scope.cancel()


async def test_bytes_held_return_to_zero_after_every_path(path: tuple[str, bool]) -> None:
    budget = OutboxBudget(None)
    send = Gate(hold=("a",))
    async with anyio.create_task_group() as tasks:
        h = Harness(send, path[1], budget=budget, overflow=Overflow.DROP_NEW, max_messages=3)
        h.outbox.attach(tasks.start_soon)
        for value in "abcdef":
            h.outbox.put_nowait(text(value), 7)
        await h.outbox.send(text("g"), 7)
        send.open.set()
        await until(lambda: not h.outbox._busy and len(h.outbox) == 0)
        assert h.outbox.held() == 0 and budget.total == 0
        h.outbox.put_nowait(text("late"), 5)
        await until(lambda: "late" in send.sent)
        h.outbox.close()
        assert h.outbox.held() == 0 and budget.total == 0
        tasks.cancel_scope.cancel()
