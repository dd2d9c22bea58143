"""Interceptors: ``@UseInterceptors`` wraps handlers (timing, logging, response mapping).

``intercept(context, next)`` (async) runs around the handler: ``await next.handle()``
runs the rest of the chain and returns the handler's result, which the interceptor
may map before returning it. Gateway interceptors wrap handler interceptors; each
list runs outermost-first in the order written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gatewayasgi.gateway.decorators import attach

if TYPE_CHECKING:
    from gatewayasgi.gateway.guards import ExecutionContext

T = TypeVar("T")
INTERCEPTORS_ATTR = "__ws_interceptors__"


class CallHandler:
    """The rest of the chain: ``await next.handle()`` returns the handler's result."""

    __slots__ = ("_call",)

    def __init__(self, call: Callable[[], Awaitable[Any]]) -> None:
        self._call = call

    def handle(self) -> Awaitable[Any]:
        """Run the next interceptor (or the handler) and return its result."""
        return self._call()


class Interceptor(Protocol):
    """Anything with ``async intercept(context, next)``."""

    def intercept(self, context: ExecutionContext, next: CallHandler) -> Awaitable[Any]: ...


class NestInterceptor:
    """Subclass and implement ``async def intercept(self, context, next)``."""

    async def intercept(self, context: ExecutionContext, next: CallHandler) -> Any:
        return await next.handle()


def UseInterceptors(*interceptors: Any) -> Callable[[T], T]:
    """Attach interceptors (classes, built with DI, or instances)."""
    if not interceptors:
        raise TypeError("UseInterceptors needs at least one interceptor")

    def decorate(target: T) -> T:
        return attach(target, INTERCEPTORS_ATTR, interceptors)

    return decorate
