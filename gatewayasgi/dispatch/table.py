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

    @property
    def name(self) -> str:
        return self.cls.__name__


def _guard_instances(guards: tuple[Any, ...], container: Container, owner: str) -> tuple[Any, ...]:
    built = []
    for guard in guards:
        instance = container.build(guard) if isinstance(guard, type) else guard
        if not callable(getattr(instance, "can_activate", None)):
            raise ConfigurationError(f"Guard {guard!r} on {owner} has no can_activate(context)")
        built.append(instance)
    return tuple(built)


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
    class_guards = _guard_instances(tuple(getattr(cls, GUARDS_ATTR, ())), container, cls.__name__)
    handlers: dict[str, Handler] = {}
    for event, name in _subscribed_methods(cls).items():
        method = getattr(gateway, name)
        func = inspect.unwrap(getattr(cls, name))
        own_guards = _guard_instances(
            tuple(getattr(func, GUARDS_ATTR, ())), container, f"{cls.__name__}.{name}"
        )
        handlers[event] = compile_handler(event, cls.__name__, method, class_guards + own_guards)
    return GatewayTable(
        gateway=gateway,
        cls=cls,
        meta=meta,
        handlers=MappingProxyType(handlers),
        after_init=_hook(gateway, "after_init"),
        on_connection=_hook(gateway, "on_connection"),
        on_disconnect=_hook(gateway, "on_disconnect"),
    )
