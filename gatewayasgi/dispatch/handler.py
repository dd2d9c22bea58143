"""One handler compiled for the hot path: argument extractors, guards, sync/async.

All ``inspect`` and pydantic ``TypeAdapter`` work happens in ``compile_handler``;
``Handler.arguments`` only reads the prepared extractors.
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


class PayloadError(Exception):
    """Raised by an extractor; ``errors`` is JSON-safe pydantic detail."""

    def __init__(self, errors: list[Any]) -> None:
        super().__init__("invalid payload")
        self.errors = errors


INVALID_PAYLOAD = "Invalid payload for WebSocket event '{event}'"


@dataclass(frozen=True, slots=True)
class Handler:
    """A gateway method ready to call: ``func(**arguments(client, data))``."""

    event: str
    qualname: str
    func: Callable[..., Any]
    is_async: bool
    extractors: tuple[tuple[str, Extractor], ...]
    guards: tuple[Any, ...]
    filters: tuple[Any, ...] = ()
    interceptors: tuple[Any, ...] = ()

    def arguments(self, client: Any, data: Any) -> dict[str, Any]:
        """Keyword arguments for one call; raises ``PayloadValidationError``."""
        try:
            return {name: extract(client, data) for name, extract in self.extractors}
        except PayloadError as exc:
            message = INVALID_PAYLOAD.format(event=self.event)
            raise PayloadValidationError(message, errors=exc.errors) from None


def _socket(client: Any, data: Any) -> Any:
    return client


def _body(client: Any, data: Any) -> Any:
    return data


def _keyed(key: str) -> Extractor:
    def extract(client: Any, data: Any) -> Any:
        return data.get(key) if type(data) is dict else None

    return extract


def _validated(read: Extractor, adapter: TypeAdapter[Any]) -> Extractor:
    validate = adapter.validate_python

    def extract(client: Any, data: Any) -> Any:
        try:
            return validate(read(client, data))
        except ValidationError as exc:
            raise PayloadError(orjson.loads(exc.json(include_url=False))) from None

    return extract


def _needs_validation(hint: Any) -> bool:
    return hint is not inspect.Parameter.empty and hint is not Any and hint is not object


def _extractor(owner: str, name: str, param: inspect.Parameter, hint: Any) -> Extractor:
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
    return _validated(read, adapter)


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
    extractors = []
    for name, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is inspect.Parameter.empty or isinstance(
            param.default, (MessageBody, ConnectedSocket)
        ):
            hint = hints.get(name, param.annotation)
            extractors.append((name, _extractor(qualname, name, param, hint)))
    return Handler(
        event=event,
        qualname=qualname,
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        extractors=tuple(extractors),
        guards=guards,
        filters=filters,
        interceptors=interceptors,
    )
