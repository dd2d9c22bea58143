"""``GatewayRunner``: serves one gateway's websocket scopes, from handshake to teardown.

One runner per gateway (built at startup) holds what every connection shares: the
compiled table, the server, the wire protocol, the limits and the instrumentation.
Each accepted connection gets its own ``Session`` (``runtime.session``).
"""

from __future__ import annotations

import inspect
import logging

import anyio

from gatewayasgi._types import JSONValue, Message, Receive, Scope, Send
from gatewayasgi.dispatch.table import GatewayTable
from gatewayasgi.gateway.guards import ExecutionContext, WsArgumentsHost
from gatewayasgi.instrumentation import Instrumentation, RefuseReason
from gatewayasgi.protocol.base import WireProtocol
from gatewayasgi.protocol.resume import find_credential
from gatewayasgi.protocol.targets import new_client_id
from gatewayasgi.runtime.connection import Connection
from gatewayasgi.runtime.guarding import check_guards
from gatewayasgi.runtime.handshake import FORBIDDEN, UNAVAILABLE, choose_subprotocol, refuse
from gatewayasgi.runtime.hooks import SessionHooks
from gatewayasgi.runtime.outbox import Outbox, OutboxBudget
from gatewayasgi.runtime.server import WebSocketServer
from gatewayasgi.runtime.session import Session
from gatewayasgi.settings import Overflow, Settings, origin_allowed

logger = logging.getLogger("gatewayasgi")


class GatewayRunner:
    """Runs the clients of one gateway, each from handshake until it goes away."""

    def __init__(
        self,
        table: GatewayTable,
        server: WebSocketServer,
        settings: Settings,
        protocol: WireProtocol,
        *,
        budget: OutboxBudget | None = None,
        metrics: Instrumentation | None = None,
    ) -> None:
        self.table = table
        self.server = server
        self.settings = settings
        self.protocol = protocol
        self.metrics = metrics
        self.namespace = table.meta.namespace
        self.handlers = table.handlers
        self.overflow = Overflow(table.meta.options.get("overflow", settings.overflow))
        self.heartbeat_event = settings.heartbeat_event if settings.heartbeat_interval else None
        spoken = tuple(table.meta.subprotocols)
        if protocol.subprotocol is not None:
            spoken = (protocol.subprotocol, *spoken)
        self.subprotocols = spoken
        """What the accept may select: the wire protocol's own subprotocol first."""
        self.keeper: SessionHooks | None = None
        """Set by the middleware when the gateway keeps sessions (recovery)."""
        self._budget = budget
        self._slots = 0
        """Connections holding a place under ``max_connections``: accepted ones and
        handshakes in progress (reserved before any guard is awaited)."""

    async def run(
        self, scope: Scope, receive: Receive, send: Send, path_params: dict[str, str]
    ) -> None:
        """Serve the ASGI websocket scope from ``websocket.connect`` to the end."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        settings = self.settings
        client = self._connection(scope, send, path_params)
        if settings.allowed_origins is not None and not origin_allowed(
            client.headers.get("origin"), settings
        ):
            logger.info(
                "gateway %s: refused origin %r", self.namespace, client.headers.get("origin")
            )
            await self._refuse(scope, send, FORBIDDEN, "origin")
            return
        limit = settings.max_connections
        if limit is not None and self._slots >= limit:
            logger.warning("gateway %s: connection cap %d reached", self.namespace, limit)
            await self._refuse(scope, send, UNAVAILABLE, "capacity")
            return
        self._slots += 1
        try:
            if self.table.handshake_guards and not await self._handshake_allowed(client):
                await refuse(scope, send, FORBIDDEN)
                return
            credential = None
            if self.keeper is not None:
                credential = find_credential(scope.get("subprotocols") or ())
            await self._accept(scope, send, client)
            session = Session(self, client)
            try:
                await session.serve(receive, credential)
            finally:
                with anyio.CancelScope(shield=True):
                    await session.teardown(send)
        finally:
            self._slots -= 1

    def release(self, client: Connection) -> None:
        """Take ``client`` out of every room and the registry (idempotent)."""
        self.server.unregister(client)

    async def emit_to(self, client: Connection, event: str, data: JSONValue) -> None:
        """``client.emit`` on a gateway with recovery: through the history."""
        await self.server.to(client.id).emit(event, data)

    async def on_disconnect(self, client: Connection) -> None:
        """Run the gateway's ``on_disconnect`` hook (bounded by ``hook_timeout``)."""
        self.server.session_streams.end(client.id)  # the session is over: so are they
        hook = self.table.on_disconnect
        if hook is None:
            return
        try:
            result = hook(client)
            if inspect.isawaitable(result):
                with anyio.move_on_after(self.settings.hook_timeout):
                    await result
        except Exception as exc:
            logger.error(
                "%s.on_disconnect failed",
                self.table.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    def _connection(self, scope: Scope, send: Send, path_params: dict[str, str]) -> Connection:
        # A transport that announces the id before accept (Socket.IO's) chose it already.
        client_id = scope.get("gatewayasgi.client_id") or new_client_id()
        client = Connection(client_id, scope, self, path_params)
        settings = self.settings
        metrics = self.metrics
        on_drop = None
        if metrics is not None:
            namespace = self.namespace

            def on_drop(count: int) -> None:
                metrics.on_drop(namespace, "overflow", count)

        client.outbox = Outbox(
            send,
            client.gave_up,
            client.peer_gone,
            max_messages=settings.outbox_max_messages,
            max_bytes=settings.outbox_max_bytes,
            overflow=self.overflow,
            budget=self._budget,
            on_drop=on_drop,
        )
        return client

    async def _handshake_allowed(self, client: Connection) -> bool:
        host = WsArgumentsHost(client, None, None, self.server)
        denial = await check_guards(
            self.table.handshake_guards, ExecutionContext(host, self.table.cls, None)
        )
        if denial is None:
            return True
        if denial.failure is not None:
            logger.error(
                "handshake guard of %s failed",
                self.table.name,
                exc_info=(type(denial.failure), denial.failure, denial.failure.__traceback__),
            )
        else:
            # The path only: no query string, no header, nor what the guard said.
            logger.info(
                "gateway %s: websocket %s refused with 403: handshake guard %s said no",
                self.namespace,
                client.scope["path"][:200],
                denial.guard,
            )
        if self.metrics is not None:
            self.metrics.on_refuse(self.namespace, "guard" if denial.failure is None else "error")
        return False

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: RefuseReason) -> None:
        if self.metrics is not None:
            self.metrics.on_refuse(self.namespace, reason)
        await refuse(scope, send, status)

    async def _accept(self, scope: Scope, send: Send, client: Connection) -> None:
        accept: Message = {"type": "websocket.accept"}
        subprotocol = choose_subprotocol(scope.get("subprotocols") or (), self.subprotocols)
        if subprotocol is not None:
            accept["subprotocol"] = subprotocol
        await send(accept)
        client.accepted()
        if self.metrics is not None:
            self.metrics.on_connect(self.namespace)
