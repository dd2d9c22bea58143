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
from typing import Any

from gatewayasgi._types import JSONValue, Message
from gatewayasgi.protocol.codec import Frame

Payload = str | bytes
"""One encoded frame: ``str`` goes out as a text frame, ``bytes`` as a binary one."""


class WireProtocol(ABC):
    """Decodes inbound frames and encodes replies, errors and emits for one protocol."""

    name: str
    """Short identifier (``"json"``), used in logs and to cache one encoding per protocol."""

    @abstractmethod
    def decode(self, raw: str | bytes) -> Frame:
        """Parse one inbound frame; raise ``FrameError`` with the message the client sees."""

    @abstractmethod
    def encode_reply(self, event: str, result: Any, frame_id: str | int | None) -> Payload:
        """A handler's return value as the reply to a frame of ``event``."""

    @abstractmethod
    def encode_error(
        self, message: str, frame_id: str | int | None = None, details: dict[str, Any] | None = None
    ) -> Payload:
        """An error frame; implementations bound its size whatever the details."""

    @abstractmethod
    def encode_emit(self, event: str, data: JSONValue) -> Payload:
        """A server-initiated frame (emit, broadcast, heartbeat)."""

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
