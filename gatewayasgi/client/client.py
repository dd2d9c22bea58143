"""``GatewayClient``: one logical connection to a gateway over successive WebSockets.

States: ``idle`` -> ``connecting`` -> ``connected`` -> (``reconnecting`` -> ``connected``)*
-> ``closed``. One supervisor task per client reads the current connection, and after a
non-terminal drop reconnects with capped exponential backoff and full jitter. Every other
task (async handlers, answers to server calls, lifecycle callbacks) is tracked and, but for
the one calling ``close()``, cancelled by ``close()``: nothing outlives the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WebSocketClosed

from gatewayasgi.client.backoff import backoff_delay
from gatewayasgi.client.calls import Handler, PendingCalls
from gatewayasgi.client.codecs import Encoded, ProtocolName, codec_for
from gatewayasgi.client.connector import Connector
from gatewayasgi.client.dispatch import Dispatcher
from gatewayasgi.client.errors import (
    CallTimeout,
    ConnectError,
    ConnectionClosed,
    GatewayClientError,
    NotConnected,
)
from gatewayasgi.client.frames import (
    ATTACH_EVENT,
    CANCEL_EVENT,
    GAP_EVENT,
    SESSION_EVENT,
    Message,
)
from gatewayasgi.client.handshake import HeadersSource, is_terminal_close
from gatewayasgi.client.inbox import Inbox
from gatewayasgi.client.recovery import Session, SessionRecovery
from gatewayasgi.client.streams import Stream

logger = logging.getLogger("gatewayasgi.client")

State = Literal["idle", "connecting", "connected", "reconnecting", "closed"]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")
NORMAL_CLOSURE = 1000
ABNORMAL_CLOSURE = 1006
INTERNAL_ERROR = 1011


@dataclass(eq=False)
class _Link:
    """One open WebSocket; ``detached`` is set once the client stopped using it."""

    ws: ClientConnection
    generation: int
    detached: asyncio.Event = field(default_factory=asyncio.Event)


class GatewayClient:
    """An asyncio client for one gatewayasgi gateway (``ws://host/namespace``).

    ``async with GatewayClient(url) as client:`` connects (one attempt; see ``connect``)
    and closes with code 1000 on exit. Options (all keyword-only):

    - ``headers``: handshake headers, or a sync/async function returning them, called
      before every attempt (a reconnection sends a fresh token).
    - ``subprotocols``: offered after the protocol's own.
    - ``recover``: resume the session on reconnect (the gateway needs
      ``recovery=Recovery(...)``; each connection then waits for its ``$session`` frame).
    - ``reconnect``, ``reconnect_delay``, ``reconnect_delay_max``,
      ``max_reconnect_attempts``: after a drop that is not terminal (1008, 4000-4999), try
      again after ``uniform(0, min(max, delay * 2**n))`` seconds, ``n`` failures in a row.
    - ``connect_timeout``, ``call_timeout``, ``send_timeout``: default bounds, seconds.
    - ``receive_buffer``: events kept for ``receive()``; when full the oldest is dropped
      and counted in ``dropped``.
    - ``max_handler_tasks``: async handlers running at once; past it the reader waits.
    - ``heartbeat_event``: the gateway's ``heartbeat_event``, answered at once; ``None``
      turns the answer off.
    - ``protocol``: ``"json"`` (text frames) or ``"msgpack"`` (the same frames in
      MessagePack, ``bytes`` as ``bin``; the server registers ``MessagePack()``).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: HeadersSource = None,
        subprotocols: Sequence[str] = (),
        recover: bool = False,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 30.0,
        max_reconnect_attempts: int | None = None,
        connect_timeout: float = 10.0,
        call_timeout: float = 10.0,
        send_timeout: float = 10.0,
        receive_buffer: int = 1024,
        max_handler_tasks: int = 64,
        max_message_size: int | None = 2**20,
        heartbeat_event: str | None = "heartbeat",
        protocol: ProtocolName = "json",
    ) -> None:
        self.url = url
        self._codec = codec = codec_for(protocol)
        self._reconnect = reconnect
        self._reconnect_delay = reconnect_delay
        self._reconnect_delay_max = reconnect_delay_max
        self._max_reconnect_attempts = max_reconnect_attempts
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._send_timeout = send_timeout
        self._heartbeat_event = heartbeat_event
        self._recovery = SessionRecovery(recover)
        self._connector = Connector(
            url,
            headers,
            tuple(subprotocols),
            self._recovery,
            connect_timeout,
            max_message_size,
            codec,
        )
        self._calls = PendingCalls()
        self._streams: dict[int, Stream] = {}
        self._inbox = Inbox(receive_buffer)
        self._dispatch = Dispatcher(max_handler_tasks, codec)
        self.gaps = 0
        """``$gap`` frames received: times events for this client may have been lost."""
        self._state: State = "idle"
        self._link: _Link | None = None
        self._generation = 0
        # Replaced at every state change; waiters hold the one they saw and recheck on wake.
        self._changed = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._finished: GatewayClientError | None = None
        """Why the client is closed; raised by ``emit``, ``call`` and an empty ``receive``."""
        self.last_close: ConnectionClosed | None = None
        """How the last open connection closed (code, reason, terminal), ``None`` before."""

    # -- what the client knows ---------------------------------------------------------

    @property
    def state(self) -> State:
        """``idle``, ``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self._state

    @property
    def connected(self) -> bool:
        return self._state == "connected"

    @property
    def closed(self) -> bool:
        """Closed for good (``close()``, a terminal close, or reconnection given up)."""
        return self._state == "closed"

    @property
    def id(self) -> str | None:
        """The client id the server gave (from ``$session``); ``None`` without recovery."""
        return self._recovery.client_id

    @property
    def recovered(self) -> bool:
        """Whether the current connection resumed the previous session, missed frames
        replayed. False on a new session, and while not connected."""
        return self.connected and self._recovery.recovered

    @property
    def session(self) -> Session | None:
        """The latest ``$session`` frame."""
        return self._recovery.session

    @property
    def session_reason(self) -> str | None:
        """Why the latest resume failed or frames may have been lost (``"expired"``,
        ``"trimmed"``, ``"epoch"``, ``"invalid"``, ``"backplane"``), ``None`` when nothing was."""
        session = self._recovery.session
        return None if session is None else session.reason

    @property
    def close_error(self) -> GatewayClientError | None:
        """Why the client is closed for good (``ConnectionClosed`` or ``ConnectError``)."""
        return self._finished

    @property
    def dropped(self) -> int:
        """Events pushed out of the full ``receive()`` buffer unread."""
        return self._inbox.dropped

    # -- handlers ------------------------------------------------------------------------

    @overload
    def on(self, event: str) -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, handler: H) -> H: ...
    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Call ``handler(data)`` (sync or async) for each server event ``event``; usable as
        ``@client.on("event")``. One handler per event (a new one replaces the old). When
        the server calls (its frame carries ``ack``), the handler's (awaited) return value
        is the answer, its exception's message the error answer. Events with a handler do
        not reach ``receive()``."""
        if event.startswith("$"):
            raise ValueError(f"{event!r}: events starting with '$' belong to the protocol")

        def register(fn: H) -> H:
            self._dispatch.handlers[event] = fn
            return fn

        return register if handler is None else register(handler)

    def off(self, event: str) -> None:
        """Remove the handler of ``event``: its events go to ``receive()`` again."""
        self._dispatch.handlers.pop(event, None)

    def on_connect(self, callback: Callable[[], Any]) -> Callable[[], Any]:
        """``callback()`` after every connection (and its ``$session``), resumed or not."""
        self._dispatch.lifecycle["connect"].append(callback)
        return callback

    def on_disconnect(
        self, callback: Callable[[ConnectionClosed], Any]
    ) -> Callable[[ConnectionClosed], Any]:
        """``callback(closed)`` when an open connection closes (``closed.terminal``: for good)."""
        self._dispatch.lifecycle["disconnect"].append(callback)
        return callback

    def on_gap(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        """``callback(reason)`` when the server says events for this client may have been
        lost on the way between its workers (``$gap``, reason ``"backplane"``): a broker
        connection was cut. Sent to gateways without recovery; refetch what the events
        would have told (recovery replays them instead)."""
        self._dispatch.lifecycle["gap"].append(callback)
        return callback

    def on_session(self, callback: Callable[[Session], Any]) -> Callable[[Session], Any]:
        """``callback(session)`` for every ``$session`` frame: a new or resumed session, or
        on an open connection a ``reason`` to resync."""
        self._dispatch.lifecycle["session"].append(callback)
        return callback

    # -- connecting and closing ----------------------------------------------------------

    async def __aenter__(self) -> GatewayClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self, *, retry: bool = False) -> None:
        """Connect from ``idle`` or ``closed``. One attempt, raising ``ConnectError`` when it
        fails; with ``retry=True`` failed attempts are retried with backoff (a terminal
        refusal still raises). Returns at once when connected; while reconnecting it waits
        (``connect_timeout``)."""
        if self._state == "connected":
            return
        if self._state == "reconnecting":
            await self.wait_connected(self._connect_timeout)
            return
        if self._state == "connecting":
            raise RuntimeError("connect() is already in progress")
        self._finished = None
        self._set_state("connecting")
        try:
            link = await (self._retry(first_delay=False) if retry else self._open())
        except BaseException as exc:
            if self._state != "closed":  # close() did not run meanwhile
                failure = exc if isinstance(exc, GatewayClientError) else None
                self._finish(failure or ConnectError(f"connect() failed: {exc!r}"))
            raise
        if link is None:  # retry gave up or hit a terminal refusal
            assert self._finished is not None
            raise self._finished
        self._supervisor = asyncio.get_running_loop().create_task(self._run(link))

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Close for good: no reconnection, pending calls and waiters raise
        ``ConnectionClosed(code, reason, terminal=True)``. Code 1000 ends the session on the
        server too; any other code lets ``connect()`` resume it later (``recover=True``)."""
        if self._state == "closed":
            return
        link, supervisor = self._link, self._supervisor
        self._finish(ConnectionClosed(code, reason, terminal=True))
        if code == NORMAL_CLOSURE:
            if link is not None and self._recovery.session is not None:
                # Ends the session on every server (hypercorn reports our 1000 as 1006).
                with contextlib.suppress(Exception):
                    end = self._codec.end_frame
                    await asyncio.wait_for(link.ws.send(end), self._send_timeout)
            self._recovery.forget()
        if link is not None:
            await link.ws.close(code, reason)
        current = asyncio.current_task()
        if supervisor is not None and supervisor is not current:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await self._dispatch.cancel_all()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until connected; ``TimeoutError`` after ``timeout``, the close reason if closed."""
        await _bounded(self._wait_for(lambda: self.connected), timeout, "no connection")

    async def wait_closed(self, timeout: float | None = None) -> GatewayClientError:
        """Until the client is closed for good; returns why (``close_error``)."""
        await _bounded(self._wait_for(lambda: self._state == "closed", raising=False), timeout)
        assert self._finished is not None
        return self._finished

    # -- sending and receiving -----------------------------------------------------------

    async def emit(self, event: str, data: Any = None, *, timeout: float | None = None) -> None:
        """Send ``{"event", "data"}``. While reconnecting it waits for the next connection,
        at most ``timeout`` (``send_timeout``) seconds, then raises ``NotConnected``; a
        frame never goes out twice. Once closed it raises the close reason."""
        text = self._codec.encode_event(event, data)
        limit = self._send_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._send(text), limit)
        except asyncio.TimeoutError:
            raise NotConnected(event, limit) from None

    async def call(self, event: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Send ``{"event", "data", "id"}`` and return the ``data`` of the reply.

        Raises ``CallError`` for an error frame (``message``, ``details``), ``CallTimeout``
        after ``timeout`` (``call_timeout``) seconds, waiting for a connection included, and
        ``ConnectionClosed`` when the connection the frame went out on closes first.
        """
        limit = self._call_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._call(event, data), limit)
        except asyncio.TimeoutError:
            raise CallTimeout(event, limit) from None

    def stream(
        self,
        event: str,
        data: Any = None,
        *,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Stream:
        """Ask for a stream (a handler that ``yield``s) and read its items in order::

            async for token in client.stream("prompt", {"text": "hi"}):
                print(token)

        The request goes out when the loop starts. ``timeout`` bounds the wait for each
        item (``StreamTimeout``); leaving the loop early cancels the stream on the server
        (``$cancel``). An error frame raises ``CallError``, and a connection that closes
        mid-stream raises ``ConnectionClosed`` (with ``recover=True`` an unkeyed stream goes
        on across a reconnect that resumes the session: its missed items are replayed).
        The end frame's data is ``stream.result``.
        A ``key`` makes it a keyed stream: it outlives the connection, and
        ``attach_stream(key)`` re-attaches to it (from another connection too).
        """
        request: dict[str, Any] = {"event": event, "data": data}
        if key is not None:
            request["key"] = key
        return self._open_stream(event, request, timeout)

    def attach_stream(self, key: str, *, after: int = 0, timeout: float | None = None) -> Stream:
        """Re-attach to the keyed stream ``key`` (a page reload, another worker's client):
        its items after sequence ``after`` (0: from the start), then the live ones and
        its end. A stream that is unknown ends at once with ``stream.missing`` true; the
        gateway's ``can_attach(client, key)`` decides who may."""
        request: dict[str, Any] = {"event": ATTACH_EVENT, "key": key, "after": after}
        return self._open_stream(ATTACH_EVENT, request, timeout)

    def _open_stream(self, event: str, request: dict[str, Any], timeout: float | None) -> Stream:
        stream_id = self._calls.new_id()
        streams = self._streams
        stream: Stream

        async def start() -> None:
            streams[stream_id] = stream
            await self._send(self._codec.encode_frame({**request, "id": stream_id}))

        async def cancel() -> None:
            await self._send(self._codec.encode_event(CANCEL_EVENT, None, stream_id))

        def forget() -> None:
            streams.pop(stream_id, None)

        stream = Stream(event, stream_id, timeout, start, cancel, forget)
        # With recovery, an unkeyed stream belongs to the session: it goes on across a
        # reconnect that resumes it (its items are replayed), keyed ones re-attach by key.
        stream.lasting = self._recovery.enabled and "key" not in request
        return stream

    async def receive(self, timeout: float | None = None) -> Message:
        """The next server event no handler took, as ``Message(event, data)``; buffered
        events outlive reconnects. ``TimeoutError`` after ``timeout`` seconds; once closed
        and empty, the close reason."""
        return await _bounded(self._receive(), timeout, "no server event")

    async def _receive(self) -> Message:
        while True:
            message = self._inbox.take()
            if message is not None:
                return message
            self._check_open()
            await self._inbox.wait()

    async def _call(self, event: str, data: Any) -> Any:
        call_id, reply = self._calls.open(event)
        try:
            await self._send(self._codec.encode_event(event, data, call_id), call_id)
            return await reply
        finally:
            self._calls.close(call_id)

    async def _send(self, text: Encoded, call_id: int | None = None) -> None:
        while True:
            link = await self._current_link()
            if call_id is not None:
                self._calls.sent(call_id, link.generation)
            try:
                await link.ws.send(text)
                return
            except WebSocketClosed:
                # Refused before anything was written: wait for the next connection.
                await link.detached.wait()

    async def _current_link(self) -> _Link:
        while True:
            self._check_open()
            if self._link is not None:
                return self._link
            await self._changed.wait()

    def _check_open(self) -> None:
        if self._finished is not None:
            raise self._finished.with_traceback(None)
        if self._state == "idle":
            raise RuntimeError("not connected: use `async with GatewayClient(...)` or connect()")

    async def _wait_for(self, condition: Callable[[], bool], *, raising: bool = True) -> None:
        while not condition():
            if raising:
                self._check_open()
            await self._changed.wait()

    # -- the supervisor ------------------------------------------------------------------

    async def _run(self, link: _Link) -> None:
        try:
            await self._supervise(link)
        except Exception as exc:  # a bug here must not leave a client that looks connected
            logger.exception("gatewayasgi client %s failed", self.url)
            current = self._link
            self._finish(ConnectError(f"client failed: {exc!r}", terminal=True))
            if current is not None:
                await current.ws.close(INTERNAL_ERROR)

    async def _supervise(self, link: _Link) -> None:
        current: _Link | None = link
        while current is not None:
            closed = await self._read(current)
            if self._state == "closed":  # close() ran: it owns the ending
                return
            self._detach(current, closed)
            if closed.terminal:
                self._finish(closed)
                if is_terminal_close(closed.code):  # the app ended the session
                    self._recovery.forget()
                return
            current = await self._retry(first_delay=True)

    async def _read(self, link: _Link) -> ConnectionClosed:
        ws = link.ws
        try:
            while True:
                await self._handle(link, await ws.recv())
        except WebSocketClosed as exc:
            code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (ABNORMAL_CLOSURE, "")
            terminal = not self._reconnect or is_terminal_close(code)
            return ConnectionClosed(code, reason, terminal=terminal)

    async def _handle(self, link: _Link, raw: str | bytes) -> None:
        frame = self._codec.decode(raw)
        if frame is None:
            logger.warning(
                "ignored a server message that is not a %s map with an event", self._codec.name
            )
            return
        if frame.event == SESSION_EVENT:
            self._take_session(frame.data)
            return
        if frame.event == GAP_EVENT:
            self._take_gap(frame.data)
            return
        self._recovery.observe(frame)
        if frame.ack is not None:
            await self._dispatch.answer(link.ws, frame, frame.ack, lambda: self._link is link)
        elif frame.id is not None:
            stream = self._streams.get(frame.id) if isinstance(frame.id, int) else None
            if stream is not None:
                stream.feed(frame)
            elif not self._calls.settle(frame):
                logger.debug("dropped a reply to %r that no call waits for", frame.event)
        elif frame.event == self._heartbeat_event:
            await self._dispatch.heartbeat(link.ws, frame)
        elif not await self._dispatch.deliver(frame):
            self._inbox.put(Message(frame.event, frame.data))

    def _take_session(self, data: Any) -> None:
        session = self._recovery.session_frame(data)
        if session is None:
            logger.warning("ignored a malformed $session frame")
            return
        if session.reason is not None:
            logger.info("session %s: not recovered (%s)", session.id, session.reason)
        if not session.recovered:
            # Streams kept across the drop belonged to the session that is gone.
            closed = self.last_close or ConnectionClosed(1006, "", terminal=False)
            for stream in list(self._streams.values()):
                if stream.lasting:
                    stream.fail(closed)
        self._dispatch.fire("session", session)

    def _take_gap(self, data: Any) -> None:
        reason = data.get("reason") if isinstance(data, dict) else None
        reason = reason if isinstance(reason, str) else "unknown"
        self.gaps += 1
        logger.info("the server says frames for this client may have been lost (%s)", reason)
        self._dispatch.fire("gap", reason)

    async def _retry(self, *, first_delay: bool) -> _Link | None:
        """Attempts until one connects (its link) or the client is closed (``None``): after
        a drop (``first_delay``) each waits out its backoff; for ``connect(retry=True)``
        the first goes at once. ``max_reconnect_attempts`` bounds the delayed ones."""
        retries, limit = 0, self._max_reconnect_attempts
        delayed = first_delay
        while self._state != "closed":
            if delayed:
                if limit is not None and retries >= limit:
                    self._finish(ConnectError(f"gave up after {retries} reconnection attempts"))
                    return None
                if first_delay:
                    self._set_state("reconnecting")
                base, cap = self._reconnect_delay, self._reconnect_delay_max
                await asyncio.sleep(backoff_delay(retries, base, cap))
                retries += 1
                if self.closed:  # close() ran during the delay
                    return None
            delayed = True
            try:
                return await self._open()
            except ConnectError as exc:
                if exc.terminal or (first_delay and not self._reconnect):
                    self._finish(exc)
                    return None
                logger.debug("connection attempt to %s failed: %s", self.url, exc)
        return None

    async def _open(self) -> _Link:
        """One attempt: the handshake and, with recovery, the ``$session`` frame."""
        self._recovery.connection_opened()
        ws, session = await self._connector.attempt()
        if self.closed:  # close() ran while this attempt was under way
            await ws.close()
            assert self._finished is not None
            raise self._finished
        if session is not None:
            self._take_session(session)
        self._generation += 1
        link = _Link(ws, self._generation)
        self._link = link
        self._set_state("connected")
        self._dispatch.fire("connect")
        return link

    def _detach(self, link: _Link, closed: ConnectionClosed) -> None:
        if self._link is link:
            self._link = None
        link.detached.set()
        self.last_close = closed
        self._calls.reject_sent(link.generation, closed)
        resuming = (
            not closed.terminal and self._recovery.enabled and self._recovery.session is not None
        )
        for stream in list(self._streams.values()):
            if resuming and stream.lasting:
                continue  # the session keeps it: its items come back with the session
            stream.fail(closed)  # the server closed them with the connection
        if self._state == "connected":
            self._set_state("reconnecting")
        self._dispatch.fire("disconnect", closed)

    def _finish(self, error: GatewayClientError) -> None:
        """Enter ``closed``: every waiter wakes and raises ``error``."""
        if self._link is not None:
            self._link.detached.set()
            self._link = None
        self._finished = error
        self._calls.reject_all(error)
        for stream in list(self._streams.values()):
            stream.fail(error)
        self._set_state("closed")
        self._inbox.wake()

    def _set_state(self, state: State) -> None:
        self._state = state
        self._changed.set()
        self._changed = asyncio.Event()


async def _bounded(awaitable: Awaitable[T], timeout: float | None, what: str = "nothing") -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{what} within {timeout:g} s") from None
