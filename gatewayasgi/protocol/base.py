"""The wire-protocol seam: how frames look on the wire, as one pure object.

The runtime never calls ``codec`` functions directly: a connection's session decodes
through its ``WireProtocol`` and every reply, error and emit is encoded by it. The JSON
``{"event", "data", "id"}`` protocol (``protocol.json``) is the first implementation; a
second one (Socket.IO) is an addition beside it, not an edit of the session.

Implementations are pure: no I/O, no awaits. ``encode_*`` return the payload of one
ASGI ``websocket.send`` (``str`` for a text frame, ``bytes`` for a binary one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from gatewayasgi._types import JSONValue, Message
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.codec import Frame

Payload = str | bytes
"""One encoded frame: ``str`` goes out as a text frame, ``bytes`` as a binary one."""


class WireProtocol(ABC):
    """Decodes inbound frames and encodes replies, errors and emits for one protocol."""

    name: str
    """Short identifier (``"json"``), used in logs and to cache one encoding per protocol."""

    subprotocol: str | None = None
    """The WebSocket subprotocol a client offers to speak this protocol (selected in the
    accept), for protocols served beside JSON on the same path: ``GatewayMiddleware(...,
    protocols=[...])`` routes a client that offers it to this protocol."""

    rotates_token: bool = True
    """Whether a resumed session gets a new token in its ``$session`` frame (the old one
    stops working). Socket.IO's ``pid`` stays the same across resumes: socket.io-client
    tells the app ``recovered`` only when it did not change."""

    @abstractmethod
    def decode(self, raw: str | bytes) -> Frame:
        """Parse one inbound frame; raise ``FrameError`` with the message the client sees."""

    @abstractmethod
    def encode_reply(self, event: str, result: Any, frame_id: str | int | None) -> Payload | None:
        """A handler's return value as the reply to a frame of ``event`` (``None``: the
        protocol sends nothing for it)."""

    @abstractmethod
    def encode_error(
        self, message: str, frame_id: str | int | None = None, details: dict[str, Any] | None = None
    ) -> Payload:
        """An error frame; implementations bound its size whatever the details."""

    @abstractmethod
    def encode_emit(self, event: str, data: JSONValue) -> Payload:
        """A server-initiated frame (emit, broadcast, heartbeat)."""

    def encode_emit_members(
        self, event: str, data: JSONValue, members: Mapping[str, JSONValue]
    ) -> Payload:
        """An emit frame with more members after ``data`` (a room stream's ``stream``,
        ``seq``, ``end``: ``runtime.room_streams``). A protocol whose frames have no place
        for them sends the ordinary emit (``encode_emit``): this default."""
        return self.encode_emit(event, data)

    def encode_call(self, event: str, data: JSONValue, number: int) -> Payload:
        """A server -> client call (``client.call``) the client answers with ``$ack``."""
        return codec.dumps({"event": event, "data": data, "ack": number}).decode()

    streams: bool = False
    """Whether this protocol carries streams (``encode_stream_item`` / ``_end``)."""

    emit_streams: bool = False
    """Whether its stream frames are emit frames with more members (``id``, ``seq``,
    ``end``, ``cancelled``: ``encode_emit_members``), so that a session's stream can go
    through the delivery path like any emit (history, offsets, replay, the broker)."""

    def encode_stream_item(
        self, event: str, item: Any, frame_id: str | int, sequence: int
    ) -> Payload:
        """One item of the stream that answers request ``frame_id`` (numbered from 1)."""
        raise NotImplementedError(f"{self.name} carries no streams")

    def encode_stream_end(
        self, event: str, value: Any, frame_id: str | int, *, cancelled: bool = False
    ) -> Payload:
        """The end of the stream that answers request ``frame_id``, with its final value
        (``StreamEnd``), or marked ``cancelled``."""
        raise NotImplementedError(f"{self.name} carries no streams")

    def encode_stream_start(self, event: str, frame_id: str | int) -> Payload | None:
        """A frame announcing a stream before its first item (``None``: none is sent)."""
        return None

    def encode_stream_missing(self, event: str, frame_id: str | int) -> Payload:
        """The answer to a ``$attach`` whose key names no stream."""
        raise NotImplementedError(f"{self.name} carries no streams")

    def answer_error(self, raw: str | bytes) -> JSONValue:
        """The error a client's answer to a call carries (``None``: it answered data)."""
        return codec.answer_error(raw)

    def carrier(self, raw: str | bytes) -> Mapping[str, str] | None:
        """The propagation fields a frame carries for tracing (its ``trace`` member in
        the JSON protocol), bounded by ``protocol.carrier``; ``None`` when it has none.
        Asked only when an instrument wraps handlers (``Instrumentation.wrap_handler``)."""
        return None

    def transcode(self, frame: Payload) -> Payload:
        """This protocol's form of an emit frame of the canonical (JSON) protocol, with
        its offset if it has one: frames from the history and from other processes are
        kept and carried in the canonical form."""
        return frame

    def with_offset(self, frame: Payload, offset: str) -> Payload:
        """``frame`` (from ``encode_emit``) carrying its history position ``offset``.

        Offsets are made by a history (digits and ``-``), never by a client.
        """
        raise NotImplementedError(f"{self.name} frames cannot carry an offset")

    @staticmethod
    def message(payload: Payload) -> Message:
        """The ASGI ``websocket.send`` message carrying ``payload``."""
        if type(payload) is str:
            return {"type": "websocket.send", "text": payload}
        return {"type": "websocket.send", "bytes": payload}
