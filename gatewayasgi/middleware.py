"""``GatewayMiddleware``: routes gateway websocket scopes, passes everything else through.

Shape follows Starlette's pure ASGI middleware: ``__init__(app, ...)`` then
``__call__``, handing every scope it does not own to the wrapped app untouched.
All reflection (DI, handler compilation) happens in ``__init__``.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from anyio.abc import TaskGroup

from gatewayasgi._types import ASGIApp, Message, Receive, Scope, Send
from gatewayasgi.backplane.node import Backplane
from gatewayasgi.backplane.routing import Routing, routing_of
from gatewayasgi.brokers.base import Broker
from gatewayasgi.di import Container
from gatewayasgi.dispatch.routes import Routes, route_path
from gatewayasgi.dispatch.table import GatewayTable, compile_gateway
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.gateway.decorators import gateway_meta, registered_gateways
from gatewayasgi.instrumentation import Instrumentation, combine
from gatewayasgi.protocol.base import WireProtocol
from gatewayasgi.protocol.json import JSON
from gatewayasgi.protocol.resume import RESUME_PREFIX, SUBPROTOCOL
from gatewayasgi.recovery import Recovery
from gatewayasgi.recovery.keeper import SessionKeeper
from gatewayasgi.recovery.waiting import WaitingBudget
from gatewayasgi.runtime import eager, keyed_streams
from gatewayasgi.runtime.handshake import FORBIDDEN, refuse
from gatewayasgi.runtime.outbox import OutboxBudget
from gatewayasgi.runtime.runner import GatewayRunner
from gatewayasgi.runtime.server import WebSocketServer
from gatewayasgi.settings import SETTING_NAMES, Overflow, Settings, unknown_settings
from gatewayasgi.socketio.options import SocketIO
from gatewayasgi.stores.base import PARTITION_MASK
from gatewayasgi.stores.memory import MemoryLog, MemorySessionStore

if TYPE_CHECKING:
    from gatewayasgi.socketio.endpoint import Endpoint

logger = logging.getLogger("gatewayasgi")

_DEFAULTS = Settings()
_OWN_PARAMETERS = (
    "app",
    "gateways",
    "providers",
    "broker",
    "routing",
    "metrics",
    "instrumentation",
    "recovery",
    "asyncapi_url",
    "socketio",
    "protocols",
)
_SERVED: weakref.WeakSet[type] = weakref.WeakSet()
"""Gateway classes some middleware of this process serves."""


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
    processes (see ``gatewayasgi.brokers``), each order only to the processes with
    recipients of it unless ``routing="namespace"`` (``docs/scaling.md``, ``Routing``
    in ``gatewayasgi.backplane.routing``); ``instrumentation`` receives the runtime's
    instrumentation hooks: one instrument or a list (``[PrometheusMetrics(),
    OpenTelemetryTracing()]``), every one called at each step; ``metrics`` is one more
    (it joins the list).
    ``asyncapi_url="/asyncapi.json"`` answers ``GET`` on that path with the gateways'
    AsyncAPI document (off by default; every other request passes through).
    ``socketio=SocketIO()`` serves the same gateways to Socket.IO clients at
    ``/socket.io`` (``docs/socketio.md``). ``protocols=[MessagePack()]`` serves other wire
    protocols beside JSON at the gateways' own paths, each to the clients that offer its
    subprotocol (``gatewayasgi.msgpack``: ``docs/guide/protocols.md``). Every other
    keyword is a limit or policy documented on ``gatewayasgi.Settings``; each is checked
    here, and an error names the setting at fault.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        gateways: Iterable[type] | None = None,
        providers: Sequence[Any] = (),
        broker: Broker | None = None,
        routing: Routing | str = "interest",
        metrics: Instrumentation | None = None,
        instrumentation: Instrumentation | Sequence[Instrumentation] | None = None,
        recovery: Recovery | None = None,
        asyncapi_url: str | None = None,
        socketio: SocketIO | None = None,
        protocols: Sequence[WireProtocol] = (),
        outbox_max_messages: int = _DEFAULTS.outbox_max_messages,
        outbox_max_bytes: int = _DEFAULTS.outbox_max_bytes,
        outbox_budget: int | None = _DEFAULTS.outbox_budget,
        waiting_budget: int | None = _DEFAULTS.waiting_budget,
        overflow: Overflow | str = _DEFAULTS.overflow,
        max_message_size: int = _DEFAULTS.max_message_size,
        rate_limit: float | None = _DEFAULTS.rate_limit,
        rate_burst: int = _DEFAULTS.rate_burst,
        error_rate_limit: float = _DEFAULTS.error_rate_limit,
        error_burst: int = _DEFAULTS.error_burst,
        abuse_threshold: int = _DEFAULTS.abuse_threshold,
        max_rooms_per_connection: int = _DEFAULTS.max_rooms_per_connection,
        max_room_name_length: int = _DEFAULTS.max_room_name_length,
        max_connections: int | None = _DEFAULTS.max_connections,
        allowed_origins: Sequence[str] | None = _DEFAULTS.allowed_origins,
        allow_missing_origin: bool = _DEFAULTS.allow_missing_origin,
        heartbeat_interval: float | None = _DEFAULTS.heartbeat_interval,
        heartbeat_timeout: float = _DEFAULTS.heartbeat_timeout,
        heartbeat_event: str = _DEFAULTS.heartbeat_event,
        close_timeout: float = _DEFAULTS.close_timeout,
        hook_timeout: float = _DEFAULTS.hook_timeout,
        max_streams: int = _DEFAULTS.max_streams,
        stream_timeout: float | None = _DEFAULTS.stream_timeout,
        gc_freeze: bool = _DEFAULTS.gc_freeze,
        **unknown: NoReturn,
    ) -> None:
        if unknown:
            raise unknown_settings(unknown, (*SETTING_NAMES, *_OWN_PARAMETERS))
        self.app = app
        self.settings = Settings.build(
            outbox_max_messages=outbox_max_messages,
            outbox_max_bytes=outbox_max_bytes,
            outbox_budget=outbox_budget,
            waiting_budget=waiting_budget,
            overflow=overflow,
            max_message_size=max_message_size,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            error_rate_limit=error_rate_limit,
            error_burst=error_burst,
            abuse_threshold=abuse_threshold,
            max_rooms_per_connection=max_rooms_per_connection,
            max_room_name_length=max_room_name_length,
            max_connections=max_connections,
            allowed_origins=allowed_origins,
            allow_missing_origin=allow_missing_origin,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            heartbeat_event=heartbeat_event,
            close_timeout=close_timeout,
            hook_timeout=hook_timeout,
            max_streams=max_streams,
            stream_timeout=stream_timeout,
            gc_freeze=gc_freeze,
        )
        if metrics is not None and not isinstance(metrics, Instrumentation):
            raise ConfigurationError(
                f"metrics must be an Instrumentation (e.g. PrometheusMetrics()), got {metrics!r}"
            )
        metrics = _instruments(metrics, instrumentation)
        if broker is not None and not isinstance(broker, Broker):
            raise ConfigurationError(
                f"broker must be a Broker (e.g. RedisBroker(url)), got {broker!r}"
            )
        if recovery is not None and not isinstance(recovery, Recovery):
            raise ConfigurationError(
                f"recovery must be a Recovery (e.g. Recovery(window=120)), got {recovery!r}"
            )
        self.recovery = recovery
        self.container = Container(providers)
        self.broker = broker
        self.metrics = metrics
        self.protocol: WireProtocol = JSON
        self.protocols = _other_protocols(protocols)
        self.speakers: dict[str, dict[str, GatewayRunner]] = {
            protocol.subprotocol: {} for protocol in self.protocols if protocol.subprotocol
        }
        """Subprotocol -> namespace -> the gateway's runner for that wire protocol."""
        self.budget = OutboxBudget(self.settings.outbox_budget)
        routed = _routing(routing)
        self.backplane = (
            Backplane(
                broker,
                max_envelope_size=max(self.settings.max_message_size, 1 << 20) * 2,
                metrics=metrics,
                routing=routed,
            )
            if broker is not None
            else None
        )
        self.kept_streams = (
            None
            if broker is None
            else broker.kept_streams(
                max_items=keyed_streams.KEPT_ITEMS,
                max_bytes=keyed_streams.KEPT_BYTES,
                grace=keyed_streams.GRACE,
            )
        )
        """Keyed streams of every gateway, kept for the other processes (the broker's)."""
        self.keepers: list[SessionKeeper] = []
        self.waiting = WaitingBudget(self.settings.waiting_budget)
        """What sessions waiting for their client hold, every gateway's together."""
        self.servers: dict[str, WebSocketServer] = {}
        self.tables: list[GatewayTable] = []
        self.runners: dict[str, GatewayRunner] = {}
        entries = []
        for cls in _gateway_classes(gateways, providers):
            table = compile_gateway(cls, self.container)
            runner = self._runner(table)
            self.tables.append(table)
            self.servers[table.meta.namespace] = runner.server
            self.runners[table.meta.namespace] = runner
            self._speakers(runner)
            entries.append((table.meta.namespace, runner, cls.__name__))
        self.routes: Routes[GatewayRunner] = Routes(entries)
        self.socketio = None if socketio is None else self._socketio_endpoint(socketio)
        for keeper in self.keepers if socketio is not None else ():
            if keeper.log.partitions > 1:
                raise ConfigurationError(
                    f"gateway {keeper.server.namespace}: Socket.IO clients keep one offset, "
                    "so with socketio= the history needs Recovery(partitions=1)"
                )
        _SERVED.update(table.cls for table in self.tables)
        self._chose_gateways = gateways is not None
        self.asyncapi_url = asyncapi_url
        self._asyncapi = None if asyncapi_url is None else self._asyncapi_endpoint(asyncapi_url)
        self._started = False
        # One lock per async library: an app object may be served under asyncio, then
        # under trio (a lock is bound to the loop it was first used in).
        self._start_locks: dict[str, anyio.Lock] = {}

    def _asyncapi_endpoint(self, url: str) -> ASGIApp:
        if not isinstance(url, str) or not url.startswith("/"):
            raise ConfigurationError(
                f"asyncapi_url must be a path such as '/asyncapi.json', got {url!r}"
            )
        from gatewayasgi.asyncapi.http import document_endpoint

        return document_endpoint(self)

    def _speakers(self, runner: GatewayRunner) -> None:
        """A runner per other wire protocol: the gateway's own table, server and session
        keeper (rooms, emits and history are shared), another protocol. A gateway that
        declares its own protocol speaks it to every client of its path."""
        if runner.table.meta.protocol is not None:
            return
        for protocol in self.protocols:
            speaker = GatewayRunner(
                runner.table,
                runner.server,
                self.settings,
                protocol,
                budget=self.budget,
                metrics=self.metrics,
            )
            speaker.keeper = runner.keeper
            self.speakers[str(protocol.subprotocol)][runner.namespace] = speaker

    def _speaker(self, scope: Scope, runner: GatewayRunner) -> GatewayRunner:
        """The runner for the first registered protocol the client offers, else ``runner``."""
        for offered in scope.get("subprotocols") or ():
            speakers = self.speakers.get(offered)
            if speakers is not None:
                return speakers[runner.namespace]
        return runner

    def _socketio_endpoint(self, options: SocketIO) -> Endpoint:
        if not isinstance(options, SocketIO):
            raise ConfigurationError(
                f"socketio must be a SocketIO (e.g. SocketIO(path='/socket.io')), got {options!r}"
            )
        from gatewayasgi.socketio.endpoint import Endpoint

        return Endpoint(
            options, self.runners, self.settings, budget=self.budget, metrics=self.metrics
        )

    def _runner(self, table: GatewayTable) -> GatewayRunner:
        settings = self.settings
        namespace = table.meta.namespace
        server = WebSocketServer(
            namespace,
            self.protocol,
            backplane=self.backplane,
            metrics=self.metrics,
            max_rooms_per_connection=settings.max_rooms_per_connection,
            max_room_name_length=settings.max_room_name_length,
        )
        table.gateway.server = server
        if self.kept_streams is not None:  # keyed streams reach the other workers
            server.streams.share(self.kept_streams, namespace)
        runner = GatewayRunner(
            table,
            server,
            settings,
            _protocol_of(table) or self.protocol,
            budget=self.budget,
            metrics=self.metrics,
        )
        recovery = self._recovery_of(table)
        keeper = None if recovery is None else self._keeper(runner, recovery)
        if self.backplane is not None:
            if keeper is None:
                # Orders lost on the way (a broker's subscription cut) are told: $gap.
                self.backplane.add(namespace, server.deliver_local, on_gap=server.tell_gap)
            elif keeper.log.carries:
                # The shared history carries this gateway's frames; what still comes over
                # pub/sub is an Emitter's that was given no ``recovery``.
                self.backplane.add(namespace, keeper.deliver_unlogged)
            else:
                # Every process keeps its own history of every frame: it needs them all.
                self.backplane.add(
                    namespace, keeper.deliver_remote, every_order=True, on_gap=keeper.remote_gap
                )
            server.rooms.watcher = self.backplane.interest(namespace)
        return runner

    def _recovery_of(self, table: GatewayTable) -> Recovery | None:
        chosen = table.meta.recovery
        if chosen is None:
            return self.recovery
        if chosen is False:
            return None
        if not isinstance(chosen, Recovery):
            raise ConfigurationError(
                f"{table.name}: recovery must be a Recovery (e.g. Recovery(window=120)) or "
                f"False, got {chosen!r}"
            )
        return chosen

    def _keeper(self, runner: GatewayRunner, recovery: Recovery) -> SessionKeeper:
        """The gateway's history and session store: the broker's (shared) or in memory."""
        namespace, server = runner.namespace, runner.server
        broker = self.broker
        log = store = None
        if broker is not None:
            log = broker.history(
                namespace,
                max_frames=recovery.max_frames,
                max_age=recovery.window,
                max_bytes=recovery.max_bytes,
                max_frame_bytes=recovery.max_frame_bytes,
                partitions=recovery.partitions,
            )
            store = broker.session_store(namespace)
        keeper = SessionKeeper(
            server,
            self.protocol,
            recovery,
            log
            or MemoryLog(
                recovery.max_frames,
                recovery.window,
                max_bytes=recovery.max_bytes,
                max_frame_bytes=recovery.max_frame_bytes,
            ),
            store or MemorySessionStore(),
            runner.on_disconnect,
            self.waiting,
        )
        server.delivery.history = keeper.log
        if keeper.log.partitions > 1:
            server.partition_mask = PARTITION_MASK
        server.delivery.quota = keeper.charge
        server.on_rooms_changed = keeper.rooms_changed
        runner.keeper = keeper
        self.keepers.append(keeper)
        return keeper

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
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        engine = self.socketio
        path = ""
        if kind == "websocket" or engine is not None or self._asyncapi is not None:
            path = route_path(scope["path"], scope.get("root_path", ""))
        if engine is not None and engine.owns(path):
            if not self._started:
                await self._start(None)
            await engine(scope, receive, send)
            return
        if kind == "websocket":
            found = self.routes.match(path)
            if found is None:
                self._log_unrouted(scope["path"], path)
            if found is not None:
                if not self._started:
                    await self._start(None)
                runner, path_params = found
                if self.speakers:
                    runner = self._speaker(scope, runner)
                if path_params:
                    scope["path_params"] = {**scope.get("path_params", {}), **path_params}
                await runner.run(scope, receive, send, path_params)
                return
        elif (
            self._asyncapi is not None
            and kind == "http"
            and scope["method"] in ("GET", "HEAD")
            and path == self.asyncapi_url
        ):
            await self._asyncapi(scope, receive, send)
            return
        if self.app is not None:
            await self.app(scope, receive, send)
        else:
            await _refuse(scope, receive, send)

    def _log_unrouted(self, full_path: str, path: str) -> None:
        """Say why no gateway took a websocket: at info when this middleware refuses it
        or a forgotten gateway would have served it, else (the wrapped app's own
        websockets) at debug. The path only, never the query string."""
        forgotten = _forgotten_gateway(path)
        if forgotten is None and self.app is not None:
            if not logger.isEnabledFor(logging.DEBUG):
                return
            level = logging.DEBUG
        else:
            level = logging.INFO
        logger.log(
            level,
            "websocket %s %s: %s",
            full_path[:200],
            "refused with 403" if self.app is None else "passed to the wrapped app",
            unrouted_reason(path, self.servers, forgotten),
        )

    # -- startup and shutdown -------------------------------------------------

    async def _start(self, task_group: TaskGroup | None) -> None:
        library = "asyncio" if eager.available() else "other"
        lock = self._start_locks.get(library)
        if lock is None:
            lock = self._start_locks[library] = anyio.Lock()
        async with lock:
            if self._started:
                return
            if self.backplane is not None:
                if task_group is None:
                    logger.warning(
                        "the ASGI server did not run lifespan: broker %r is off, emits "
                        "reach this process's clients only",
                        self.broker,
                    )
                else:
                    await self.backplane.start(task_group)
            elif self.servers:
                # Several worker processes without a broker split every room silently.
                logger.info(
                    "no broker: rooms and emits are local to this process (pid %d); with "
                    "several worker processes, pass broker=RedisBroker(url) to share them",
                    os.getpid(),
                )
            if task_group is not None:
                for server in self.servers.values():
                    # Keyed streams outlive the connection that started them.
                    await task_group.start(server.streams.serve)
                    await task_group.start(server.session_streams.serve)
            if self.socketio is not None and task_group is not None:
                await task_group.start(self.socketio.serve)  # its own group: see serve
            for keeper in self.keepers:
                if task_group is not None:
                    await keeper.run(task_group)
                elif keeper.log.carries:
                    logger.warning(
                        "the ASGI server did not run lifespan: gateway %s's shared history "
                        "is not read, its clients get no emits",
                        keeper.server.namespace,
                    )
            for table in self.tables:
                if table.after_init is not None:
                    result = table.after_init(table.gateway.server)
                    if inspect.isawaitable(result):
                        await result
            if self._chose_gateways:
                _log_unserved()
            if self.settings.gc_freeze:
                # A full collection rescans every object alive, hundreds of thousands
                # after importing pydantic and a framework: measured under granian, that
                # tripled the p99 of a 500-member fan-out. What exists at startup lives
                # as long as the process, so it is frozen once, after one collection.
                gc.collect()
                gc.freeze()
            self._started = True

    async def _stop(self) -> None:
        for keeper in self.keepers:
            try:
                await keeper.close()
            except Exception:
                logger.exception("closing the sessions of %s failed", keeper.server.namespace)
        if self.backplane is not None:
            await self.backplane.close()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ``lifespan.shutdown.complete`` goes out once the services (backplane, keyed
        # streams, Socket.IO's connections) have ended: a server may cancel the lifespan
        # as soon as it reads it (hypercorn does), and a task group still closing would
        # turn that into a CancelledError traceback.
        finished: list[Message] = []

        async def send_when_done(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                finished.append(message)
                services.cancel_scope.cancel()
                return
            await send(message)

        async with anyio.create_task_group() as services:
            try:
                if self.app is None:
                    await self._own_lifespan(receive, send_when_done, services)
                else:
                    await self._wrapped_lifespan(scope, receive, send_when_done, services)
            finally:
                services.cancel_scope.cancel()
        for message in finished:
            await send(message)

    async def _own_lifespan(
        self, receive: Receive, send: Send, services: TaskGroup, taken: Message | None = None
    ) -> None:
        """Answer the server's lifespan messages; ``taken`` is one already received."""
        while True:
            message = await receive() if taken is None else taken
            taken = None
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
        """Run the app's lifespan, the gateways' work after its startup; when the app does
        not answer startup (it raised, as Django's ``get_asgi_application()`` does, or
        returned), the gateways answer the server themselves."""
        assert self.app is not None
        taken: Message | None = None
        """The last message the app received."""
        answered: str | None = None
        """The app's answer to ``lifespan.startup``."""

        async def wrapped_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "lifespan.startup.complete":
                # The app's own startup succeeded: its resources exist for after_init.
                try:
                    await self._start(services)
                except Exception as exc:
                    logger.exception("gateway startup failed")
                    message = {"type": "lifespan.startup.failed", "message": repr(exc)}
            if message["type"].startswith("lifespan.startup."):
                answered = message["type"]
            await send(message)

        async def wrapped_receive() -> Message:
            nonlocal taken
            message = taken = await receive()
            if message["type"] == "lifespan.shutdown":
                await self._stop()
            return message

        try:
            await self.app(scope, wrapped_receive, wrapped_send)
        except Exception as exc:
            if answered is not None:
                raise
            why = f"it raised {exc!r}"[:300]
        else:
            if answered is None:
                why = "it returned without answering lifespan.startup"
            elif answered == "lifespan.startup.complete" and (
                taken is None or taken["type"] != "lifespan.shutdown"
            ):
                # The app left its lifespan early: the gateways' work runs until shutdown.
                await self._own_lifespan(receive, send, services)
                return
            else:
                return
        logger.info(
            "the wrapped app does not run lifespan (%s): the gateways run their own "
            "startup and shutdown",
            why,
        )
        await self._own_lifespan(receive, send, services, taken)


def _instruments(
    metrics: Instrumentation | None,
    instrumentation: Instrumentation | Sequence[Instrumentation] | None,
) -> Instrumentation | None:
    """``metrics`` and ``instrumentation`` as the one object the runtime holds."""
    if instrumentation is None or isinstance(instrumentation, Instrumentation):
        listed: list[Any] = [instrumentation]
    elif isinstance(instrumentation, Iterable) and not isinstance(instrumentation, (str, bytes)):
        listed = list(instrumentation)
    else:
        listed = [instrumentation]  # refused by combine, with the message below
    try:
        return combine([metrics, *listed])
    except TypeError:
        raise ConfigurationError(
            "instrumentation must be an Instrumentation or a list of them (e.g. "
            f"[PrometheusMetrics(), OpenTelemetryTracing()]), got {instrumentation!r}"
        ) from None


def _routing(routing: Routing | str) -> Routing:
    """``routing`` checked: a ``Routing`` or ``"interest"``/``"namespace"``."""
    try:
        return routing_of(routing)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"routing must be 'interest', 'namespace' or a Routing, got {routing!r}"
        ) from None


def _protocol_of(table: GatewayTable) -> WireProtocol | None:
    """The wire protocol a gateway declared (``@WebSocketGateway(protocol=...)``), checked."""
    chosen = table.meta.protocol
    if chosen is not None and not isinstance(chosen, WireProtocol):
        raise ConfigurationError(
            f"{table.name}: protocol must be a WireProtocol (e.g. AISDKChat()), got {chosen!r}"
        )
    return chosen


def _other_protocols(protocols: Sequence[WireProtocol]) -> tuple[WireProtocol, ...]:
    """``protocols`` checked: wire protocols each with a subprotocol of its own."""
    if isinstance(protocols, (str, bytes, WireProtocol)) or not isinstance(protocols, Iterable):
        raise ConfigurationError(
            f"protocols must be a list of wire protocols (e.g. [MessagePack()]), got {protocols!r}"
        )
    chosen = tuple(protocols)
    seen: set[str] = set()
    for protocol in chosen:
        if not isinstance(protocol, WireProtocol):
            raise ConfigurationError(
                f"protocols must hold WireProtocol instances (e.g. MessagePack()), got {protocol!r}"
            )
        name = protocol.subprotocol
        if (
            not isinstance(name, str)
            or name in (SUBPROTOCOL, "")
            or name.startswith(RESUME_PREFIX)
            or name in seen
        ):
            raise ConfigurationError(
                f"{protocol!r} needs a subprotocol of its own to be chosen by (its "
                f"subprotocol attribute), got {name!r}"
            )
        seen.add(name)
    return chosen


def _log_unserved() -> None:
    """Say once which declared gateways no middleware serves: their clients get 403."""
    unserved = [cls for cls in registered_gateways() if cls not in _SERVED]
    if unserved:
        logger.warning(
            "gateways declared with @WebSocketGateway but passed to no GatewayMiddleware "
            "(their websockets are refused with 403): %s; add them to gateways=[...]",
            ", ".join(
                f"{cls.__module__}.{cls.__qualname__} ({_namespace(cls)})" for cls in unserved
            ),
        )


def _forgotten_gateway(path: str) -> type | None:
    """A declared gateway that no middleware serves and whose namespace owns ``path``."""
    for cls in registered_gateways():
        if cls not in _SERVED and Routes([(_namespace(cls), cls, "")]).match(path):
            return cls
    return None


def unrouted_reason(path: str, namespaces: Iterable[str], forgotten: type | None = None) -> str:
    """Why no gateway took a websocket to route path ``path``, in the words the server's
    log and the test client's ``WebSocketDenied`` share. ``forgotten``: the declared
    gateway that owns ``path`` but is served by no middleware, when already known."""
    if forgotten is None:
        forgotten = _forgotten_gateway(path)
    served = ", ".join(namespaces) or "none"
    if forgotten is None:
        hint = "is the gateway passed to GatewayMiddleware(gateways=[...])?"
    else:
        hint = (
            f"gateway {forgotten.__module__}.{forgotten.__qualname__} declares it but was "
            "passed to no GatewayMiddleware: add it to gateways=[...]"
        )
    return f"no gateway serves this path (namespaces served: {served}); {hint}"


def _namespace(cls: type) -> str:
    meta = gateway_meta(cls)
    return meta.namespace if meta is not None else "?"


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
