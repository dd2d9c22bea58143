"""Exception filters: ``@UseFilters`` on gateways and handlers, ``@Catch`` on filters.

A filter decides what a client sees when a handler raises. ``catch(exception, host)``
(sync or async) gets the exception and the ``ExecutionContext``; whatever it returns
is sent like a handler's return value (``None`` sends nothing), and it may send or
``close()`` through ``host.switch_to_ws().get_client()`` itself. Handler filters are
tried before gateway filters; the first whose ``@Catch`` types match handles it.
An exception no filter catches gets the default treatment (``BaseWsExceptionFilter``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gatewayasgi.gateway.decorators import attach

if TYPE_CHECKING:
    from gatewayasgi.gateway.guards import ExecutionContext

T = TypeVar("T")
FILTERS_ATTR = "__ws_filters__"
CATCH_ATTR = "__ws_catch__"


def Catch(*exceptions: type[BaseException]) -> Callable[[T], T]:
    """Limit a filter class to these exception types (none given: every exception)."""

    def decorate(cls: T) -> T:
        setattr(cls, CATCH_ATTR, tuple(exceptions) or (Exception,))
        return cls

    return decorate


class ExceptionFilter(Protocol):
    """Anything with ``catch(exception, context)`` (sync or async)."""

    def catch(self, exception: BaseException, context: ExecutionContext) -> Any: ...


def catches(filter_: ExceptionFilter) -> tuple[type[BaseException], ...]:
    """The exception types a filter instance handles."""
    return tuple(getattr(filter_, CATCH_ATTR, (Exception,)))


class BaseWsExceptionFilter:
    """Subclass and override ``catch``. The base sends the default error frame:
    ``WsException`` -> its message (connection stays open); anything else ->
    ``"Internal server error"`` and close 1011 (the runtime logs the traceback)."""

    def catch(self, exception: BaseException, context: ExecutionContext) -> Any:
        raise exception


def UseFilters(*filters: Any) -> Callable[[T], T]:
    """Attach exception filters (classes, built with DI, or instances)."""
    if not filters:
        raise TypeError("UseFilters needs at least one filter")

    def decorate(target: T) -> T:
        return attach(target, FILTERS_ATTR, filters)

    return decorate
