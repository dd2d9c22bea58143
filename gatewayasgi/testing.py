"""In-process test client: drive the ASGI callable with no network and no server.

    import pytest
    from gatewayasgi.testing import GatewayTestClient

    @pytest.mark.anyio                                      # or anyio's pytest plugin mode
    async def test_chat() -> None:
        async with GatewayTestClient(app) as client:        # runs lifespan
            async with client.websocket_connect("/chat?token=t") as ws:
                await ws.emit("send_message", {"text": "hi"}, id=1)
                assert (await ws.receive_json())["event"] == "message_ack"

Every receive has a timeout (``timeout=`` on the client, 5 s by default). Errors come out
as themselves, never wrapped in an ``ExceptionGroup``: a refused handshake raises
``WebSocketDenied``, a close the app sent ``WebSocketClosed``, an exception the app let
escape is raised again in the test.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import anyio
import orjson
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from gatewayasgi._types import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from gatewayasgi.middleware import GatewayMiddleware


class WebSocketDenied(Exception):
    """The app refused the handshake (closed or answered HTTP before accept).

    ``status`` is the HTTP status the client would see (403 for a close before accept),
    ``path`` the path asked for, ``namespaces`` the gateways the app serves (when a
    ``GatewayMiddleware`` was found in it) and ``message`` the ASGI message of the refusal.
    """

    def __init__(
        self,
        message: Message,
        path: str = "",
        namespaces: tuple[str, ...] = (),
        explanation: str = "",
    ) -> None:
        status = message.get("status", 403)
        super().__init__(
            f"websocket to {path or '?'} refused with HTTP {status} before accept"
            + (f": {explanation}" if explanation else "")
        )
        self.message = message
        self.status: int = status
        self.path = path
        self.namespaces = namespaces


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
        self._crash: list[Exception] = []
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
        """The next ASGI message the app sent; ``WebSocketClosed`` when it closed."""
        try:
            with anyio.fail_after(self._timeout):
                message = await self._from_app.receive()
        except anyio.EndOfStream:
            if self._crash:
                raise self._crash[0] from None
            raise WebSocketClosed(1006, "the app returned without closing") from None
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
        """Disconnect as a client would (the app sees ``websocket.disconnect``)."""
        # The app may be gone already.
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._to_app.send({"type": "websocket.disconnect", "code": code})


def _target(path: str, query_string: str) -> tuple[str, str, bytes, bytes]:
    """(scheme, path, raw_path, query_string) of ``path``, which may carry ``?query``
    or be a whole ``ws://host/path?query`` URL."""
    url = urlsplit(path)
    if url.scheme not in ("", "ws", "wss"):
        raise ValueError(f"websocket_connect needs a path or a ws:// URL, got {path!r}")
    if url.query and query_string:
        raise ValueError(
            f"websocket_connect got a query string twice: in the path ({url.query!r}) and "
            f"as query_string= ({query_string!r}); give one"
        )
    raw = url.path or "/"
    query = url.query or query_string.lstrip("?")
    return url.scheme or "ws", unquote(raw), raw.encode(), query.encode()


def _gateway_middlewares(app: Any) -> list[GatewayMiddleware]:
    """Every ``GatewayMiddleware`` reachable from ``app`` through ``.app`` links (and
    Starlette's built ``middleware_stack``)."""
    from gatewayasgi.middleware import GatewayMiddleware

    found: list[GatewayMiddleware] = []
    seen: set[int] = set()
    todo = [app]
    while todo and len(seen) < 64:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, GatewayMiddleware):
            found.append(current)
        todo.extend(getattr(current, name, None) for name in ("app", "middleware_stack"))
    return found


