"""Gateway class -> ``GatewayTable``: its instance, event table and lifecycle hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gatewayasgi.di import Container
from gatewayasgi.dispatch.handler import Handler, compile_handler
from gatewayasgi.exceptions import ConfigurationError, DuplicateHandlerError
from gatewayasgi.gateway.decorators import EVENT_ATTR, GUARDS_ATTR, GatewayMeta, gateway_meta
from gatewayasgi.gateway.filters import FILTERS_ATTR
from gatewayasgi.gateway.guards import Guard
from gatewayasgi.gateway.interceptors import INTERCEPTORS_ATTR
from gatewayasgi.protocol.resume import RESERVED_PREFIX

Hook = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class GatewayTable:
    """Everything the runtime needs about one gateway, frozen at startup."""

    gateway: Any
    cls: type
    meta: GatewayMeta
    handlers: Mapping[str, Handler]
    after_init: Hook | None
    on_connection: Hook | None
    on_disconnect: Hook | None
    handshake_guards: tuple[Guard, ...] = ()

    @property
    def name(self) -> str:
        return self.cls.__name__


def _instances(
    items: tuple[Any, ...], container: Container, owner: str, kind: str, method: str
) -> tuple[Any, ...]:
    """Build (with DI) or take each guard/filter/interceptor; check it has ``method``."""
    built = []
    for item in items:
        instance = container.build(item) if isinstance(item, type) else item
        if not callable(getattr(instance, method, None)):
            raise ConfigurationError(f"{kind} {item!r} on {owner} has no {method}() method")
        built.append(instance)
    return tuple(built)


# (attribute, kind, method) of each per-handler extension; class-level lists come first.
_EXTENSIONS = (
    (GUARDS_ATTR, "Guard", "can_activate"),
    (FILTERS_ATTR, "Exception filter", "catch"),
    (INTERCEPTORS_ATTR, "Interceptor", "intercept"),
)


def _extensions(
    cls: type, func: Any, container: Container, owner: str
) -> tuple[tuple[Any, ...], ...]:
    lists = []
    for attr, kind, method in _EXTENSIONS:
        outer = _instances(tuple(getattr(cls, attr, ())), container, cls.__name__, kind, method)
        inner = _instances(tuple(getattr(func, attr, ())), container, owner, kind, method)
        # Filters: the handler's own are tried first (closest to the error).
        lists.append(inner + outer if attr == FILTERS_ATTR else outer + inner)
    return tuple(lists)


def handshake_guards(meta: GatewayMeta, container: Container, owner: str) -> tuple[Guard, ...]:
    """Instances of a gateway's ``handshake_guards``."""
    return _instances(meta.handshake_guards, container, owner, "Handshake guard", "can_activate")


def _subscribed_methods(cls: type) -> dict[str, str]:
    """event -> method name, following the MRO so subclasses override by name."""
    by_name: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            event = getattr(func, EVENT_ATTR, None)
            if isinstance(event, str):
                by_name[name] = event
            else:
                by_name.pop(name, None)
    events: dict[str, str] = {}
    for name, event in by_name.items():
        if event in events:
            raise DuplicateHandlerError(
                f"{cls.__name__}.{events[event]} and {cls.__name__}.{name} both handle "
                f"event '{event}'"
            )
        events[event] = name
    return events


def _hook(gateway: Any, name: str) -> Hook | None:
    hook = getattr(gateway, name, None)
    if hook is None:
        return None
    if not callable(hook):
        raise ConfigurationError(f"{type(gateway).__name__}.{name} must be a method")
    return hook  # type: ignore[no-any-return]


def compile_gateway(cls: type, container: Container) -> GatewayTable:
    """Build the gateway (with injected arguments) and prepare each of its handlers."""
    meta = gateway_meta(cls)
    if meta is None:
        raise ConfigurationError(f"{cls.__name__} is not decorated with @WebSocketGateway")
    gateway = container.build(cls)
    handlers: dict[str, Handler] = {}
    for event, name in _subscribed_methods(cls).items():
        if event.startswith(RESERVED_PREFIX):
            raise ConfigurationError(
                f"{cls.__name__}.{name} subscribes to '{event[:200]}': event names starting "
                f"with '{RESERVED_PREFIX}' are reserved for the protocol ($session, $ack, $end)"
            )
        method = getattr(gateway, name)
        func = inspect.unwrap(getattr(cls, name))
        guards, filters, interceptors = _extensions(cls, func, container, f"{cls.__name__}.{name}")
        handlers[event] = compile_handler(
            event, cls.__name__, method, guards, filters, interceptors
        )
    return GatewayTable(
        gateway=gateway,
        cls=cls,
        meta=meta,
        handlers=MappingProxyType(handlers),
        after_init=_hook(gateway, "after_init"),
        on_connection=_hook(gateway, "on_connection"),
        on_disconnect=_hook(gateway, "on_disconnect"),
        handshake_guards=handshake_guards(meta, container, cls.__name__),
    )
