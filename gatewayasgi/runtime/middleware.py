"""``GatewayMiddleware``: routes gateway websocket scopes, passes everything else through.

Shape follows Starlette's pure ASGI middleware: ``__init__(app, ...)`` then
``__call__``, handing every scope it does not own to the wrapped app untouched.
All reflection (DI, handler compilation) happens in ``__init__``.
"""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from gatewayasgi._types import ASGIApp, Message, Receive, Scope, Send
from gatewayasgi.brokers.base import Broker
from gatewayasgi.di import Container
from gatewayasgi.dispatch.routes import Routes, route_path
from gatewayasgi.dispatch.table import GatewayTable, compile_gateway
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.gateway.decorators import gateway_meta, registered_gateways
from gatewayasgi.runtime.handshake import FORBIDDEN, refuse
from gatewayasgi.runtime.server import WebSocketServer
from gatewayasgi.runtime.session import Session
from gatewayasgi.settings import Settings

logger = logging.getLogger("gatewayasgi")


def _gateway_classes(gateways: Iterable[type] | None, providers: Sequence[Any]) -> list[type]:
    chosen = list(gateways) if gateways is not None else registered_gateways()
    # A gateway listed among providers (as in a PyNest module) is served too.
    for provider in providers:
        if isinstance(provider, type) and gateway_meta(provider) and provider not in chosen:
            chosen.append(provider)
    for cls in chosen:
        if not isinstance(cls, type) or gateway_meta(cls) is None:
            raise ConfigurationError(f"{cls!r} is not a class decorated with @WebSocketGateway")
    return chosen


class GatewayMiddleware:
    """Serve ``@WebSocketGateway`` classes in front of any ASGI app.

    ``gateways=None`` serves every gateway declared so far. ``providers`` are classes
    (built once, constructor hints resolved from other providers) or ready instances
    (shared with the app). ``app=None`` serves gateways alone: HTTP gets 404 and an
    unmatched websocket is refused before accept. ``broker`` carries emits to other
    processes (see ``gatewayasgi.brokers``). Other keyword arguments are ``Settings``.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        gateways: Iterable[type] | None = None,
        providers: Sequence[Any] = (),
        broker: Broker | None = None,
        **settings: Any,
    ) -> None:
        self.app = app
        self.settings = Settings(**settings)
        self.container = Container(providers)
        self.broker = broker
        self.servers: dict[str, WebSocketServer] = {}
        self.tables: list[GatewayTable] = []
        entries = []
        for cls in _gateway_classes(gateways, providers):
            table = compile_gateway(cls, self.container)
            server = WebSocketServer(
                table.meta.namespace,
                broker,
                max_rooms_per_connection=self.settings.max_rooms_per_connection,
                max_room_name_length=self.settings.max_room_name_length,
                max_envelope_size=max(self.settings.max_message_size, 1 << 20) * 2,
            )
            table.gateway.server = server
            self.tables.append(table)
            self.servers[table.meta.namespace] = server
            entries.append(
                (table.meta.namespace, Session(table, server, self.settings), cls.__name__)
            )
        self.routes: Routes[Session] = Routes(entries)
        self._started = False
        self._start_lock: anyio.Lock | None = None

    def get(self, cls: type) -> Any:
        """The provider or gateway instance built for ``cls``."""
        for table in self.tables:
            if table.cls is cls:
                return table.gateway
        return self.container.get(cls)

    def server_for(self, gateway: type | str) -> WebSocketServer:
        """The ``WebSocketServer`` of a gateway class or namespace."""
        if isinstance(gateway, str):
            return self.servers[gateway]
        for table in self.tables:
            if table.cls is gateway:
                return self.servers[table.meta.namespace]
        raise KeyError(gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            found = self.routes.match(route_path(scope["path"], scope.get("root_path", "")))
            if found is not None:
                if not self._started:
                    await self._start(None)
                session, path_params = found
                if path_params:
                    scope["path_params"] = {**scope.get("path_params", {}), **path_params}
                await session.run(scope, receive, send, path_params)
                return
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.app is not None:
            await self.app(scope, receive, send)
        else:
            await _refuse(scope, receive, send)

    # -- startup and shutdown -------------------------------------------------

    async def _start(self, task_group: TaskGroup | None) -> None:
        if self._start_lock is None:
            self._start_lock = anyio.Lock()
        async with self._start_lock:
            if self._started:
                return
            if self.broker is not None:
                if task_group is None:
                    logger.warning(
                        "the ASGI server did not run lifespan: broker %r is off, emits "
                        "reach this process's clients only",
                        self.broker,
                    )
                else:
                    await self._start_broker(task_group)
            for table in self.tables:
                if table.after_init is not None:
                    result = table.after_init(table.gateway.server)
                    if inspect.isawaitable(result):
                        await result
            if self.settings.gc_freeze:
                # A full collection rescans every object alive, hundreds of thousands
                # after importing pydantic and a framework: measured under granian, that
                # tripled the p99 of a 500-member fan-out. What exists at startup lives
                # as long as the process, so it is frozen once, after one collection.
                gc.collect()
                gc.freeze()
            self._started = True

    async def _start_broker(self, task_group: TaskGroup) -> None:
        assert self.broker is not None
        by_channel = {server.channel: server for server in self.servers.values()}

        def on_message(channel: str, data: bytes) -> None:
            server = by_channel.get(channel)
            if server is not None:
                server.on_broker_message(data)

        await self.broker.start(on_message, task_group)
        for server in self.servers.values():
            await server.attach_broker()

    async def _stop(self) -> None:
        if self.broker is not None:
            try:
                await self.broker.close()
            except Exception:
                logger.exception("closing broker %r failed", self.broker)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as services:
            try:
                if self.app is None:
                    await self._own_lifespan(receive, send, services)
                else:
                    await self._wrapped_lifespan(scope, receive, send, services)
            finally:
                services.cancel_scope.cancel()

    async def _own_lifespan(self, receive: Receive, send: Send, services: TaskGroup) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start(services)
                except Exception as exc:
                    logger.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _wrapped_lifespan(
        self, scope: Scope, receive: Receive, send: Send, services: TaskGroup
    ) -> None:
        assert self.app is not None

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                # The app's own startup succeeded: its resources exist for after_init.
                try:
                    await self._start(services)
                except Exception as exc:
                    logger.exception("gateway startup failed")
                    message = {"type": "lifespan.startup.failed", "message": repr(exc)}
            await send(message)

        async def wrapped_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self._stop()
            return message

        await self.app(scope, wrapped_receive, wrapped_send)


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """What a gateway-only middleware answers to scopes no gateway owns."""
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": b"Not Found"})
    elif scope["type"] == "websocket":
        message = await receive()
        if message["type"] == "websocket.connect":
            await refuse(scope, send, FORBIDDEN)
