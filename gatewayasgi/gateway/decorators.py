"""``@WebSocketGateway``, ``@SubscribeMessage``, ``@UseGuards``, ``@Injectable`` and the
lifecycle interfaces. Decorators only record metadata; the dispatch layer reads it once
when the middleware is built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

T = TypeVar("T")
C = TypeVar("C", bound=type)

DEFAULT_NAMESPACE = "/ws"
GATEWAY_ATTR = "__gateway__"
EVENT_ATTR = "__ws_event__"
GUARDS_ATTR = "__guards__"
EMITS_ATTR = "__ws_emits__"

_registry: list[type] = []


@dataclass(frozen=True)
class GatewayMeta:
    """What ``@WebSocketGateway`` recorded on a class."""

    namespace: str
    options: dict[str, Any] = field(default_factory=dict)
    handshake_guards: tuple[Any, ...] = ()
    subprotocols: tuple[str, ...] = ()
    recovery: Any = None
    """A ``Recovery`` (sessions that survive reconnects), ``False`` (off whatever the
    middleware's default), or ``None`` (the middleware's default)."""
    protocol: Any = None
    """The gateway's own ``WireProtocol`` (``AISDKChat()``), spoken to every client of its
    path; ``None``: the JSON protocol."""


def attach(target: T, attr: str, items: tuple[Any, ...]) -> T:
    """Prepend ``items`` to the list ``attr`` of a class (its own) or function.

    Decorators apply bottom-up; prepending keeps the written order as the run order.
    """
    if isinstance(target, type):
        own = tuple(target.__dict__.get(attr, ()))
    else:
        own = tuple(getattr(target, attr, ()))
    setattr(target, attr, (*items, *own))
    return target


def normalize_namespace(namespace: str | None) -> str:
    """``None``/``""`` -> ``"/ws"``; ``"chat"`` -> ``"/chat"``; trailing slashes dropped."""
    if not namespace:
        return DEFAULT_NAMESPACE
    path = "/" + namespace.strip().strip("/")
    return path if path != "/" else "/"


def registered_gateways() -> list[type]:
    """Every class decorated with ``@WebSocketGateway`` so far, in declaration order."""
    return list(_registry)


def gateway_meta(cls: type) -> GatewayMeta | None:
    """The ``GatewayMeta`` of a gateway class (its own, not inherited), or ``None``."""
    meta = cls.__dict__.get(GATEWAY_ATTR)
    return meta if isinstance(meta, GatewayMeta) else None


@overload
def WebSocketGateway(namespace: C, /) -> C: ...
@overload
def WebSocketGateway(
    namespace: str | None = None,
    port: int | None = None,
    options: dict[str, Any] | None = None,
    *,
    handshake_guards: Sequence[Any] = (),
    subprotocols: Sequence[str] = (),
    recovery: Any = None,
    protocol: Any = None,
) -> Callable[[C], C]: ...
def WebSocketGateway(
    namespace: Any = None,
    port: int | None = None,
    options: dict[str, Any] | None = None,
    *,
    handshake_guards: Sequence[Any] = (),
    subprotocols: Sequence[str] = (),
    recovery: Any = None,
    protocol: Any = None,
) -> Any:
    """Mark a class as a gateway serving ``namespace`` (default ``"/ws"``).

    Usable as ``@WebSocketGateway``, ``@WebSocketGateway("/chat")`` or
    ``@WebSocketGateway(namespace="chat")``. The namespace may hold parameters
    (``"/rooms/{room_id}"``), exposed as ``client.path_params``. ``port`` is accepted
    for PyNest compatibility and ignored: gateways share the app's server and port.
    ``options`` may hold ``{"overflow": ...}``, this gateway's outbox overflow policy.
    The class becomes injectable: its constructor arguments come from providers.

    ``handshake_guards`` run before the socket is accepted (``get_event()`` and
    ``get_data()`` are ``None``); a denial answers HTTP 403 and nothing else runs.
    ``subprotocols`` lists the subprotocols the gateway speaks, preferred first; the
    first one the client offered is accepted, and never one it did not offer.
    ``recovery=Recovery(window=...)`` keeps a client's session (id, rooms, state and the
    frames it missed) for a reconnect (see ``docs/recovery.md``); ``False`` turns off the
    middleware's default ``recovery`` for this gateway.
    ``protocol`` is the wire protocol the gateway speaks instead of JSON, to every client
    of its path (``gatewayasgi.ai.AISDKChat()``: the AI SDK's ``WebSocketChatTransport``).
    """
    if isinstance(namespace, type):
        return WebSocketGateway()(namespace)
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError(f"WebSocketGateway namespace must be a string, got {namespace!r}")
    if isinstance(subprotocols, str):
        raise TypeError("WebSocketGateway subprotocols must be a list of strings")
    meta = GatewayMeta(
        normalize_namespace(namespace),
        dict(options or {}),
        tuple(handshake_guards),
        tuple(subprotocols),
        recovery,
        protocol,
    )

    def decorate(cls: C) -> C:
        setattr(cls, GATEWAY_ATTR, meta)
        if cls not in _registry:
            _registry.append(cls)
        return cls

    return decorate


def SubscribeMessage(event: str) -> Callable[[T], T]:
    """Make a gateway method the handler of frames whose ``event`` equals ``event``.

    An ``async def`` method runs on the event loop. A ``def`` method runs in anyio's worker
    thread pool, as FastAPI runs ``def`` endpoints, so blocking there holds only its own
    connection (whose frames stay in arrival order); the hop costs tens of microseconds a
    frame, and a thread has no event loop (``gatewayasgi.dispatch.handler``).
    """
    if not isinstance(event, str) or not event:
        raise TypeError(f"SubscribeMessage needs a non-empty event name, got {event!r}")

    def decorate(func: T) -> T:
        setattr(func, EVENT_ATTR, event)
        return func

    return decorate


def UseGuards(*guards: Any) -> Callable[[T], T]:
    """Attach guards (``BaseGuard`` classes or instances) to a gateway class or handler.

    Class guards run before handler guards, each list in the order given; a guard
    whose ``can_activate`` returns false denies the frame and closes with 1008.
    """
    if not guards:
        raise TypeError("UseGuards needs at least one guard")

    def decorate(target: T) -> T:
        return attach(target, GUARDS_ATTR, guards)

    return decorate


@dataclass(frozen=True)
class EmitDeclaration:
    """An event a gateway sends to its clients, as ``@Emits`` recorded it."""

    event: str
    payload: Any = None
    """The type of the frame's ``data`` (a pydantic model, ``list[Item]``...), or ``None``."""
    description: str | None = None


def Emits(event: str, payload: Any = None, *, description: str | None = None) -> Callable[[C], C]:
    """Declare that a gateway sends ``event`` frames whose ``data`` is a ``payload``.

    Stack one per event on the gateway class (base classes' declarations are inherited).
    It changes nothing at run time: the AsyncAPI document lists the event as a ``send``
    operation, and ``gatewayasgi generate client-types`` types it for clients.
    """
    if not isinstance(event, str) or not event:
        raise TypeError(f"Emits needs a non-empty event name, got {event!r}")
    if event.startswith("$"):
        raise TypeError(f"Emits: event names starting with '$' belong to the protocol: {event!r}")
    declaration = EmitDeclaration(event, payload, description)

    def decorate(cls: C) -> C:
        if not isinstance(cls, type):
            raise TypeError("Emits decorates a gateway class")
        return attach(cls, EMITS_ATTR, (declaration,))

    return decorate


def declared_emits(cls: type) -> dict[str, EmitDeclaration]:
    """``event -> EmitDeclaration`` of a gateway class and its bases (the subclass wins)."""
    found: dict[str, EmitDeclaration] = {}
    for klass in reversed(cls.__mro__):
        for declaration in klass.__dict__.get(EMITS_ATTR, ()):
            found[declaration.event] = declaration
    return found


@overload
def Injectable(cls: C, /) -> C: ...
@overload
def Injectable() -> Callable[[C], C]: ...
def Injectable(cls: Any = None) -> Any:
    """Mark a class as a provider (``@Injectable`` or ``@Injectable()``).

    Providers are listed in ``GatewayMiddleware(providers=[...])``; each is built once
    and its constructor's type-hinted parameters are resolved from other providers.
    The mark itself changes nothing (any listed class is a provider): it documents
    intent, as in NestJS and PyNest.
    """

    def decorate(target: C) -> C:
        return target

    return decorate(cls) if cls is not None else decorate


class OnGatewayInit(ABC):
    """Implement ``after_init(server)``: runs once, before the first connection."""

    @abstractmethod
    def after_init(self, server: Any) -> Any: ...


class OnGatewayConnection(ABC):
    """Implement ``on_connection(client)``: runs after accept and registration."""

    @abstractmethod
    def on_connection(self, client: Any) -> Any: ...


class OnGatewayDisconnect(ABC):
    """Implement ``on_disconnect(client)``: runs when the receive loop ends, whatever
    ended it, before the client leaves the registry and its rooms."""

    @abstractmethod
    def on_disconnect(self, client: Any) -> Any: ...
