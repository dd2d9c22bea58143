"""The JSON wire protocol: ``{"event", "data", "id"?}`` text frames (see the README)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatewayasgi._types import JSONValue
from gatewayasgi.protocol import codec
from gatewayasgi.protocol.base import WireProtocol
from gatewayasgi.protocol.codec import Frame


class JsonProtocol(WireProtocol):
    """orjson framing; a frame sent to many clients is one ``str`` shared by all."""

    name = "json"

    def decode(self, raw: str | bytes) -> Frame:
        return codec.decode(raw)

    def encode_reply(self, event: str, result: Any, frame_id: str | int | None) -> str:
        # A ready-made ``{"event", "data"}`` dict is sent as it is (plus the id).
        if type(result) is dict and "event" in result and "data" in result:
            return codec.encode_message(result, frame_id)
        return codec.encode(event, result, frame_id)

    def encode_error(
        self, message: str, frame_id: str | int | None = None, details: dict[str, Any] | None = None
    ) -> str:
        return codec.encode_error(message, frame_id, **(details or {}))

    def encode_emit(self, event: str, data: JSONValue) -> str:
        return codec.encode(event, data)

    def encode_emit_members(
        self, event: str, data: JSONValue, members: Mapping[str, JSONValue]
    ) -> str:
        return codec.dumps({"event": event, "data": data, **members}).decode()

    streams = True
    emit_streams = True

    def encode_stream_item(self, event: str, item: Any, frame_id: str | int, sequence: int) -> str:
        return codec.encode_stream_item(event, item, frame_id, sequence)

    def encode_stream_end(
        self, event: str, value: Any, frame_id: str | int, *, cancelled: bool = False
    ) -> str:
        return codec.encode_stream_end(event, value, frame_id, cancelled)

    def encode_stream_missing(self, event: str, frame_id: str | int) -> str:
        return codec.encode_stream_missing(frame_id)

    def carrier(self, raw: str | bytes) -> dict[str, str] | None:
        return codec.trace_carrier(raw)

    def with_offset(self, frame: str | bytes, offset: str) -> str:
        # ``{"event":..,"data":..}`` -> ``{"event":..,"data":..,"offset":"<offset>"}``:
        # one concatenation per process, whatever the number of recipients.
        text = frame if isinstance(frame, str) else frame.decode()
        return f'{text[:-1]},"offset":"{offset}"}}'


JSON = JsonProtocol()
"""The default protocol instance (stateless, shared)."""
