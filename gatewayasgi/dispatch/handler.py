"""One handler compiled for the hot path: argument extractors, guards, sync/async.

All ``inspect`` and pydantic ``TypeAdapter`` work happens in ``compile_handler``;
``Handler.invoke`` only runs the prepared extractors.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from gatewayasgi.exceptions import ConfigurationError, PayloadValidationError
from gatewayasgi.gateway.params import ConnectedSocket, MessageBody

Extractor = Callable[[Any, Any], Any]


INVALID_PAYLOAD = "Invalid payload for WebSocket event '{event}'"


@dataclass(frozen=True, slots=True)
class Handler:
    """A gateway method ready to call: ``invoke(client, data)`` returns its result
    (an awaitable for async handlers, see ``is_async``)."""

    event: str
    qualname: str
    func: Callable[..., Any]
    is_async: bool
    invoke: Callable[[Any, Any], Any]
    guards: tuple[Any, ...] = ()
    filters: tuple[Any, ...] = ()
    interceptors: tuple[Any, ...] = ()


def _socket(client: Any, data: Any) -> Any:
    return client


def _body(client: Any, data: Any) -> Any:
    return data


def _keyed(key: str) -> Extractor:
    def extract(client: Any, data: Any) -> Any:
        return data.get(key) if type(data) is dict else None

    return extract


def _validated(read: Extractor, adapter: TypeAdapter[Any], event: str) -> Extractor:
    validate = adapter.validate_python
    message = INVALID_PAYLOAD.format(event=event)

    def extract(client: Any, data: Any) -> Any:
        try:
            return validate(read(client, data))
        except ValidationError as exc:
            errors = orjson.loads(exc.json(include_url=False))
            raise PayloadValidationError(message, errors=errors) from None

    return extract


def _invoker(
    func: Callable[..., Any], extractors: list[tuple[str, Extractor]], positional: bool
) -> Callable[[Any, Any], Any]:
    """The cheapest call shape for this handler's parameters, chosen once."""
    if not extractors:
        return lambda client, data: func()
    if not positional:
        pairs = tuple(extractors)
        return lambda client, data: func(**{name: ex(client, data) for name, ex in pairs})
    funcs = tuple(ex for _, ex in extractors)
    if len(funcs) == 1:
        (only,) = funcs
        if only is _body:
            return lambda client, data: func(data)
        return lambda client, data: func(only(client, data))
    if len(funcs) == 2:
        first, second = funcs
        return lambda client, data: func(first(client, data), second(client, data))
    return lambda client, data: func(*[ex(client, data) for ex in funcs])


def _needs_validation(hint: Any) -> bool:
    return hint is not inspect.Parameter.empty and hint is not Any and hint is not object


def _extractor(owner: str, event: str, name: str, param: inspect.Parameter, hint: Any) -> Extractor:
    marker = param.default
    if isinstance(marker, ConnectedSocket):
        return _socket
    if not isinstance(marker, MessageBody):
        raise ConfigurationError(
            f"Handler {owner} parameter '{name}' needs a default of MessageBody() or "
            "ConnectedSocket()"
        )
    read = _body if marker.key is None else _keyed(marker.key)
    if not _needs_validation(hint):
        return read
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(hint)
    except Exception as exc:
        raise ConfigurationError(
            f"Handler {owner} parameter '{name}': pydantic cannot validate {hint!r}: {exc}"
        ) from exc
    return _validated(read, adapter, event)


def compile_handler(
    event: str,
    owner: str,
    func: Callable[..., Any],
    guards: tuple[Any, ...] = (),
    filters: tuple[Any, ...] = (),
    interceptors: tuple[Any, ...] = (),
) -> Handler:
    """Prepare ``func`` (a bound gateway method) for dispatch of ``event``."""
    qualname = f"{owner}.{getattr(func, '__name__', event)}"
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    extractors: list[tuple[str, Extractor]] = []
    positional = True
    for name, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            positional = False
            continue
        if param.default is inspect.Parameter.empty or isinstance(
            param.default, (MessageBody, ConnectedSocket)
        ):
            hint = hints.get(name, param.annotation)
            extractors.append((name, _extractor(qualname, event, name, param, hint)))
            positional = positional and param.kind != param.KEYWORD_ONLY
        else:
            positional = False  # a parameter left to its default: pass the others by name
    return Handler(
        event=event,
        qualname=qualname,
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        invoke=_invoker(func, extractors, positional),
        guards=guards,
        filters=filters,
        interceptors=interceptors,
    )
