"""In-process test client: drive the ASGI callable with no network and no server.

    async with GatewayTestClient(app) as client:          # runs lifespan
        async with client.websocket_connect("/chat") as ws:
            await ws.emit("send_message", {"text": "hi"})
            assert (await ws.receive_json())["event"] == "message_ack"

Every receive has a timeout (``timeout=`` on the client, 5 s by default).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gatewayasgi._types import ASGIApp, Message, Scope


class WebSocketDenied(Exception):
    """The app refused the handshake (closed or answered HTTP before accept)."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"websocket refused: {message.get('type')} {message.get('code', '')}")
        self.message = message


class WebSocketClosed(Exception):
    """The app closed the connection; ``code`` and ``reason`` are what it sent."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


class TestWebSocket:
    """The client side of one in-process websocket."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        to_app: MemoryObjectSendStream[Message],
        from_app: MemoryObjectReceiveStream[Message],
        timeout: float,
    ) -> None:
        self._to_app = to_app
        self._from_app = from_app
        self._timeout = timeout
        self.accepted: Message | None = None

    async def send_text(self, data: str) -> None:
        await self._to_app.send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app.send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any) -> None:
        await self.send_text(orjson.dumps(data).decode())

    async def emit(self, event: str, data: Any = None, id: str | int | None = None) -> None:
        """Send a gateway frame ``{"event", "data", "id"?}``."""
        frame: dict[str, Any] = {"event": event, "data": data}
        if id is not None:
            frame["id"] = id
        await self.send_json(frame)

    async def receive(self) -> Message:
        with anyio.fail_after(self._timeout):
            message = await self._from_app.receive()
        if message["type"] == "websocket.close":
            raise WebSocketClosed(message.get("code", 1000), message.get("reason") or "")
        return message

    async def receive_text(self) -> str:
        message = await self.receive()
        text = message.get("text")
        return text if text is not None else bytes(message["bytes"]).decode()

    async def receive_json(self) -> Any:
        return orjson.loads(await self.receive_text())

    async def close(self, code: int = 1000) -> None:
        await self._to_app.send({"type": "websocket.disconnect", "code": code})


class GatewayTestClient:
    """Runs an ASGI app in-process; use as ``async with`` to run its lifespan too."""

    __test__ = False

    def __init__(self, app: ASGIApp, *, lifespan: bool = True, timeout: float = 5.0) -> None:
        self.app = app
        self.lifespan = lifespan
        self.timeout = timeout
        self._tasks: TaskGroup | None = None
        self._lifespan_in: MemoryObjectSendStream[Message] | None = None
        self._lifespan_out: MemoryObjectReceiveStream[Message] | None = None

    async def __aenter__(self) -> GatewayTestClient:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        if self.lifespan:
            await self._lifespan("startup")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._tasks is not None
        if self.lifespan and self._lifespan_in is not None:
            await self._lifespan("shutdown")
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(*exc)

    async def _lifespan(self, phase: str) -> None:
        assert self._tasks is not None
        if self._lifespan_in is None:
            to_app, app_in = anyio.create_memory_object_stream[Message](math.inf)
            app_out, from_app = anyio.create_memory_object_stream[Message](math.inf)
            self._lifespan_in, self._lifespan_out = to_app, from_app
            scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            app = self.app

            async def run_lifespan() -> None:
                await app(scope, app_in.receive, app_out.send)

            self._tasks.start_soon(run_lifespan)
        assert self._lifespan_out is not None
        await self._lifespan_in.send({"type": f"lifespan.{phase}"})
        with anyio.fail_after(self.timeout):
            reply = await self._lifespan_out.receive()
        if reply["type"].endswith(".failed"):
            raise RuntimeError(f"lifespan {phase} failed: {reply.get('message', '')}")

    @asynccontextmanager
    async def websocket_connect(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        query_string: str = "",
        subprotocols: list[str] | None = None,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> AsyncIterator[TestWebSocket]:
        """Open a websocket to ``path``; raises ``WebSocketDenied`` when refused."""
        to_app, app_in = anyio.create_memory_object_stream[Message](math.inf)
        app_out, from_app = anyio.create_memory_object_stream[Message](math.inf)
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query_string.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": client,
            "server": ("testserver", 80),
            "subprotocols": subprotocols or [],
            "extensions": {"websocket.http.response": {}},
            "state": {},
        }
        ws = TestWebSocket(to_app, from_app, self.timeout)
        finished = anyio.Event()

        async def run_app() -> None:
            try:
                await self.app(scope, app_in.receive, app_out.send)
            finally:
                finished.set()

        denied: Message | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(run_app)
            await to_app.send({"type": "websocket.connect"})
            with anyio.fail_after(self.timeout):
                first = await from_app.receive()
            if first["type"] != "websocket.accept":
                denied = first
                tasks.cancel_scope.cancel()
            else:
                ws.accepted = first
                try:
                    yield ws
                finally:
                    await ws.close()
                    # Let the app run its disconnect hooks before the next test step.
                    with anyio.move_on_after(self.timeout):
                        await finished.wait()
                    tasks.cancel_scope.cancel()
        if denied is not None:
            raise WebSocketDenied(denied)
