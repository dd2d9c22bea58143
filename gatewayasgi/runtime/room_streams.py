"""Room streams: one stream published to every member of a room (``server.to(room).stream``).

Each item goes out as an emit does (``Delivery.emit``: encoded once per protocol, kept in
the history with an offset on gateways with recovery, fanned out to local members without
waiting on any of them, then carried to the other workers by the backplane), as a stream
item frame ``{"event", "data", "stream": <id>, "seq": n}``; the stream ends with one end
frame ``{"event", "data", "stream": <id>, "end": true}`` (plus ``"cancelled": true`` or an
``"error"`` member). Nobody requested it, so no frame carries a request ``id``. Because
items travel exactly as emits do, a member that resumes its session gets the items it
missed once and in order, and members on other workers get them through the broker.

The pace is the source's (and the broker's): a member whose outbox is full gets the
gateway's overflow policy, as for any emit, and never slows the others.

Failures, decided here so that nothing surprises the caller's task group:

- the source raises (or yields an item with no wire form): the stream ends with an end
  frame carrying ``"error": {"message", ...}`` (a ``WsException``'s message and extras;
  ``Internal server error`` for anything else, which is logged), bounded like an error
  frame; ``stream()`` returns normally, with the exception in ``RoomStream.error``;
- the caller is cancelled: the source is closed, the end frame marked ``cancelled`` is
  published (shielded, bounded), and the cancellation goes on;
- the end frame itself cannot be published (the broker is unreachable): that exception
  is raised, as ``emit`` raises it, the source closed first.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from gatewayasgi._types import JSONValue
from gatewayasgi.exceptions import WsException
from gatewayasgi.gateway.streams import StreamEnd
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.targets import Targets
from gatewayasgi.runtime.delivery import Emission
from gatewayasgi.runtime.streams import close_source, threaded_items

if TYPE_CHECKING:
    from gatewayasgi.runtime.delivery import Delivery

logger = logging.getLogger("gatewayasgi")

MAX_STREAM_ID = 128
"""Longest stream id a caller may choose (ids travel on every item)."""
CHECKPOINT_EVERY = 16
"""Items published between two checkpoints (a yield to the event loop), whatever the source."""
END_TIMEOUT = 5.0
"""Seconds closing the source and publishing the end may take once the caller is cancelled."""


@dataclass(slots=True)
class RoomStream:
    """What ``BroadcastOperator.stream`` published: the outcome, never raised."""

    id: str
    """The stream id every frame of it carries (``"stream"``)."""
    items: int = 0
    """Items published (the last ``seq``)."""
    cancelled: bool = False
    error: BaseException | None = None
    """The exception that ended the stream with an error end frame (``None``: it ended)."""


def new_stream_id() -> str:
    """A short random stream id (12 URL-safe characters)."""
    return secrets.token_urlsafe(9)


def check_stream_id(stream_id: object) -> str:
    if type(stream_id) is not str or not stream_id or len(stream_id) > MAX_STREAM_ID:
        raise ValueError(
            f"stream_id must be a non-empty string of at most {MAX_STREAM_ID} characters"
        )
    return stream_id


def error_member(exc: BaseException) -> dict[str, JSONValue]:
    """The end frame's ``error``: bounded as an error frame is (``codec.MAX_ERROR_FRAME``)."""
    if isinstance(exc, WsException):
        message, details = exc.message, dict(exc.data or {})
    else:
        message, details = codec.INTERNAL_ERROR, {}
    error: dict[str, JSONValue] = {**details, "message": message}
    try:
        fits = len(codec.dumps(error)) <= codec.MAX_ERROR_FRAME
    except TypeError:  # extras with no wire form
        fits = False
    if not fits:
        error = {"message": message[: codec.MAX_ERROR_MESSAGE], "truncated": True}
    return error


def _items(source: Any) -> Any:
    """An async iterator over ``source``: an async iterable as it is; an iterator (a
    ``def`` generator) taken item by item in the worker thread pool (one that blocks
    holds its stream, not the event loop); any other iterable (a list) directly."""
    if hasattr(source, "__aiter__"):
        return source.__aiter__()
    if isinstance(source, Iterator):
        return threaded_items(source)
    return _listed(iter(source))


async def _listed(items: Iterator[Any]) -> Any:
    for item in items:
        yield item


async def publish_stream(
    delivery: Delivery,
    event: str,
    source: Any,
    targets: Targets,
    exclude: Targets,
    stream_id: str,
) -> RoomStream:
    """Publish ``source``'s items to ``targets`` as the stream ``stream_id``; see the
    module docstring."""
    outcome = RoomStream(stream_id)
    items = _items(source)
    name = getattr(source, "__qualname__", type(source).__qualname__)
    end: dict[str, JSONValue] = {"stream": stream_id, "end": True}
    value: Any = None
    try:
        async for item in items:
            if type(item) is StreamEnd:
                value = item.value
                break
            members: dict[str, JSONValue] = {"stream": stream_id, "seq": outcome.items + 1}
            await delivery.emit(Emission(event, item, targets, exclude, members=members))
            outcome.items += 1
            if not outcome.items % CHECKPOINT_EVERY:
                # A source that never awaits (a list) still lets the loop send its items.
                await anyio.lowlevel.checkpoint()
    except anyio.get_cancelled_exc_class():
        outcome.cancelled = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(END_TIMEOUT):
            await close_source(items, source, name)
            end["cancelled"] = True
            try:
                await delivery.emit(Emission(event, None, targets, exclude, members=end))
            except Exception as exc:  # the cancellation goes on, not this
                logger.error("room stream %s: its end cannot be sent", name, exc_info=exc)
        raise
    except Exception as exc:
        if not isinstance(exc, WsException):
            logger.error("room stream %s of event %r failed", name, event[:200], exc_info=exc)
        outcome.error = exc
        end["error"] = error_member(exc)
        value = None
    finally:
        if not outcome.cancelled:
            with anyio.CancelScope(shield=True), anyio.move_on_after(END_TIMEOUT):
                await close_source(items, source, name)
    try:
        await delivery.emit(Emission(event, value, targets, exclude, members=end))
    except Exception as exc:
        if outcome.error is not None or not isinstance(exc, (TypeError, ValueError)):
            raise
        # A final value with no wire form: the end says so instead.
        logger.error("room stream %s: its end cannot be sent", name, exc_info=exc)
        outcome.error = exc
        end["error"] = error_member(exc)
        await delivery.emit(Emission(event, None, targets, exclude, members=end))
    return outcome
