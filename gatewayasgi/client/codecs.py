"""The wire protocols a client speaks: JSON (text frames) or MessagePack (binary).

``GatewayClient(url, protocol="msgpack")`` offers the ``gatewayasgi.msgpack``
subprotocol and sends and reads MessagePack maps: the same frames as JSON, with
``bytes`` as ``bin`` both ways. A server that does not select the subprotocol does not
speak it (``GatewayMiddleware(..., protocols=[MessagePack()])``): the attempt fails for
good. Needs ``pip install "gatewayasgi[client,msgpack]"``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from gatewayasgi.client import frames
from gatewayasgi.client.frames import ACK_EVENT, FrameId, InboundFrame

ProtocolName: TypeAlias = Literal["json", "msgpack"]
Encoded: TypeAlias = "str | bytes"

MSGPACK_SUBPROTOCOL = "gatewayasgi.msgpack"


class Codec:
    """JSON frames (``frames``): ``str`` out, ``str`` or ``bytes`` in."""

    name: ProtocolName = "json"
    subprotocol: str | None = None
    """Offered in every handshake, and required in the server's answer."""
    end_frame: Encoded = frames.END_FRAME

    def decode(self, raw: str | bytes) -> InboundFrame | None:
        return frames.decode(raw)

    def encode_event(self, event: str, data: Any, frame_id: FrameId | None = None) -> Encoded:
        return frames.encode_event(event, data, frame_id)

    def encode_frame(self, frame: dict[str, Any]) -> Encoded:
        """Any frame map (a keyed stream request, a ``$attach``)."""
        return frames.encode_frame(frame)

    def encode_ack_result(self, ack: int, result: Any) -> Encoded:
        return frames.encode_ack_result(ack, result)

    def encode_ack_error(self, ack: int, message: str) -> Encoded:
        return frames.encode_ack_error(ack, message)


class MessagePackCodec(Codec):
    """The same frames as MessagePack maps, each one binary message."""

    name: ProtocolName = "msgpack"
    subprotocol = MSGPACK_SUBPROTOCOL

    def __init__(self) -> None:
        try:
            import ormsgpack
        except ImportError as exc:
            raise ImportError(
                'protocol="msgpack" needs ormsgpack: pip install "gatewayasgi[client,msgpack]"'
            ) from exc
        self._ormsgpack = ormsgpack
        self.end_frame = self._pack({"event": "$end"})

    def decode(self, raw: str | bytes) -> InboundFrame | None:
        if not isinstance(raw, bytes):
            return None
        msgpack = self._ormsgpack
        try:
            # The server writes non-string keys as they are (an integer key stays one).
            value = msgpack.unpackb(raw, option=msgpack.OPT_NON_STR_KEYS)
        except msgpack.MsgpackDecodeError:
            return None
        return frames.frame_of(value)

    def encode_event(self, event: str, data: Any, frame_id: FrameId | None = None) -> bytes:
        frame: dict[str, Any] = {"event": event, "data": data}
        if frame_id is not None:
            frame["id"] = frame_id
        return self._pack(frame)

    def encode_frame(self, frame: dict[str, Any]) -> bytes:
        return self._pack(frame)

    def encode_ack_result(self, ack: int, result: Any) -> bytes:
        try:
            return self._pack({"event": ACK_EVENT, "id": ack, "data": result})
        except TypeError as exc:
            return self.encode_ack_error(ack, f"Answer is not MessagePack-serialisable: {exc}")

    def encode_ack_error(self, ack: int, message: str) -> bytes:
        return self._pack({"event": ACK_EVENT, "id": ack, "error": {"message": message}})

    def _pack(self, frame: dict[str, Any]) -> bytes:
        try:
            packed: bytes = self._ormsgpack.packb(frame)
        except TypeError as exc:  # MsgpackEncodeError is one; say what failed
            raise TypeError(
                f"frame {frame.get('event')!r} is not MessagePack-serialisable: {exc}"
            ) from exc
        return packed


JSON_CODEC = Codec()


def codec_for(protocol: str) -> Codec:
    """The codec of ``protocol`` (``"json"`` or ``"msgpack"``)."""
    if protocol == "json":
        return JSON_CODEC
    if protocol == "msgpack":
        return MessagePackCodec()
    raise ValueError(f'protocol must be "json" or "msgpack", got {protocol!r}')
