"""Backplane envelope: how one node tells the others to deliver a frame.

Pure and pickle-free. A broker message is ``header + b"\\n" + frame`` where the header is
a small JSON object and the frame is the already-encoded text frame (UTF-8), so a
receiving node forwards the very bytes it got, without decoding or re-encoding the
payload. Sizes are checked before anything is parsed.

Header keys:
  ``n``   node id of the sender (a node ignores its own echoes)
  ``k``   kind: ``"all"`` (every client of the namespace), ``"to"`` (rooms and/or clients)
  ``r``   room names to deliver to (their members)
  ``c``   client ids to deliver to
  ``xr``  rooms whose members are skipped
  ``xc``  client ids that are skipped
  ``t``   trace context of the emit, when an instrument traces it: a small object of
          strings (``traceparent``...), bounded by ``protocol.carrier``; a receiving
          node ignores one out of bounds. Absent otherwise: without tracing the
          envelope is the same bytes as before.
  ``o``   order number, on an order published on several channels (interest routing,
          ``backplane.routing``): a node delivers the first copy of ``(n, o)`` it gets
          and drops the others. Absent on an order published once.

Rooms and clients travel in separate fields: a receiving node never looks a room name
up as a client id or the other way round, so a room named like a client cannot pull
that client's messages from another node either.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gatewayasgi.protocol.carrier import Carrier, bounded, fitted
from gatewayasgi.protocol.targets import NOBODY, Targets

MAX_HEADER_BYTES = 64 * 1024
KIND_ALL = "all"
KIND_TO = "to"
CHANNEL_PREFIX = "gatewayasgi:"


class EnvelopeError(ValueError):
    """A backplane message that is malformed or too large."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A delivery order for every node: which clients get ``frame``."""

    node: str
    frame: str
    targets: Targets = NOBODY
    exclude: Targets = NOBODY
    trace: Carrier | None = None
    """Propagation fields of the emit (``Instrumentation.wrap_publish``)."""
    order: int | None = None
    """The sender's number for an order published on several channels (``routing``)."""

    @property
    def kind(self) -> str:
        """``"to"`` when addressed to rooms or clients, else ``"all"``."""
        return KIND_TO if self.targets else KIND_ALL


def channel_for(namespace: str) -> str:
    """The broker channel that carries deliveries for one gateway namespace."""
    return CHANNEL_PREFIX + namespace


def pack(envelope: Envelope) -> bytes:
    """Serialise an envelope for ``Broker.publish``."""
    header: dict[str, object] = {"n": envelope.node, "k": envelope.kind}
    for key, names in (
        ("r", envelope.targets.rooms),
        ("c", envelope.targets.clients),
        ("xr", envelope.exclude.rooms),
        ("xc", envelope.exclude.clients),
    ):
        if names:
            header[key] = list(names)
    if envelope.order is not None:
        header["o"] = envelope.order
    if envelope.trace:
        trace = fitted(envelope.trace)
        if trace is not None:
            header["t"] = trace
    return orjson.dumps(header) + b"\n" + envelope.frame.encode()


def _strings(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list or not all(type(item) is str for item in value):
        raise EnvelopeError(f"envelope field {key!r} must be a list of strings")
    return tuple(value)


def unpack(message: bytes, max_size: int) -> Envelope:
    """Parse a broker message; raises ``EnvelopeError`` when it is not a valid envelope."""
    if len(message) > max_size:
        raise EnvelopeError(f"envelope of {len(message)} bytes exceeds {max_size}")
    head, sep, frame = message.partition(b"\n")
    if not sep or len(head) > MAX_HEADER_BYTES:
        raise EnvelopeError("envelope has no header line")
    try:
        header = orjson.loads(head)
        text = frame.decode()
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise EnvelopeError("envelope is not JSON header + UTF-8 frame") from None
    if type(header) is not dict:
        raise EnvelopeError("envelope header must be an object")
    node, kind = header.get("n"), header.get("k")
    if type(node) is not str or kind not in (KIND_ALL, KIND_TO):
        raise EnvelopeError("envelope header needs a node id and a known kind")
    targets = Targets(_strings(header.get("r"), "r"), _strings(header.get("c"), "c"))
    if kind == KIND_TO and not targets:
        raise EnvelopeError("a 'to' envelope needs rooms or clients")
    if kind == KIND_ALL and targets:
        raise EnvelopeError("an 'all' envelope cannot name rooms or clients")
    exclude = Targets(_strings(header.get("xr"), "xr"), _strings(header.get("xc"), "xc"))
    trace = header.get("t")
    order = header.get("o")
    if order is not None and type(order) is not int:
        raise EnvelopeError("envelope field 'o' must be an integer")
    return Envelope(node, text, targets, exclude, None if trace is None else bounded(trace), order)
