"""One connection's life: handshake, hooks, the receive loop, dispatch, teardown.

The per-frame path is size check -> throttle -> decode -> dict lookup -> guards ->
prepared extractors -> call -> encode -> outbox. Frames of one connection are
handled in arrival order. Guards, filters and interceptors cost nothing for
handlers that have none.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from time import monotonic
from typing import Any

import anyio

from gatewayasgi._types import Message, Receive, Scope, Send
from gatewayasgi.dispatch.handler import Handler
from gatewayasgi.dispatch.table import GatewayTable
from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.filters import catches
from gatewayasgi.gateway.guards import ExecutionContext, WsArgumentsHost
from gatewayasgi.gateway.interceptors import CallHandler
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import Frame, FrameError, decode, encode
from gatewayasgi.runtime.connection import TRY_AGAIN_LATER, Connection
from gatewayasgi.runtime.handshake import admit, choose_subprotocol, refuse
from gatewayasgi.runtime.outbox import Outbox, Overflow
from gatewayasgi.runtime.server import WebSocketServer
from gatewayasgi.settings import Settings
from gatewayasgi.throttle import ABUSE, ALLOW, REFUSE_AND_TELL, Throttle

logger = logging.getLogger("gatewayasgi")

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TOO_BIG = 1009
INTERNAL_ERROR = 1011


class Session:
    """Runs the clients of one gateway, each from handshake until it goes away."""

    def __init__(self, table: GatewayTable, server: WebSocketServer, settings: Settings) -> None:
        self.table = table
        self.server = server
        self.settings = settings
        self.handlers = table.handlers
        self.overflow = Overflow(table.meta.options.get("overflow", settings.overflow))
        self.heartbeat_event = settings.heartbeat_event if settings.heartbeat_interval else None

    async def run(
        self, scope: Scope, receive: Receive, send: Send, path_params: dict[str, str]
    ) -> None:
        """Serve the ASGI websocket scope from ``websocket.connect`` to the end."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        client = self._connection(scope, send, path_params)
        status = await admit(client, self.table.handshake_guards, self.table.cls, self.settings)
        if status is not None:
            await refuse(scope, send, status)
            return
        accept: Message = {"type": "websocket.accept"}
        subprotocol = choose_subprotocol(
            scope.get("subprotocols") or (), self.table.meta.subprotocols
        )
        if subprotocol is not None:
            accept["subprotocol"] = subprotocol
        await send(accept)
        try:
            await self._serve(client, receive)
        finally:
            with anyio.CancelScope(shield=True):
                await self._teardown(client, send)

    def _connection(self, scope: Scope, send: Send, path_params: dict[str, str]) -> Connection:
        settings = self.settings
        make_outbox = partial(
            Outbox,
            send,
            max_messages=settings.outbox_max_messages,
            max_bytes=settings.outbox_max_bytes,
            overflow=self.overflow,
        )
        return Connection(uuid.uuid4().hex, scope, make_outbox, self.server, path_params)

    async def _serve(self, client: Connection, receive: Receive) -> None:
        self.server.register(client)
        client.last_seen = monotonic()
        async with anyio.create_task_group() as tasks:
            client.cancel_scope = tasks.cancel_scope
            client.outbox.attach(tasks.start_soon)
            if self.settings.heartbeat_interval:
                tasks.start_soon(self._heartbeat, client)
            if await self._on_connection(client):
                await self._receive_loop(client, receive)
            if client.close_code is not None and not client.peer_gone:
                # The app closed: let the writer flush up to and including the close
                # frame, then drain what the client still sends until its close arrives,
                # or servers with a bounded receive queue never see the closing handshake.
                with anyio.move_on_after(self.settings.close_timeout):
                    await client.outbox.wait_flushed()
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                    client.peer_gone = True
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
        return not client.closed

    async def _receive_loop(self, client: Connection, receive: Receive) -> None:
        limit = self.settings.max_message_size
        throttle: Throttle | None = None  # made on the first frame: idle clients never pay
        handle = self.handle
        outbox = client.outbox
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes")
                if raw is None or outbox.closed or client.close_code is not None:
                    continue
                # Characters are at most 4 UTF-8 bytes: only a long text needs encoding.
                size = len(raw)
                if size > limit or (
                    size * 4 > limit and type(raw) is str and _utf8_size(raw) > limit
                ):
                    await client.close(TOO_BIG, "message too big")
                    return
                now = client.last_seen = monotonic()
                if throttle is None:
                    throttle = self._throttle(now)
                verdict = throttle.frame(now)
                if verdict != ALLOW:
                    if not await self._refused(client, verdict):
                        return
                    continue
                if not await handle(client, raw, throttle):
                    return
            elif kind == "websocket.disconnect":
                client.peer_gone = True
                if client.close_code is None:
                    client.close_code = message.get("code", 1005)
                client.outbox.close()
                return

    def _throttle(self, now: float) -> Throttle:
        settings = self.settings
        return Throttle(
            settings.rate_limit,
            settings.rate_burst,
            settings.error_rate_limit,
            settings.error_burst,
            settings.abuse_threshold,
            now,
        )

    async def _refused(self, client: Connection, verdict: int, frame_id: Any = None) -> bool:
        """Apply a throttle verdict other than ALLOW; False when the connection ends."""
        if verdict == ABUSE:
            logger.warning(
                "gateway %s: client %s closed for abuse", self.server.namespace, client.id
            )
            await client.close(POLICY_VIOLATION, "rate limit")
            return False
        if verdict == REFUSE_AND_TELL:
            await client.send_text(codec.encode_error(codec.RATE_LIMITED, frame_id))
        return True

    async def _reject(
        self, client: Connection, throttle: Throttle | None, message: str, frame_id: Any
    ) -> bool:
        """Answer a bad frame with an error frame, within the error budget."""
        if throttle is not None:
            verdict = throttle.error(monotonic())
            if verdict != ALLOW:
                return await self._refused(client, verdict, frame_id)
        await client.send_text(codec.encode_error(message, frame_id))
        return True

    async def handle(
        self, client: Connection, raw: str | bytes, throttle: Throttle | None = None
    ) -> bool:
        """Dispatch one frame; False when the connection must end."""
        try:
            frame = decode(raw)
        except FrameError as exc:
            return await self._reject(client, throttle, exc.message, exc.id)
        handler = self.handlers.get(frame.event)
        if handler is None:
            if frame.event == self.heartbeat_event:
                return True
            message = codec.UNKNOWN_EVENT.format(event=frame.event[:200])
            return await self._reject(client, throttle, message, frame.id)
        context = None
        if handler.guards or handler.filters or handler.interceptors:
            host = WsArgumentsHost(client, frame.data, frame.event, self.server)
            context = ExecutionContext(host, self.table.cls, handler.func)
            if handler.guards and not await self._guards_allow(handler, client, frame, context):
                return False
        try:
            if handler.interceptors:
                result = await self._intercepted(handler, client, frame, context)
            else:
                result = handler.invoke(client, frame.data)
                if handler.is_async or inspect.isawaitable(result):
                    result = await result
            if result is None:
                return True
            # Inline of _reply: this is the request/response hot path.
            if type(result) is dict and "event" in result and "data" in result:
                text = codec.encode_message(result, frame.id)
            else:
                text = encode(frame.event, result, frame.id)
        except Exception as exc:
            return await self._failed(handler, client, frame, context, exc)
        await client.outbox.send({"type": "websocket.send", "text": text}, len(text))
        return True

    async def _reply(self, client: Connection, frame: Frame, result: Any) -> bool:
        if result is not None:
            if codec.is_reply_message(result):
                text = codec.encode_message(result, frame.id)
            else:
                text = codec.encode(frame.event, result, frame.id)
            await client.send_text(text)
        return not client.closed

    async def _intercepted(
        self, handler: Handler, client: Connection, frame: Frame, context: Any
    ) -> Any:
        async def call() -> Any:
            result = handler.invoke(client, frame.data)
            return await result if inspect.isawaitable(result) else result

        chain: Callable[[], Awaitable[Any]] = call
        for interceptor in reversed(handler.interceptors):
            chain = partial(interceptor.intercept, context, CallHandler(chain))
        return await chain()

    async def _failed(
        self,
        handler: Handler,
        client: Connection,
        frame: Frame,
        context: ExecutionContext | None,
        exc: Exception,
    ) -> bool:
        for filter_ in handler.filters:
            if isinstance(exc, catches(filter_)):
                try:
                    result = filter_.catch(exc, context)
                    if inspect.isawaitable(result):
                        result = await result
                    return await self._reply(client, frame, result)
                except Exception as raised:
                    exc = raised  # a filter re-raising hands over to the default
                break
        if isinstance(exc, WsException):
            await client.send_text(codec.encode_error(exc.message, frame.id, **exc.data))
            return True
        logger.error(
            "handler %s failed on event %r",
            handler.qualname,
            frame.event[:200],
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        await client.send_text(codec.encode_error(codec.INTERNAL_ERROR, frame.id))
        await client.close(INTERNAL_ERROR)
        return False

    async def _guards_allow(
        self, handler: Handler, client: Connection, frame: Frame, context: ExecutionContext
    ) -> bool:
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

    async def _heartbeat(self, client: Connection) -> None:
        interval = self.settings.heartbeat_interval
        assert interval is not None
        deadline = interval + self.settings.heartbeat_timeout
        frame = codec.encode(self.settings.heartbeat_event, None)
        while True:
            await anyio.sleep(interval)
            if monotonic() - client.last_seen > deadline:
                logger.info(
                    "gateway %s: client %s missed heartbeats", self.server.namespace, client.id
                )
                await client.close(GOING_AWAY, "heartbeat timeout")
                with anyio.move_on_after(self.settings.close_timeout):
                    await client.outbox.wait_flushed()
                client._end()
                return
            await client.send_text(frame)

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
        if client.peer_gone or client.outbox.flushed:
            return
        client.outbox.close()
        code = client.close_code or 1000
        message: Message = {"type": "websocket.close", "code": code}
        if code == TRY_AGAIN_LATER:
            message["reason"] = "slow consumer"
        with anyio.move_on_after(self.settings.close_timeout):
            try:
                await send(message)
            except Exception:
                logger.debug("closing the transport failed", exc_info=True)


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
