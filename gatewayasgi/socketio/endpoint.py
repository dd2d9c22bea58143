"""``Endpoint``: the ASGI side of Engine.IO at ``SocketIO.path`` (HTTP and WebSocket).

- ``GET ?EIO=4&transport=polling``: opens a long-polling connection (the open packet).
- ``GET``/``POST`` with ``sid``: takes / gives that connection's packets.
- WebSocket ``?EIO=4&transport=websocket``: opens a connection on it; with ``sid``, the
  upgrade of a polling connection (``2probe`` / ``3probe`` / ``5``).

Each namespace a client joins is served by a Socket.IO runner of its gateway (the
gateway's own table and server, the Socket.IO wire protocol, no gateway heartbeat:
Engine.IO pings). Polling connections live in the endpoint's own task group (they
outlast their requests), which the lifespan starts (``serve``); a WebSocket connection
lives in its own ASGI call. Whatever a client makes fail ends its connection only: each
connection's run catches and logs, so neither the endpoint's group nor the lifespan's
(the backplane, the history readers) ever sees it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from anyio.abc import TaskGroup, TaskStatus

from gatewayasgi._types import Receive, Scope, Send
from gatewayasgi.dispatch.routes import Routes
from gatewayasgi.instrumentation import Instrumentation
from gatewayasgi.protocol import engineio
from gatewayasgi.protocol.base import Payload
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.resume import RESUME_PREFIX, SUBPROTOCOL
from gatewayasgi.protocol.socketio import EVENT, SOCKETIO, SocketIOProtocol
from gatewayasgi.protocol.socketio import packet as encode_packet
from gatewayasgi.runtime.datastructures import Headers, QueryParams
from gatewayasgi.runtime.handshake import FORBIDDEN, refuse
from gatewayasgi.runtime.outbox import OutboxBudget
from gatewayasgi.runtime.runner import GatewayRunner
from gatewayasgi.settings import Settings, origin_allowed
from gatewayasgi.socketio.engine import EngineSocket, close_websocket
from gatewayasgi.socketio.links import Link
from gatewayasgi.socketio.options import SocketIO
from gatewayasgi.socketio.polling import LastPolls, PollBudget

logger = logging.getLogger("gatewayasgi")

YIELD_EVERY = 16
"""The packets of a polling POST handled between two checkpoints: one body of many
small packets does not hold the event loop."""
UPGRADE_SETTLE = 0.1
"""How long a polling request waits for an upgrade in progress (engine.io's interval)."""
_TEXT = [(b"content-type", b"text/plain; charset=UTF-8")]


class PlainSocketIOProtocol(SocketIOProtocol):
    """Socket.IO without connection state recovery: a gateway with recovery stamps its
    emits with an offset, which these clients never see (no last argument)."""

    def with_offset(self, frame: str | bytes, offset: str) -> str:
        return frame if isinstance(frame, str) else frame.decode()

    def transcode(self, frame: Payload) -> str:
        obj = orjson.loads(frame)
        return encode_packet(EVENT, [obj["event"], obj.get("data")])


PLAIN_SOCKETIO = PlainSocketIOProtocol()
"""The protocol of Socket.IO clients when ``SocketIO.connection_state_recovery`` is off."""


class Endpoint:
    """Serves Engine.IO for one middleware (see the module docstring)."""

    def __init__(
        self,
        options: SocketIO,
        runners: Mapping[str, GatewayRunner],
        settings: Settings,
        *,
        budget: OutboxBudget | None = None,
        metrics: Instrumentation | None = None,
    ) -> None:
        """Serve ``runners``' gateways (namespace -> the gateway's own runner) to
        Socket.IO clients, each through a twin runner speaking Socket.IO."""
        self.options = options
        self.settings = settings
        self.path = options.path
        # Engine.IO pings: the gateways' own heartbeat frames are not sent here.
        twin_settings = replace(settings, heartbeat_interval=None)
        entries = []
        # Without connection_state_recovery a gateway's Socket.IO clients have no session
        # keeper (a drop ends the session) and their events no offset argument.
        recovering = options.connection_state_recovery
        for namespace, runner in runners.items():
            twin = GatewayRunner(
                runner.table,
                runner.server,
                twin_settings,
                SOCKETIO if recovering else PLAIN_SOCKETIO,
                budget=budget,
                metrics=metrics,
            )
            twin.keeper = runner.keeper if recovering else None
            entries.append((namespace, twin, runner.table.name))
        self.routes: Routes[GatewayRunner] = Routes(entries)
        self.sockets: dict[str, EngineSocket] = {}
        """Connections that began on polling (upgraded ones too, to refuse their sid)."""
        self.last_polls = LastPolls()
        """Polling connections the client just closed: their next GET gets a noop."""
        total = settings.outbox_budget
        self.poll_budget = PollBudget(None if total is None else max(total // 4, 1 << 20))
        """What polling connections hold for their next GET, together (a quarter of the
        outbox budget)."""
        self.task_group: TaskGroup | None = None
        """The endpoint's own (``serve``, while the lifespan runs): polling connections
        run there."""

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group polling connections run in, until cancelled (started in
        the lifespan's group: it ends with the lifespan, never because of a client)."""
        try:
            async with anyio.create_task_group() as task_group:
                self.task_group = task_group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self.task_group = None

    def owns(self, path: str) -> bool:
        return path == self.path or path == self.path + "/"

    def route(self, namespace: str) -> tuple[GatewayRunner, dict[str, str]] | None:
        return self.routes.match(namespace)

    def namespace_scope(
        self, socket: EngineSocket, link: Link, auth: dict[str, Any], path_params: dict[str, str]
    ) -> Scope:
        """The scope a namespace's connection is served with: the handshake's, at the
        namespace's path, with the CONNECT auth (and the resume credential in it)."""
        handshake = socket.scope
        subprotocols = []
        pid, offset = auth.pop("pid", None), auth.pop("offset", None)
        if link.runner.keeper is not None and type(pid) is str and pid.count(".") == 3:
            # socket.io's connection state recovery: ``pid`` is ours (id.token.epoch.
            # offset at connect); ``offset`` the last one the client got, if any.
            link.offered_pid = pid
            client_id, token, epoch, first = pid.split(".")
            last = offset if type(offset) is str else first
            subprotocols = [SUBPROTOCOL, f"{RESUME_PREFIX}{client_id}.{token}.{epoch}.{last}"]
        return {
            "type": "websocket",
            "asgi": handshake.get("asgi", {"version": "3.0"}),
            "http_version": handshake.get("http_version", "1.1"),
            "scheme": "wss" if handshake.get("scheme") in ("https", "wss") else "ws",
            "server": handshake.get("server"),
            "client": handshake.get("client"),
            "root_path": handshake.get("root_path", ""),
            "path": link.namespace,
            "raw_path": link.namespace.encode(),
            "query_string": handshake.get("query_string", b""),
            "headers": handshake.get("headers", []),
            "subprotocols": subprotocols,
            "extensions": {"websocket.http.response": {}},
            "path_params": path_params,
            "gatewayasgi.auth": auth,
            "gatewayasgi.client_id": link.client_id,
            "gatewayasgi.transport": "socketio",
        }

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = QueryParams(scope.get("query_string", b""))
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, params)
        else:
            await self._http(scope, receive, send, params)

    def _bad_query(self, params: Mapping[str, str], transport: str) -> bool:
        return (
            params.get("EIO") != "4"
            or params.get("transport") != transport
            or transport not in self.options.transports
        )

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, params: Mapping[str, str]
    ) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if self._bad_query(params, "websocket"):
            await refuse(scope, send, 400)
            return
        if not self._origin_ok(scope):
            await refuse(scope, send, FORBIDDEN)
            return
        await send({"type": "websocket.accept"})
        sid = params.get("sid")
        if sid is not None:
            await self._upgrade(sid, receive, send)
            return
        options = self.options
        socket = EngineSocket(self, _new_sid(), scope, "websocket")
        socket.attach_websocket(send, receive)
        opening = engineio.open_packet(
            socket.sid, [], options.ping_interval, options.ping_timeout, options.max_payload
        )
        await send({"type": "websocket.send", "text": opening})
        await socket.serve_websocket()
        await close_websocket(send)

    async def _upgrade(self, sid: str, receive: Receive, send: Send) -> None:
        socket = self.sockets.get(sid)
        if socket is None or socket.closed or socket.transport != "polling" or socket.upgrading:
            await close_websocket(send)  # unknown, or upgraded already
            return
        socket.begin_upgrade()
        try:
            with anyio.move_on_after(self.options.ping_timeout):
                first = await receive()
                if first.get("text") != engineio.PING + engineio.PROBE:
                    await close_websocket(send)
                    return
                await send({"type": "websocket.send", "text": engineio.PONG + engineio.PROBE})
                socket.wake_poll()  # the polling GET answers a noop: the client pauses it
                second = await receive()
                if second.get("text") != engineio.UPGRADE:
                    await close_websocket(send)
                    return
                await socket.upgraded(send, receive)
        finally:
            socket.end_upgrade()
        if socket.transport != "websocket":
            await close_websocket(send)
            return
        try:
            await socket.read_websocket()
        finally:
            socket.close()
        await close_websocket(send)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, params: Mapping[str, str]
    ) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await self._respond(scope, send, 204, b"")
            return
        if self._bad_query(params, "polling") or method not in ("GET", "POST"):
            await self._respond(scope, send, 400, b"Bad request")
            return
        if not self._origin_ok(scope):
            await self._respond(scope, send, 403, b"Forbidden")
            return
        sid = params.get("sid")
        if sid is None:
            if method != "GET":
                await self._respond(scope, send, 400, b"Bad request")
                return
            await self._open_polling(scope, send)
            return
        socket = self.sockets.get(sid)
        if socket is not None:
            await socket.settle(UPGRADE_SETTLE)
        if socket is not None and socket.expired():
            socket.close(CloseCode.ABNORMAL, "ping timeout")
        if socket is None or socket.closed or socket.transport != "polling":
            if method == "GET" and self.last_polls.take(sid):
                await self._respond(scope, send, 200, engineio.NOOP.encode())
                return
            await self._respond(scope, send, 400, b"Session ID unknown")
            return
        if method == "GET":
            body = await _poll(socket, receive)
            if body is None:
                await self._respond(scope, send, 400, b"Bad request")
            else:
                await self._respond(scope, send, 200, body.encode())
            return
        data = await _read_body(receive, self.options.max_payload)
        if data is None:
            socket.close(CloseCode.ABNORMAL, "polling body over maxPayload")
            await self._respond(scope, send, 413, b"Payload too large")
            return
        try:
            packets = engineio.decode_payload(data)
        except engineio.Malformed as exc:
            socket.close(CloseCode.ABNORMAL, f"malformed payload: {exc}")
            await self._respond(scope, send, 400, b"Bad request")
            return
        for count, packet in enumerate(packets, 1):
            await socket.on_packet(packet)
            if socket.closed:
                break
            if count % YIELD_EVERY == 0:
                await anyio.lowlevel.checkpoint()
        await self._respond(scope, send, 200, b"ok")

    async def _open_polling(self, scope: Scope, send: Send) -> None:
        options = self.options
        if self.task_group is None or len(self.sockets) >= options.max_polling_sessions:
            if self.task_group is None:
                logger.warning("Socket.IO long-polling needs the ASGI lifespan: refused")
            await self._respond(scope, send, 503, b"Service Unavailable")
            return
        socket = EngineSocket(self, _new_sid(), scope, "polling")
        socket.on_close = self._closed
        self.sockets[socket.sid] = socket
        upgrades = ["websocket"] if "websocket" in options.transports else []
        opening = engineio.open_packet(
            socket.sid, upgrades, options.ping_interval, options.ping_timeout, options.max_payload
        )
        await self.task_group.start(self._run_polling, socket)
        await self._respond(scope, send, 200, opening.encode())

    async def _run_polling(
        self, socket: EngineSocket, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await socket.run(task_status=task_status)
        except Exception:
            # Never into the endpoint's group: it serves every other polling connection.
            logger.exception("engine.io %s failed; its connection is closed", socket.sid)
        finally:
            socket.close()
            self.sockets.pop(socket.sid, None)

    def _closed(self, socket: EngineSocket) -> None:
        if socket.transport == "polling":
            socket.wake_poll()
            if socket.client_closed:
                self.last_polls.note(socket.sid)

    def _origin_ok(self, scope: Scope) -> bool:
        if self.settings.allowed_origins is None:
            return True
        return origin_allowed(Headers(scope.get("headers", [])).get("origin"), self.settings)

    async def _respond(self, scope: Scope, send: Send, status: int, body: bytes) -> None:
        headers = list(_TEXT)
        request = Headers(scope.get("headers", []))
        origin = request.get("origin")
        if origin is not None and self._origin_ok(scope):
            headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
            headers.append((b"access-control-allow-credentials", b"true"))
            if scope["method"] == "OPTIONS":
                headers.append((b"access-control-allow-methods", b"GET, POST"))
                requested = request.get("access-control-request-headers")
                if requested:
                    headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _poll(socket: EngineSocket, receive: Receive) -> str | None:
    """``socket.poll()``, and the connection's end if the client goes away meanwhile (a
    closed tab): its sessions end now, not a ping timeout later."""
    body: str | None = None
    async with anyio.create_task_group() as tasks:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            socket.close(CloseCode.ABNORMAL, "poll connection closed prematurely")
            tasks.cancel_scope.cancel()

        tasks.start_soon(watch)
        body = await socket.poll()
        tasks.cancel_scope.cancel()
    return body


def _new_sid() -> str:
    return secrets.token_urlsafe(15)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
