"""Dependency injection: providers become singletons, resolved from constructor hints.

Everything here runs once, when the middleware is built. A provider is a class (built
on first need, its constructor's type-hinted parameters resolved from other providers,
recursively) or a ready instance (used as it is, so the wrapped app can share it).
"""

from __future__ import annotations

import builtins
import inspect
import typing
from collections.abc import Iterable
from typing import Any

from gatewayasgi.exceptions import ConfigurationError, MissingProviderError
from gatewayasgi.gateway.decorators import gateway_meta


def vars_init(cls: type) -> Any:
    """The ``__init__`` a class's instances run (looked up on the class, not an instance)."""
    return getattr(cls, "__init__")  # noqa: B009 - mypy forbids cls.__init__ here


def _constructor_hints(cls: type) -> dict[str, Any]:
    init = vars_init(cls)
    try:
        return typing.get_type_hints(init)
    except Exception:
        # Hints naming classes that are not importable from the module (local classes
        # under ``from __future__ import annotations``) stay strings; matched by name.
        return dict(getattr(init, "__annotations__", {}))


def _unwrap_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if args and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


class Container:
    """Holds provider singletons and builds classes whose constructors need them."""

    def __init__(self, providers: Iterable[Any] = ()) -> None:
        self._classes: dict[type, None] = {}
        self._instances: dict[type, Any] = {}
        for provider in providers:
            if isinstance(provider, type):
                self._classes[provider] = None
            else:
                self._instances[type(provider)] = provider

    def _lookup(self, hint: Any) -> type | None:
        hint = _unwrap_optional(hint)
        candidates = [*self._instances, *self._classes]
        if isinstance(hint, str):
            name = hint.rsplit(".", 1)[-1]
            matches = [cls for cls in candidates if cls.__name__ == name]
            return matches[0] if len(matches) == 1 else None
        if not isinstance(hint, type):
            return None
        if hint in self._instances or hint in self._classes:
            return hint
        # A provider registered as a subclass (or instance of one) satisfies the base.
        subs = [cls for cls in candidates if issubclass(cls, hint)]
        return subs[0] if len(subs) == 1 else None

    def get(self, cls: type) -> Any:
        """The singleton for provider ``cls``, building it (and its needs) on first use."""
        return self._provide(cls, ())

    def _provide(self, cls: type, chain: tuple[type, ...]) -> Any:
        if cls in self._instances:
            return self._instances[cls]
        if cls in chain:
            cycle = " -> ".join(c.__name__ for c in (*chain, cls))
            raise ConfigurationError(f"Circular provider dependency: {cycle}")
        instance = self._construct(cls, chain)
        self._instances[cls] = instance
        return instance

    def build(self, cls: type) -> Any:
        """A new instance of ``cls`` (a gateway or guard) with injected arguments."""
        if cls in self._instances:
            return self._instances[cls]
        return self._construct(cls, ())

    def _construct(self, cls: type, chain: tuple[type, ...]) -> Any:
        init = vars_init(cls)
        if init is object.__init__:
            return cls()
        hints = _constructor_hints(cls)
        kwargs: dict[str, Any] = {}
        signature = inspect.signature(init)
        for name, param in list(signature.parameters.items())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(name, param.annotation)
            provider = None if hint is inspect.Parameter.empty else self._lookup(hint)
            if provider is not None:
                kwargs[name] = self._provide(provider, (*chain, cls))
            elif param.default is not inspect.Parameter.empty:
                continue
            else:
                raise MissingProviderError(_missing_message(cls, name, hint))
        return cls(**kwargs)


def _is_value_type(hint: Any) -> bool:
    """Whether ``hint`` names a plain value (``str``, ``int``, ``list[str]``...) rather
    than a class that could be registered as a provider."""
    if isinstance(hint, str):
        name = hint.split("[", 1)[0].strip()
        return isinstance(getattr(builtins, name, None), type) or "|" in hint
    hint = _unwrap_optional(hint)
    if typing.get_origin(hint) is not None:
        return True
    return not isinstance(hint, type) or hint.__module__ in ("builtins", "typing")


def _missing_message(cls: type, name: str, hint: Any) -> str:
    if hint is inspect.Parameter.empty:
        return (
            f"Cannot build {cls.__name__}: constructor parameter '{name}' has no type "
            "annotation naming a provider"
        )
    type_name = hint if isinstance(hint, str) else getattr(hint, "__name__", repr(hint))
    problem = (
        f"Cannot build {cls.__name__}: constructor parameter '{name}' needs "
        f"{type_name}, which is not a provider"
    )
    if not _is_value_type(hint):
        return f"{problem}; add it to GatewayMiddleware(providers=[...])"
    if gateway_meta(cls) is not None:
        # Gateways are always built from their class: the value has to come in a provider.
        return (
            f"{problem}: a gateway's constructor receives providers only. Give '{name}' a "
            f"default, or hold the value in a provider class and pass an instance of it: "
            f"GatewayMiddleware(providers=[Settings({name}=...)])"
        )
    return (
        f"{problem} and cannot be injected: build {cls.__name__} yourself and pass the "
        f"instance, GatewayMiddleware(providers=[{cls.__name__}({name}=...)]), or give "
        f"'{name}' a default"
    )
