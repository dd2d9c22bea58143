"""Running the user's code for server frames: handlers, answers to calls, lifecycle callbacks.

Sync handlers run inline, in arrival order. Async ones run as tasks, at most
``max_tasks`` at once: past that the reader waits for a free slot, so a flood of events
with slow handlers slows the reading of the socket (the server's outbox policy then
applies) instead of piling up tasks. Exceptions in handlers and callbacks are logged on
the ``gatewayasgi.client`` logger, never raised into the reader.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WebSocketClosed

from gatewayasgi.client.calls import Handler, answer_call
from gatewayasgi.client.codecs import JSON_CODEC, Codec
from gatewayasgi.client.frames import InboundFrame

logger = logging.getLogger("gatewayasgi.client")

LifecycleEvent = Literal["connect", "disconnect", "session", "gap"]


class Dispatcher:
    """Handlers per server event, lifecycle callbacks, and the tasks running them."""

    def __init__(self, max_tasks: int, codec: Codec = JSON_CODEC) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_handler_tasks must be >= 1, got {max_tasks}")
        self.codec = codec
        self.handlers: dict[str, Handler] = {}
        self.lifecycle: dict[LifecycleEvent, list[Callable[..., Any]]] = {
            "connect": [],
            "disconnect": [],
            "session": [],
            "gap": [],
        }
        self._slots = asyncio.Semaphore(max_tasks)
        self._tasks: set[asyncio.Task[None]] = set()

    async def deliver(self, frame: InboundFrame) -> bool:
        """Run the handler of ``frame.event``; ``False`` when there is none."""
        handler = self.handlers.get(frame.event)
        if handler is None:
            return False
        await self._slots.acquire()
        try:
            result = handler(frame.data)
        except Exception:
            self._slots.release()
            logger.exception("handler of %r failed", frame.event)
            return True
        if inspect.isawaitable(result):
            self._spawn(result, f"handler of {frame.event!r}", slot=True)
        else:
            self._slots.release()
        return True

    async def answer(
        self, ws: ClientConnection, frame: InboundFrame, ack: int, current: Callable[[], bool]
    ) -> None:
        """Answer a server call on the connection it came on (its ack number means nothing
        on another), while ``current()`` says that connection is still the client's."""
        await self._slots.acquire()
        handler = self.handlers.get(frame.event)

        async def reply() -> None:
            text = await answer_call(handler, frame, ack, self.codec)
            if current():
                with suppress(WebSocketClosed):
                    await ws.send(text)

        self._spawn(reply(), f"answer to {frame.event!r}", slot=True)

    async def heartbeat(self, ws: ClientConnection, frame: InboundFrame) -> None:
        """Answer the server's heartbeat with a frame of the same event (any frame keeps the
        connection, per the README); a handler for it runs too. Never reaches ``receive()``."""
        with suppress(WebSocketClosed):
            await ws.send(self.codec.encode_event(frame.event, None))
        await self.deliver(frame)

    def fire(self, name: LifecycleEvent, *args: Any) -> None:
        for callback in self.lifecycle[name]:
            try:
                result = callback(*args)
            except Exception:
                logger.exception("%s callback failed", name)
                continue
            if inspect.isawaitable(result):
                self._spawn(result, f"{name} callback", slot=False)

    async def cancel_all(self) -> None:
        """Cancel every running task but the caller's own, and wait for them."""
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, awaitable: Awaitable[Any], what: str, *, slot: bool) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("%s failed", what)
            finally:
                if slot:
                    self._slots.release()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
