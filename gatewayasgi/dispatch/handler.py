"""One handler compiled for the hot path: argument extractors, guards, sync/async.

All ``inspect`` and pydantic ``TypeAdapter`` work happens in ``compile_handler``;
``Handler.invoke`` only runs the prepared extractors.

A ``def`` handler runs in anyio's worker thread pool, as FastAPI runs ``def`` endpoints: a
handler that blocks (a sync database driver, ``time.sleep``) holds its own connection,
whose frames are still handled in arrival order, not the event loop and every other
client (on the loop, a ``time.sleep(1.5)`` held another client's ping 1.4 s). The hop
costs a trivial ``def`` echo 55-90 us a frame instead of 2.7 us on the loop
(``python -m benchmarks.sync_handlers``, 2 cores); ``async def`` handlers run on the loop
and pay nothing, so write ``async def`` for handlers that do not block, and for those that
need the loop (a thread has none: the error raised there names the handler and says so).
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio.to_thread
from pydantic import TypeAdapter, ValidationError

from gatewayasgi.exceptions import ConfigurationError, PayloadValidationError
from gatewayasgi.gateway.filters import ExceptionFilter
from gatewayasgi.gateway.guards import Guard
from gatewayasgi.gateway.interceptors import Interceptor
from gatewayasgi.gateway.params import ConnectedSocket, MessageBody

Extractor = Callable[[Any, Any], Any]


INVALID_PAYLOAD = "Invalid payload for WebSocket event '{event}'"
MAX_VALIDATION_ERRORS = 10
"""Validation errors sent back at most; ``error_count`` says how many there were."""
MAX_LOC_ITEMS = 8
MAX_LOC_KEY = 64


@dataclass(frozen=True, slots=True)
class Parameter:
    """One handler parameter as declared."""

    name: str
    source: Literal["body", "socket"]
    """``body``: ``MessageBody()`` (the frame's data, or one key of it); ``socket``:
    ``ConnectedSocket()``."""
    key: str | None = None
    """For ``MessageBody("key")``: the key of the data it reads."""
    annotation: Any = None
    """The type hint, or ``None`` when there is none."""


@dataclass(frozen=True, slots=True)
class HandlerDescription:
    """What a handler declares, for readers such as the AsyncAPI generator.

    Built once from the signature beside the fast invoker, so nobody needs to inspect
    handlers again.
    """

    event: str
    qualname: str
    parameters: tuple[Parameter, ...]
    returns: Any = None
    """The return annotation, or ``None`` when there is none."""
    guards: tuple[str, ...] = ()
    """Names of the guard classes that run before the handler."""
    doc: str | None = None
    """The handler's docstring."""
    streams: bool = False
    """A generator handler: it answers with stream items, then one end."""
    item: Any = None
    """A stream's item type, from the return annotation (``AsyncIterator[Chunk]``,
    ``Iterator[X]``, ``AsyncGenerator[X, None]``...); ``None`` when unannotated."""

    @property
    def body(self) -> Parameter | None:
        """The parameter receiving the whole data (``MessageBody()``), if any."""
        for parameter in self.parameters:
            if parameter.source == "body" and parameter.key is None:
                return parameter
        return None

    @property
    def body_fields(self) -> dict[str, Any]:
        """``key -> annotation`` of the ``MessageBody("key")`` parameters."""
        return {
            parameter.key: parameter.annotation
            for parameter in self.parameters
            if parameter.source == "body" and parameter.key is not None
        }


@dataclass(frozen=True, slots=True)
class Handler:
    """A gateway method ready to call: ``invoke(client, data)`` returns its result
    (an awaitable for async handlers, see ``is_async``). A ``def`` method's ``invoke``
    runs it in anyio's worker thread pool and returns an awaitable: ``is_async`` is true
    and ``threaded`` says so."""

    event: str
    qualname: str
    func: Callable[..., Any]
    is_async: bool
    invoke: Callable[[Any, Any], Any]
    guards: tuple[Guard, ...] = ()
    filters: tuple[ExceptionFilter, ...] = ()
    interceptors: tuple[Interceptor, ...] = ()
    description: HandlerDescription | None = field(default=None, compare=False)
    threaded: bool = False
    """True for a ``def`` method: it runs in anyio's worker thread pool."""
    streams: bool = False
    """True for a generator (``async def`` with ``yield``, or ``def`` with ``yield``):
    ``invoke`` returns the generator, and the runtime sends its items as a stream."""


def _socket(client: Any, data: Any) -> Any:
    return client


def _body(client: Any, data: Any) -> Any:
    return data


def _keyed(key: str) -> Extractor:
    def extract(client: Any, data: Any) -> Any:
        return data.get(key) if type(data) is dict else None

    return extract


def _validated(
    read: Extractor, adapter: TypeAdapter[Any], event: str, key: str | None = None
) -> Extractor:
    validate = adapter.validate_python
    message = INVALID_PAYLOAD.format(event=event)
    within = () if key is None else (key,)

    def extract(client: Any, data: Any) -> Any:
        try:
            return validate(read(client, data))
        except ValidationError as exc:
            raise PayloadValidationError(message, **bounded_errors(exc, within)) from None

    return extract


def _loc_item(item: Any) -> Any:
    if type(item) is str and len(item) > MAX_LOC_KEY:
        return item[:MAX_LOC_KEY] + "..."
    return item


def bounded_errors(exc: ValidationError, within: tuple[str, ...] = ()) -> dict[str, Any]:
    """The details of a validation failure, small whatever the input.

    At most ``MAX_VALIDATION_ERRORS`` errors, each with ``type``, ``loc`` (cut to a few
    short items) and ``msg`` only: the client's input is never echoed back, so a large
    invalid payload cannot be amplified into a larger reply. ``within`` is the location
    of the validated value in the frame's data (``("room",)`` for ``MessageBody("room")``):
    each ``loc`` starts with it.
    """
    total = exc.error_count()
    errors = [
        {
            "type": error["type"],
            "loc": [_loc_item(item) for item in (*within, *error["loc"])[:MAX_LOC_ITEMS]],
            "msg": error["msg"][:200],
        }
        for error in exc.errors(include_url=False, include_context=False, include_input=False)[
            :MAX_VALIDATION_ERRORS
        ]
    ]
    details: dict[str, Any] = {"errors": errors}
    if total > len(errors):
        details["error_count"] = total
    return details


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


NO_LOOP_IN_THREAD = (
    "{qualname} is a def handler: it runs in a worker thread, which has no event loop; "
    "write it as async def to use the loop"
)
_NO_LOOP = (
    "no running event loop",
    "no current event loop",
    "not currently running on any asynchronous event loop",
    "must be called from async context",
)
"""What asyncio, anyio and trio say when called from a thread without a loop."""


def _in_thread(qualname: str, invoke: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``invoke`` run in anyio's worker thread pool (extractors included). What the
    handler returns is awaited on the loop when it is awaitable."""
    run_sync = anyio.to_thread.run_sync

    async def threaded(client: Any, data: Any) -> Any:
        try:
            result = await run_sync(invoke, client, data)
        except RuntimeError as exc:
            if any(words in str(exc).lower() for words in _NO_LOOP):
                raise RuntimeError(NO_LOOP_IN_THREAD.format(qualname=qualname)) from exc
            raise
        if inspect.isawaitable(result):
            result = await result
        return result

    return threaded


def _item_type(returns: Any) -> Any:
    """``X`` of a generator's ``AsyncIterator[X]``, ``Iterator[X]``, ``AsyncGenerator[X,
    ...]`` or ``Generator[X, ...]`` return annotation; ``None`` otherwise."""
    origin = typing.get_origin(returns)
    if origin in (
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
        collections.abc.Iterator,
        collections.abc.Iterable,
        collections.abc.Generator,
    ):
        arguments = typing.get_args(returns)
        return arguments[0] if arguments else None
    return None


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
    return _validated(read, adapter, event, marker.key)


def _parameter(name: str, param: inspect.Parameter, hint: Any) -> Parameter:
    marker = param.default
    annotation = None if hint is inspect.Parameter.empty else hint
    if isinstance(marker, ConnectedSocket):
        return Parameter(name, "socket", annotation=annotation)
    key = marker.key if isinstance(marker, MessageBody) else None
    return Parameter(name, "body", key, annotation)


def compile_handler(
    event: str,
    owner: str,
    func: Callable[..., Any],
    guards: tuple[Guard, ...] = (),
    filters: tuple[ExceptionFilter, ...] = (),
    interceptors: tuple[Interceptor, ...] = (),
) -> Handler:
    """Prepare ``func`` (a bound gateway method) for dispatch of ``event``."""
    qualname = f"{owner}.{getattr(func, '__name__', event)}"
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    extractors: list[tuple[str, Extractor]] = []
    parameters: list[Parameter] = []
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
            parameters.append(_parameter(name, param, hint))
            positional = positional and param.kind != param.KEYWORD_ONLY
        else:
            positional = False  # a parameter left to its default: pass the others by name
    returns = hints.get("return", inspect.signature(func).return_annotation)
    generator = inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)
    description = HandlerDescription(
        event=event,
        qualname=qualname,
        parameters=tuple(parameters),
        returns=None if returns is inspect.Signature.empty or generator else returns,
        guards=tuple(type(guard).__name__ for guard in guards),
        doc=inspect.getdoc(func),
        streams=generator,
        item=_item_type(returns) if generator else None,
    )
    invoke = _invoker(func, extractors, positional)
    # A generator function's call runs none of its body: it is invoked on the loop (the
    # extractors validate the payload there, before the first item), and a ``def``
    # generator's items are then each taken in the worker thread pool by the runtime.
    streams = inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func)
    threaded = not streams and not inspect.iscoroutinefunction(func)
    return Handler(
        event=event,
        qualname=qualname,
        func=func,
        is_async=not streams,
        invoke=_in_thread(qualname, invoke) if threaded else invoke,
        threaded=threaded,
        streams=streams,
        guards=guards,
        filters=filters,
        interceptors=interceptors,
        description=description,
    )
