"""Two or more ``RedisLog`` "workers" on one real redis-server, and bounded waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from gatewayasgi.protocol.targets import NOBODY
from gatewayasgi.stores.base import Entry
from gatewayasgi.stores.redis import RedisLog

WAIT = 15.0  # generous: a noisy 2-core machine, Redis restarts


def fast_log(url: str, namespace: str = "/chat", **options: Any) -> RedisLog:
    """A RedisLog with short timeouts and delays, so fault tests stay fast."""
    defaults: dict[str, Any] = {
        "max_frames": 10_000,
        "max_age": 600.0,
        "reconnect_delay": 0.02,
        "max_reconnect_delay": 0.3,
        "connect_timeout": 1.0,
        "command_timeout": 1.0,
        "read_block": 0.5,
    }
    return RedisLog(url, namespace, **{**defaults, **options})


@dataclass
class Worker:
    """What one process's clients would see: every delivered entry and every reset."""

    log: RedisLog
    entries: list[Entry] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)

    def deliver(self, entry: Entry) -> None:
        self.entries.append(entry)

    def reset(self, epoch: str) -> None:
        self.resets.append(epoch)

    @property
    def frames(self) -> list[str]:
        return [entry.frame for entry in self.entries]

    async def emit(self, frame: str) -> None:
        await self.log.append(frame, NOBODY, NOBODY)


@asynccontextmanager
async def workers(url: str, count: int = 2, **options: Any) -> AsyncIterator[list[Worker]]:
    """``count`` followed logs on one namespace, closed (and their tasks ended) after."""
    async with anyio.create_task_group() as tg:
        team = [Worker(fast_log(url, **options)) for _ in range(count)]
        try:
            for worker in team:
                with anyio.fail_after(WAIT):
                    await worker.log.follow(worker.deliver, worker.reset, tg)
            yield team
        finally:
            with anyio.fail_after(WAIT):
                for worker in team:
                    await worker.log.close()
            tg.cancel_scope.cancel()


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
