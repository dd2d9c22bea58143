"""One accepted connection's life: hooks, the receive loop, dispatch, teardown.

The per-frame path is size check -> throttle -> decode -> dict lookup -> guards ->
prepared extractors -> call -> encode -> outbox. Frames of one connection are
handled in arrival order. Guards, filters, interceptors and instrumentation cost
nothing for gateways that have none.

Every frame ends in one of three outcomes, each one function: handled (maybe with a
reply), ``_error`` (an error frame; the connection stays open) or ``_close`` (an
optional error frame, then a close code; the connection ends).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from gatewayasgi._types import Message, Receive, Send
from gatewayasgi.dispatch.handler import Handler
from gatewayasgi.exceptions import PayloadValidationError, WsException
from gatewayasgi.gateway.filters import catches
from gatewayasgi.gateway.guards import ExecutionContext, WsArgumentsHost
from gatewayasgi.gateway.interceptors import CallHandler
from gatewayasgi.instrumentation import UNKNOWN_EVENT, Outcome
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import Payload
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.codec import (
    ACK_EVENT,
    ATTACH_EVENT,
    CANCEL_EVENT,
    Answer,
    Frame,
    FrameError,
    StreamFrame,
)
from gatewayasgi.protocol.resume import END_EVENT, Credential, Invalid
from gatewayasgi.runtime.connection import Connection, ConnectionState
from gatewayasgi.runtime.delivery import FENCE, Fence
from gatewayasgi.runtime.guarding import check_guards
from gatewayasgi.runtime.keyed_streams import MAX_KEYED
from gatewayasgi.runtime.outbox import frame_cost
from gatewayasgi.runtime.streams import Streams
from gatewayasgi.runtime.throttle import ABUSE, ALLOW, REFUSE_AND_TELL, Throttle

if TYPE_CHECKING:
    from gatewayasgi.dispatch.table import GatewayTable
    from gatewayasgi.instrumentation import Instrumentation
    from gatewayasgi.protocol.base import WireProtocol
    from gatewayasgi.runtime.hooks import SessionHooks
    from gatewayasgi.runtime.server import WebSocketServer
    from gatewayasgi.settings import Settings


class SessionHost(Protocol):
    """What a session runs on: its gateway's compiled table and shared parts
    (``runtime.runner.GatewayRunner`` builds them once per gateway and protocol)."""

    namespace: str
    table: GatewayTable
    handlers: Mapping[str, Handler]
    server: WebSocketServer
    settings: Settings
    protocol: WireProtocol
    metrics: Instrumentation | None
    heartbeat_event: str | None
    keeper: SessionHooks | None

    async def on_disconnect(self, client: Connection) -> None: ...


logger = logging.getLogger("gatewayasgi")

_PROTOCOL_EVENTS = frozenset((ACK_EVENT, END_EVENT, CANCEL_EVENT, ATTACH_EVENT))
"""Events the session answers itself, counted under their own names."""


class Session:
    """Serves one accepted connection for its gateway's ``GatewayRunner``."""

    __slots__ = (
        "client",
        "fault",
        "fence",
        "forwarded",
        "runner",
        "spawn",
        "streams",
        "throttle",
    )

    def __init__(self, runner: SessionHost, client: Connection) -> None:
        self.runner = runner
        self.client = client
        self.throttle: Throttle | None = None
        """Made on the first frame: idle clients never pay for it."""
        self.streams: Streams | None = None
        """The connection's running streams (made by its first stream request)."""
        self.spawn: Callable[..., Any] | None = None
        """Starts a task in the connection's task group (set once it exists)."""
        self.fence: Fence | None = None
        """On a gateway whose history is in Redis: what replies wait for (``Fence``)."""
        self.forwarded = 0
        """``$cancel`` frames passed on to the other nodes (``_cancel_elsewhere``)."""
        self.fault: BaseException | None = None
        """What the handler being wrapped raised (instrumented sessions only): its
        ``Watch`` ends with it."""

    async def serve(self, receive: Receive, credential: Credential | Invalid | None) -> None:
        """Register the client, run ``on_connection`` and the receive loop until the end.

        On a gateway with recovery the session is opened (or resumed: ``credential``)
        first, and the ``$session`` frame and any missed frames go out before the hook runs.
        """
        client, runner = self.client, self.runner
        keeper = runner.keeper
        opening = None if keeper is None else await keeper.open(client, credential)
        runner.server.register(client)
        watcher = runner.server.rooms.watcher
        if watcher is not None:
            # Interest routing: what another worker sends this client once it is
            # connected (an emit from its ``on_connection``, say) must find its channel.
            await watcher.attached_ready(client.id)
        if runner.metrics is not None:
            runner.metrics.on_open(runner.namespace, client)
        client.last_seen = monotonic()
        client.reader = anyio.get_current_task().id  # handlers run here (runtime.calls)
        history = runner.server.delivery.history
        if history is not None and history.carries:
            # Replies wait for what their handler emitted (``Fence``); ``Delivery.emit``
            # finds it in the context, the tasks this connection starts share it.
            self.fence = Fence()
            FENCE.set(self.fence)
        async with anyio.create_task_group() as tasks:
            client.cancel_scope = tasks.cancel_scope
            client.outbox.attach(tasks.start_soon)
            self.spawn = tasks.start_soon
            if runner.settings.heartbeat_interval:
                tasks.start_soon(self._heartbeat)
            started = True
            if keeper is not None and opening is not None:
                started = await keeper.start(client, opening)
            if started and await self._on_connection():
                await self._receive_loop(receive)
            if client.lifecycle is ConnectionState.CLOSING:
                # The app closed: let the writer flush up to and including the close
                # frame, then drain what the client still sends until its close arrives,
                # or servers with a bounded receive queue never see the closing handshake.
                with anyio.move_on_after(runner.settings.close_timeout):
                    await client.outbox.wait_flushed()
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                    client.lifecycle = ConnectionState.CLOSED
            tasks.cancel_scope.cancel()

    # -- receiving ------------------------------------------------------------------

    async def _receive_loop(self, receive: Receive) -> None:
        client, runner = self.client, self.runner
        limit = runner.settings.max_message_size
        # Without instrumentation, frames skip the timing wrapper (one coroutine less).
        handle = self.handle if runner.metrics is None else self._measured
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes")
                if raw is None or client.lifecycle is not ConnectionState.OPEN:
                    continue
                # Characters are at most 4 UTF-8 bytes: only a long text needs encoding.
                size = len(raw)
                if size > limit or (
                    size * 4 > limit and type(raw) is str and _utf8_size(raw) > limit
                ):
                    await self._close(CloseCode.MESSAGE_TOO_BIG, reason="message too big")
                    return
                now = client.last_seen = monotonic()
                throttle = self.throttle
                if throttle is None:
                    throttle = self.throttle = self._new_throttle(now)
                verdict = throttle.frame(now)
                if verdict != ALLOW:
                    if not await self._throttled(verdict, None):
                        return
                    continue
                if not await handle(raw):
                    return
            elif kind == "websocket.disconnect":
                client.peer_gone(message.get("code", CloseCode.NO_STATUS))
                return

    def _new_throttle(self, now: float) -> Throttle:
        settings = self.runner.settings
        return Throttle(
            settings.rate_limit,
            settings.rate_burst,
            settings.error_rate_limit,
            settings.error_burst,
            settings.abuse_threshold,
            now,
        )

    async def handle(self, raw: str | bytes) -> bool:
        """Dispatch one frame; False when the connection must end."""
        runner = self.runner
        try:
            frame = runner.protocol.decode(raw)
        except FrameError as exc:
            return await self._error(exc.message, exc.id, counted=True)
        handler = runner.handlers.get(frame.event)
        if handler is None:
            return await self._unhandled(frame, raw)
        return await self._dispatch(handler, frame)

    async def _measured(self, raw: str | bytes) -> bool:
        """``handle`` with instrumentation: frames in (by event) and handler time."""
        runner = self.runner
        metrics = runner.metrics
        assert metrics is not None
        try:
            frame = runner.protocol.decode(raw)
        except FrameError as exc:
            metrics.on_frame_in(runner.namespace, UNKNOWN_EVENT)
            return await self._error(exc.message, exc.id, counted=True)
        handler = runner.handlers.get(frame.event)
        if handler is None:
            # Protocol events (``$ack``, ``$end``, ``$cancel``, ``$attach``) and heartbeat
            # replies are never a handler's: counted under their own names.
            event = frame.event
            if event not in _PROTOCOL_EVENTS and event != runner.heartbeat_event:
                event = UNKNOWN_EVENT
            metrics.on_frame_in(runner.namespace, event)
            return await self._unhandled(frame, raw)
        metrics.on_frame_in(runner.namespace, handler.event)
        if metrics.wraps_handlers:
            return await self._wrapped(handler, frame, raw)
        started = perf_counter()
        try:
            return await self._dispatch(handler, frame)
        finally:
            metrics.on_handler(runner.namespace, handler.event, perf_counter() - started)

    async def _wrapped(self, handler: Handler, frame: Frame, raw: str | bytes) -> bool:
        """``_measured`` for instruments that wrap handlers: what they open (a span)
        stays open while the handler runs, and ends with its outcome."""
        runner, client = self.runner, self.client
        metrics = runner.metrics
        assert metrics is not None
        carrier = runner.protocol.carrier(raw)
        watch = metrics.wrap_handler(runner.namespace, handler.event, client, carrier)
        self.fault = None
        outcome: Outcome = "closed"  # unless the dispatch returns: cancelled
        started = perf_counter()
        try:
            stays_open = await self._dispatch(handler, frame)
            outcome = ("ok" if self.fault is None else "error") if stays_open else "closed"
            return stays_open
        finally:
            metrics.on_handler(runner.namespace, handler.event, perf_counter() - started)
            if watch is not None:
                watch.end(outcome, self.fault)
            self.fault = None

    async def _unhandled(self, frame: Frame, raw: str | bytes) -> bool:
        """A frame no handler takes: the protocol's own events (``$`` ones can never be
        subscribed, so they cost the handled frames nothing), or an error frame."""
        if frame.event == ACK_EVENT:
            # A server -> client call's answer settles it; an unknown id is counted. A
            # decoded ``Answer`` carries its error member: the answer is parsed once.
            protocol = self.runner.protocol
            error = frame.error if type(frame) is Answer else protocol.answer_error(raw)
            self.client.answered(frame.id, frame.data, error)
            return True
        if frame.event == self.runner.heartbeat_event:
            return True
        if frame.event == CANCEL_EVENT:  # ends one stream; an unknown id is counted
            server = self.runner.server
            if self.client.ticket is not None and server.session_streams.cancel(
                self.client.id, frame.id
            ):
                return True
            if self.streams is not None:
                found = self.streams.cancel(frame.id, server.streams)
            else:
                found = server.streams.cancel(self.client, frame.id)  # type: ignore[arg-type]
            if not found and self.client.recovered:
                await self._cancel_elsewhere(frame.id)
            return True
        if frame.event == ATTACH_EVENT:
            return await self._attach(frame)
        if frame.event == END_EVENT:  # the client is done: its close ends the session
            self.client.ends_session = True
            return True
        message = codec.UNKNOWN_EVENT.format(event=frame.event[:200])
        return await self._error(message, frame.id, counted=True)

    async def _dispatch(self, handler: Handler, frame: Frame) -> bool:
        client, runner = self.client, self.runner
        context = None
        if handler.guards or handler.filters or handler.interceptors:
            host = WsArgumentsHost(client, frame.data, frame.event, runner.server)
            context = ExecutionContext(host, runner.table.cls, handler.func)
            if handler.guards:
                denial = await check_guards(handler.guards, context)
                if denial is not None:
                    if denial.failure is not None:
                        if runner.metrics is not None and runner.metrics.wraps_handlers:
                            self.fault = denial.failure
                        self._log_failure(f"guard of {handler.qualname}", denial.failure)
                        return await self._close(
                            CloseCode.INTERNAL_ERROR, codec.INTERNAL_ERROR, frame.id
                        )
                    return await self._close(
                        CloseCode.POLICY_VIOLATION, denial.message, frame.id, denial.details
                    )
        if handler.streams:
            return await self._stream(handler, frame, context)
        try:
            if handler.interceptors:
                result = await self._intercepted(handler, frame, context)
            else:
                result = handler.invoke(client, frame.data)
                if handler.is_async or inspect.isawaitable(result):
                    result = await result
            if result is None:
                return True
            protocol = runner.protocol
            payload = protocol.encode_reply(frame.event, result, frame.id)
            if payload is None:
                return True
        except Exception as exc:
            return await self._failed(handler, frame, context, exc)
        # Inline of _reply: this is the request/response hot path.
        fence = self.fence
        if fence is not None and fence.mark:
            await fence.wait()
        if type(payload) is str:
            message: Message = {"type": "websocket.send", "text": payload}
        else:
            message = protocol.message(payload)
        await client.outbox.send(message, frame_cost(payload))
        if runner.metrics is not None:
            runner.metrics.on_frame_out(runner.namespace, 1)
        return True

    async def _stream(
        self, handler: Handler, frame: Frame, context: ExecutionContext | None
    ) -> bool:
        """Start the stream a generator handler answers ``frame`` with (``runtime.streams``):
        guards ran already, and the payload is validated here, before the first item."""
        key = frame.key if type(frame) is StreamFrame else None
        runner, client = self.runner, self.client
        lasting = (
            key is None and client.ticket is not None and runner.protocol.emit_streams
        )  # a session stream: it outlives the socket (``runtime.session_streams``)
        streams = self.streams
        if streams is None:
            assert self.spawn is not None
            streams = self.streams = Streams(client, runner.protocol, runner.settings, self.spawn)
        if lasting:
            limit = runner.settings.max_streams
            refusal = runner.server.session_streams.refusal(client, frame.id, limit)
        else:
            refusal = streams.refusal(frame.id)
        hub = self.runner.server.streams
        if refusal is None and key is not None:
            # A keyed stream: it outlives this connection; superseding a running key
            # needs the same permission as attaching to it.
            if hub.full():
                refusal = codec.STREAM_LIMIT.format(limit=MAX_KEYED)
            elif await hub.in_use(key) and not await self._may_attach(key):
                refusal = codec.STREAM_KEY_IN_USE
        frame_id = frame.id
        if refusal is not None or frame_id is None:  # ``refusal`` says so for no id
            return await self._error(refusal or codec.STREAM_NEEDS_ID, frame_id, counted=True)
        try:
            if handler.interceptors:
                source = await self._intercepted(handler, frame, context)
            else:
                source = handler.invoke(self.client, frame.data)
        except Exception as exc:
            return await self._failed(handler, frame, context, exc)
        if key is not None:
            assert self.spawn is not None
            settings, qualname = self.runner.settings, handler.qualname
            hub.start(
                key, frame.event, source, qualname, self.client, frame_id, self.spawn, settings
            )
        elif lasting:
            assert self.spawn is not None
            runner.server.session_streams.start(
                client, frame.event, frame_id, source, handler.qualname, runner.settings, self.spawn
            )
        else:
            streams.start(frame.event, frame_id, source, handler.qualname)
        return True

    async def _attach(self, frame: Frame) -> bool:
        """``$attach``: re-attach to a keyed stream, if the gateway allows it."""
        if type(frame) is not StreamFrame or frame.id is None:
            return await self._error(codec.STREAM_NEEDS_ID, frame.id, counted=True)
        if not self.runner.protocol.streams:
            return await self._error(codec.STREAM_UNSUPPORTED, frame.id, counted=True)
        if not await self._may_attach(frame.key):
            return await self._error(codec.STREAM_ATTACH_REFUSED, frame.id, counted=True)
        assert self.spawn is not None
        self.spawn(self.runner.server.streams.attach, self.client, frame.id, frame.key, frame.after)
        return True

    async def _cancel_elsewhere(self, frame_id: object) -> None:
        """A ``$cancel`` naming no stream here, on a resumed session: its stream may run
        on the node where the session was before. At most ``max_streams`` such orders
        per connection (a stream started there is one of those), so cancels cannot be
        turned into a flood of cluster messages."""
        if type(frame_id) is not str and type(frame_id) is not int:
            return
        if self.forwarded >= self.runner.settings.max_streams:
            return
        self.forwarded += 1
        await self.runner.server.cluster.cancel_stream(self.client.id, frame_id)

    async def _may_attach(self, key: str) -> bool:
        """The gateway's ``can_attach(client, key)``: without one, nobody may."""
        decide = getattr(self.runner.table.gateway, "can_attach", None)
        if decide is None:
            return False
        try:
            allowed = decide(self.client, key)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception as exc:
            self._log_failure(f"{self.runner.table.name}.can_attach", exc)
            return False
        return allowed is True

    async def _reply(self, payload: Payload) -> None:
        client = self.client
        fence = self.fence
        if fence is not None and fence.mark:
            await fence.wait()
        await client.outbox.send(self.runner.protocol.message(payload), frame_cost(payload))
        metrics = self.runner.metrics
        if metrics is not None:
            metrics.on_frame_out(self.runner.namespace, 1)

    async def _intercepted(
        self, handler: Handler, frame: Frame, context: ExecutionContext | None
    ) -> Any:
        client = self.client

        async def call() -> Any:
            result = handler.invoke(client, frame.data)
            return await result if inspect.isawaitable(result) else result

        assert context is not None
        chain: Callable[[], Awaitable[Any]] = call
        for interceptor in reversed(handler.interceptors):
            chain = partial(interceptor.intercept, context, CallHandler(chain))
        return await chain()

    async def _failed(
        self, handler: Handler, frame: Frame, context: ExecutionContext | None, exc: Exception
    ) -> bool:
        """A handler (or interceptor) raised: filters first, then the default treatment."""
        metrics = self.runner.metrics
        if metrics is not None and metrics.wraps_handlers:
            self.fault = exc  # the wrapping instrument's watch ends with it (_wrapped)
        for filter_ in handler.filters:
            if isinstance(exc, catches(filter_)):
                try:
                    assert context is not None
                    result = filter_.catch(exc, context)
                    if inspect.isawaitable(result):
                        result = await result
                    if result is not None:
                        payload = self.runner.protocol.encode_reply(frame.event, result, frame.id)
                        if payload is not None:
                            await self._reply(payload)
                    return not self.client.closed
                except Exception as raised:
                    exc = raised  # a filter re-raising hands over to the default
                break
        if isinstance(exc, WsException):
            # Invalid payloads are the client's doing: they spend from its error budget.
            counted = isinstance(exc, PayloadValidationError)
            return await self._error(exc.message, frame.id, exc.data, counted=counted)
        self._log_failure(f"handler {handler.qualname} on event {frame.event[:200]!r}", exc)
        return await self._close(CloseCode.INTERNAL_ERROR, codec.INTERNAL_ERROR, frame.id)

    # -- outcomes -------------------------------------------------------------------

    async def _error(
        self,
        message: str,
        frame_id: str | int | None,
        details: dict[str, Any] | None = None,
        *,
        counted: bool = False,
    ) -> bool:
        """Answer with an error frame and stay open; False when the connection ends.

        ``counted`` errors (bad frames, invalid payloads) spend from the error budget,
        so a client cannot make the gateway amplify garbage into replies.
        """
        if counted and self.throttle is not None:
            verdict = self.throttle.error(monotonic())
            if verdict != ALLOW:
                return await self._throttled(verdict, frame_id)
        await self._reply(self.runner.protocol.encode_error(message, frame_id, details))
        return True

    async def _throttled(self, verdict: int, frame_id: str | int | None) -> bool:
        """A rate limit refused a frame or an error reply; False when the connection ends."""
        runner = self.runner
        if runner.metrics is not None:
            runner.metrics.on_drop(runner.namespace, "rate_limit", 1)
        if verdict == ABUSE:
            logger.warning(
                "gateway %s: client %s closed for abuse", runner.namespace, self.client.id
            )
            return await self._close(CloseCode.POLICY_VIOLATION, reason="rate limit")
        if verdict == REFUSE_AND_TELL:
            await self._reply(runner.protocol.encode_error(codec.RATE_LIMITED, frame_id))
        return True

    async def _close(
        self,
        code: CloseCode,
        message: str | None = None,
        frame_id: str | int | None = None,
        details: dict[str, Any] | None = None,
        *,
        reason: str | None = None,
    ) -> bool:
        """Send an error frame (when ``message`` is given), then close with ``code``."""
        if message is not None:
            await self._reply(self.runner.protocol.encode_error(message, frame_id, details))
        await self.client.close(code, reason)
        return False

    def _log_failure(self, what: str, exc: Exception) -> None:
        logger.error("%s failed", what, exc_info=(type(exc), exc, exc.__traceback__))

    # -- hooks and heartbeats -------------------------------------------------------

    async def _on_connection(self) -> bool:
        hook = self.runner.table.on_connection
        if hook is None:
            return True
        try:
            result = hook(self.client)
            if inspect.isawaitable(result):
                await result
        except WsException as exc:
            return await self._close(CloseCode.POLICY_VIOLATION, exc.message, None, exc.data)
        except Exception as exc:
            self._log_failure(f"{self.runner.table.name}.on_connection", exc)
            return await self._close(CloseCode.INTERNAL_ERROR, codec.INTERNAL_ERROR)
        return not self.client.closed

    async def _heartbeat(self) -> None:
        client, settings = self.client, self.runner.settings
        interval = settings.heartbeat_interval
        assert interval is not None
        deadline = interval + settings.heartbeat_timeout
        frame = self.runner.protocol.encode_emit(settings.heartbeat_event, None)
        while True:
            await anyio.sleep(interval)
            if monotonic() - client.last_seen > deadline:
                logger.info(
                    "gateway %s: client %s missed heartbeats", self.runner.namespace, client.id
                )
                # A lost peer, not the app's decision: its session may resume.
                await client.close(CloseCode.GOING_AWAY, "heartbeat timeout", ends_session=False)
                with anyio.move_on_after(settings.close_timeout):
                    await client.outbox.wait_flushed()
                client.end()
                return
            await client.send_payload(frame)

    # -- the end --------------------------------------------------------------------

    async def teardown(self, send: Send) -> None:
        """Run ``on_disconnect``, release the client's rooms, close the transport."""
        client, runner = self.client, self.runner
        keeper = runner.keeper
        try:
            if keeper is None:
                await runner.on_disconnect(client)
            elif client.keeps_session:
                await keeper.detach(client)  # on_disconnect runs when its window passes
            elif not client.superseded:
                await keeper.end(client)
                await runner.on_disconnect(client)
        except Exception as exc:
            self._log_failure(f"ending the session of {client.id}", exc)
        finally:
            if keeper is not None:
                keeper.release(client)
            runner.server.unregister(client)
        await self._close_transport(send)
        metrics = runner.metrics
        if metrics is not None:
            code = client.close_code or CloseCode.NORMAL
            metrics.on_close(runner.namespace, code)
            metrics.on_end(runner.namespace, client, code)

    async def _close_transport(self, send: Send) -> None:
        client = self.client
        # Nothing to do when the peer is gone or the close frame already went out.
        if client.lifecycle is ConnectionState.CLOSED or client.outbox.flushed:
            return
        client.outbox.close()
        if client.close_code is None:
            client.close_code = CloseCode.NORMAL
        message: Message = {"type": "websocket.close", "code": int(client.close_code)}
        if client.close_reason:
            message["reason"] = client.close_reason
        with anyio.move_on_after(self.runner.settings.close_timeout):
            try:
                await send(message)
            except Exception:
                logger.debug("closing the transport failed", exc_info=True)
        client.lifecycle = ConnectionState.CLOSED


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
