"""Trace-context carriers: the small ``{name: value}`` maps that propagation fields
(W3C ``traceparent`` and ``tracestate``, ``baggage``) travel in.

A carrier reaches the gateway from outside twice: as a frame's ``trace`` member (written
by a client) and in a backplane envelope's header (written by another node). Both are
read through ``bounded``, so neither can make an instrument hold or forward more than
``MAX_CARRIER_BYTES``: a carrier that is not an object of strings, or that is too large,
is ignored as a whole (the frame or the delivery itself goes on). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_CARRIER_FIELDS = 8
"""Most fields a carrier holds (``traceparent``, ``tracestate``, ``baggage``, ...)."""

MAX_CARRIER_BYTES = 1024
"""Largest carrier: the names' and values' characters added up (a ``traceparent`` is 55
characters; W3C advises propagating a ``tracestate`` of up to 512)."""

MAX_FIELD_NAME = 64
"""Longest field name."""

Carrier = dict[str, str]
"""Propagation fields by (lower-case) name."""


def bounded(value: Any) -> Carrier | None:
    """``value`` when it is a carrier within the bounds above, else ``None``."""
    if type(value) is not dict or not value or len(value) > MAX_CARRIER_FIELDS:
        return None
    size = 0
    for name, field in value.items():
        if type(name) is not str or type(field) is not str or len(name) > MAX_FIELD_NAME:
            return None
        size += len(name) + len(field)
    if size > MAX_CARRIER_BYTES:
        return None
    return value


def fitted(fields: Mapping[str, str]) -> Carrier | None:
    """The fields of ``fields`` that fit the bounds, in their order (an injector writes
    ``traceparent`` first), or ``None`` when none does: what a node sends on."""
    kept: Carrier = {}
    size = 0
    for name, field in fields.items():
        if len(kept) == MAX_CARRIER_FIELDS:
            break
        if type(name) is not str or type(field) is not str or len(name) > MAX_FIELD_NAME:
            continue
        if size + len(name) + len(field) > MAX_CARRIER_BYTES:
            continue
        kept[name] = field
        size += len(name) + len(field)
    return kept or None
