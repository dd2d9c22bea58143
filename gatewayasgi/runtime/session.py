"""One connection's life: accept, hooks, the receive loop, dispatch, teardown.

The per-frame path is decode -> dict lookup -> guards -> prepared extractors -> call
-> encode -> outbox. Frames of one connection are handled in arrival order.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from typing import Any

import anyio

from gatewayasgi._types import Receive, Scope, Send
from gatewayasgi.dispatch.handler import Handler, PayloadError
from gatewayasgi.dispatch.table import GatewayTable
from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.guards import ExecutionContext, WsArgumentsHost
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import FrameError
from gatewayasgi.runtime.connection import Connection
from gatewayasgi.runtime.outbox import Outbox, Overflow, guarded_send
from gatewayasgi.runtime.server import WebSocketServer
from gatewayasgi.settings import Settings

logger = logging.getLogger("gatewayasgi")

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013


class Session:
    """Runs one accepted client of one gateway until it goes away."""

    def __init__(self, table: GatewayTable, server: WebSocketServer, settings: Settings) -> None:
        self.table = table
        self.server = server
        self.settings = settings
        self.handlers = table.handlers

    async def run(
        self, scope: Scope, receive: Receive, send: Send, path_params: dict[str, str]
    ) -> None:
        """Serve the ASGI websocket scope from ``websocket.connect`` to the end."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        with anyio.CancelScope() as life:
            client = self._connect(scope, send, path_params, life)
            try:
                await self._serve(client, receive)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._teardown(client, send)

    def _connect(
        self, scope: Scope, send: Send, path_params: dict[str, str], life: anyio.CancelScope
    ) -> Connection:
        settings = self.settings
        overflow = Overflow(self.table.meta.options.get("overflow", settings.overflow))
        client_box: list[Connection] = []

        def on_overflow() -> None:
            client = client_box[0]
            logger.warning(
                "gateway %s: client %s too slow (outbox full), closing with 1013",
                self.server.namespace,
                client.id,
            )
            client.close_code = TRY_AGAIN_LATER
            life.cancel()

        def on_gone() -> None:
            if client_box:
                client_box[0].peer_gone = True
            life.cancel()

        outbox = Outbox(
            guarded_send(send, on_gone),
            max_messages=settings.outbox_max_messages,
            max_bytes=settings.outbox_max_bytes,
            overflow=overflow,
            on_overflow_close=on_overflow,
        )
        client = Connection(uuid.uuid4().hex, scope, outbox, self.server, path_params)
        client_box.append(client)
        return client

    async def _serve(self, client: Connection, receive: Receive) -> None:
        self.server.register(client)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.outbox.run)
            if await self._on_connection(client):
                await self._receive_loop(client, receive)
            if client.close_code is not None and not client.peer_gone:
                # The app closed: let the writer flush up to and including the close frame.
                with anyio.move_on_after(self.settings.close_timeout):
                    await client.outbox.flushed.wait()
            tasks.cancel_scope.cancel()

    async def _on_connection(self, client: Connection) -> bool:
        hook = self.table.on_connection
        if hook is None:
            return True
        try:
            result = hook(client)
            if inspect.isawaitable(result):
                await result
        except WsException as exc:
            await client.send_text(codec.encode_error(exc.message, None, **exc.data))
            await client.close(POLICY_VIOLATION)
            return False
        except Exception:
            logger.exception("%s.on_connection failed", self.table.name)
            await client.send_text(codec.encode_error(codec.INTERNAL_ERROR))
            await client.close(INTERNAL_ERROR)
            return False
        return True

    async def _receive_loop(self, client: Connection, receive: Receive) -> None:
        handle = self.handle
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes")
                if raw is None or client.closed:
                    continue
                if not await handle(client, raw):
                    return
            elif kind == "websocket.disconnect":
                client.peer_gone = True
                if client.close_code is None:
                    client.close_code = message.get("code", 1005)
                client.outbox.close()
                return

    async def handle(self, client: Connection, raw: str | bytes) -> bool:
        """Dispatch one frame; False when the connection must end."""
        try:
            frame = codec.decode(raw)
        except FrameError as exc:
            await client.send_text(codec.encode_error(exc.message, exc.id))
            return True
        handler = self.handlers.get(frame.event)
        if handler is None:
            message = codec.UNKNOWN_EVENT.format(event=frame.event[:200])
            await client.send_text(codec.encode_error(message, frame.id))
            return True
        if handler.guards and not await self._guards_allow(handler, client, frame):
            return False
        try:
            result = handler.func(**handler.arguments(client, frame.data))
            if handler.is_async or inspect.isawaitable(result):
                result = await result
            if result is None:
                return True
            if codec.is_reply_message(result):
                text = codec.encode_message(result, frame.id)
            else:
                text = codec.encode(frame.event, result, frame.id)
        except PayloadError as exc:
            message = codec.INVALID_PAYLOAD.format(event=frame.event)
            await client.send_text(codec.encode_error(message, frame.id, errors=exc.errors))
            return True
        except WsException as exc:
            await client.send_text(codec.encode_error(exc.message, frame.id, **exc.data))
            return True
        except Exception:
            logger.exception("handler %s failed on event %r", handler.qualname, frame.event)
            await client.send_text(codec.encode_error(codec.INTERNAL_ERROR, frame.id))
            await client.close(INTERNAL_ERROR)
            return False
        await client.send_text(text)
        return True

    async def _guards_allow(self, handler: Handler, client: Connection, frame: Any) -> bool:
        host = WsArgumentsHost(client, frame.data, frame.event, self.server)
        context = ExecutionContext(host, self.table.cls, handler.func)
        try:
            for guard in handler.guards:
                allowed = guard.can_activate(context)
                if inspect.isawaitable(allowed):
                    allowed = await allowed
                if not allowed:
                    await self._deny(client, codec.ACCESS_DENIED, frame.id)
                    return False
        except WsException as exc:
            await self._deny(client, exc.message, frame.id, **exc.data)
            return False
        except Exception:
            logger.exception("guard of %s failed", handler.qualname)
            await client.send_text(codec.encode_error(codec.INTERNAL_ERROR, frame.id))
            await client.close(INTERNAL_ERROR)
            return False
        return True

    async def _deny(self, client: Connection, message: str, frame_id: Any, **data: Any) -> None:
        await client.send_text(codec.encode_error(message, frame_id, **data))
        await client.close(POLICY_VIOLATION)

    async def _teardown(self, client: Connection, send: Send) -> None:
        server, table = self.server, self.table
        try:
            if table.on_disconnect is not None:
                try:
                    result = table.on_disconnect(client)
                    if inspect.isawaitable(result):
                        with anyio.move_on_after(self.settings.hook_timeout):
                            await result
                except Exception:
                    logger.exception("%s.on_disconnect failed", table.name)
        finally:
            server.unregister(client)
        await self._close_transport(client, send)

    async def _close_transport(self, client: Connection, send: Send) -> None:
        # Nothing to do when the peer is gone or the close frame already went out.
        if client.peer_gone or client.outbox.flushed.is_set():
            return
        client.outbox.close()
        code = client.close_code or 1000
        message = {"type": "websocket.close", "code": code}
        if code == TRY_AGAIN_LATER:
            message["reason"] = "slow consumer"
        with anyio.move_on_after(self.settings.close_timeout):
            try:
                await send(message)
            except Exception:
                logger.debug("closing the transport failed", exc_info=True)