def _explain(app: Any, scope: Scope) -> tuple[tuple[str, ...], str]:
    """The namespaces served and why a handshake to ``scope``'s path was refused."""
    from gatewayasgi.dispatch.routes import route_path
    from gatewayasgi.middleware import unrouted_reason

    middlewares = _gateway_middlewares(app)
    if not middlewares:
        return (), "no GatewayMiddleware found in the app to tell why"
    namespaces = tuple(ns for middleware in middlewares for ns in middleware.servers)
    path = route_path(scope["path"], scope.get("root_path", ""))
    for middleware in middlewares:
        found = middleware.routes.match(path)
        if found is not None:
            return namespaces, (
                f"gateway {found[0].namespace} refused it (a handshake guard, "
                "allowed_origins or max_connections; the 'gatewayasgi' logger says which)"
            )
    return namespaces, unrouted_reason(path, namespaces)


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
        self._lifespan_streams: list[Any] = []
        self._lifespan_crash: list[Exception] = []

    async def __aenter__(self) -> GatewayTestClient:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        if self.lifespan:
            try:
                await self._lifespan("startup")
            except BaseException:
                await self._stop_tasks()
                raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self.lifespan and self._lifespan_in is not None:
                await self._lifespan("shutdown")
        finally:
            await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        # The task group never sees the caller's exception: it would come out wrapped
        # in an ExceptionGroup, and ``pytest.raises(SomeError)`` would miss it.
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(None, None, None)
        for stream in self._lifespan_streams:
            stream.close()
        self._lifespan_streams.clear()

    async def _lifespan(self, phase: str) -> None:
        assert self._tasks is not None
        if self._lifespan_in is None:
            to_app, app_in = anyio.create_memory_object_stream[Message](math.inf)
            app_out, from_app = anyio.create_memory_object_stream[Message](math.inf)
            self._lifespan_in, self._lifespan_out = to_app, from_app
            self._lifespan_streams = [to_app, app_in, app_out, from_app]
            scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            app, crash = self.app, self._lifespan_crash

            async def run_lifespan() -> None:
                try:
                    await app(scope, app_in.receive, app_out.send)
                except Exception as exc:
                    crash.append(exc)
                finally:
                    app_out.close()

            self._tasks.start_soon(run_lifespan)
        assert self._lifespan_out is not None
        await self._lifespan_in.send({"type": f"lifespan.{phase}"})
        try:
            with anyio.fail_after(self.timeout):
                reply = await self._lifespan_out.receive()
        except anyio.EndOfStream:
            cause = self._lifespan_crash[0] if self._lifespan_crash else None
            raise RuntimeError(f"lifespan {phase} failed: the app returned") from cause
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
        """Open a websocket to ``path`` (which may end in ``?query``, or be a whole
        ``ws://`` URL); raises ``WebSocketDenied`` when the handshake is refused."""
        scheme, route, raw_path, query = _target(path, query_string)
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": scheme,
            "http_version": "1.1",
            "path": route,
            "raw_path": raw_path,
            "root_path": "",
            "query_string": query,
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": client,
            "server": ("testserver", 80),
            "subprotocols": subprotocols or [],
            "extensions": {"websocket.http.response": {}},
            "state": {},
        }
        to_app, app_in = anyio.create_memory_object_stream[Message](math.inf)
        app_out, from_app = anyio.create_memory_object_stream[Message](math.inf)
        with to_app, app_in, app_out, from_app:
            ws = TestWebSocket(to_app, from_app, self.timeout)
            finished = anyio.Event()
            app = self.app

            async def run_app() -> None:
                try:
                    await app(scope, app_in.receive, app_out.send)
                except Exception as exc:
                    ws._crash.append(exc)
                finally:
                    app_out.close()
                    finished.set()

            # Nothing raised inside the task group escapes it: every error is kept and
            # raised after it, as itself.
            error: Exception | None = None
            denied: Message | None = None
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run_app)
                try:
                    await to_app.send({"type": "websocket.connect"})
                    first = await ws.receive()
                    if first["type"] != "websocket.accept":
                        denied = first
                except WebSocketClosed as closed:
                    if ws._crash:
                        error = ws._crash[0]
                    else:
                        denied = {"type": "websocket.close", "code": closed.code}
                except Exception as exc:
                    error = exc
                if denied is not None or error is not None:
                    with anyio.move_on_after(self.timeout):
                        await finished.wait()
                else:
                    ws.accepted = first
                    try:
                        yield ws
                    except Exception as exc:
                        error = exc
                    finally:
                        await ws.close()
                        # Let the app run its disconnect hooks before the next test step.
                        with anyio.move_on_after(self.timeout):
                            await finished.wait()
                tasks.cancel_scope.cancel()
        if error is not None:
            raise error
        if ws._crash:
            raise ws._crash[0]
        if denied is not None:
            namespaces, explanation = _explain(self.app, scope)
            raise WebSocketDenied(denied, path, namespaces, explanation)
