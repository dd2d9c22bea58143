"""Running a send coroutine eagerly, up to its first wait, outside any task.

A fan-out to 500 healthy members would otherwise cost 500 task wake-ups: each member's
writer task would be woken just to call the server's ``send``, which for a socket with
room finishes without ever waiting. Under asyncio the outbox instead runs that ``send``
right away in the emitting task (``start``); only a send that does wait is handed, half
done, to the member's writer task, which finishes it with ``resume``. That is Python
3.12's eager task start, without a Task. Other backends (trio) take the plain path:
queue, wake the writer, let it send.

This is the one clever piece of the outbox, kept here so the rest reads plainly; both
paths are tested (``tests/unit/test_outbox.py`` runs on asyncio and on trio).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

Started = tuple[Coroutine[Any, Any, Any], Any]
"""A send that waits: the coroutine and what it yielded at its first wait."""


def available() -> bool:
    """Whether eager starts work here: only under a running asyncio loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _awaiting(awaitable: Awaitable[Any]) -> None:
    await awaitable


def start(sending: Awaitable[Any]) -> Started | None:
    """Run ``sending`` until it finishes (``None``) or waits (what ``resume`` needs).

    Exceptions raised by the send propagate to the caller.
    """
    coro = sending if type(sending) is types.CoroutineType else _awaiting(sending)
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return coro, yielded


@types.coroutine
def resume(started: Started) -> Generator[Any, Any, None]:
    """Finish, in the awaiting task, a send that ``start`` left waiting.

    The task is handed what the coroutine yielded (the future it waits on) and then
    drives it, so waiting, wake-ups and cancellation behave as if this task had run it
    from the start.
    """
    coro, yielded = started
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(value)
        except StopIteration:
            return


def abandon(started: Started) -> None:
    """Close a started send nobody will finish (the peer is going)."""
    started[0].close()
