"""The protocol's own messages (error frames, ``$session``) and the frame envelope.

Every message's payload is the whole JSON frame, ``{"event", "data", "id"?}``, so the
document describes exactly what crosses the socket; the handler's type is ``data``.
"""

from __future__ import annotations

from typing import Any

FRAME_ID: dict[str, Any] = {
    "description": "The acknowledgement id: a reply to a frame that carried one repeats it.",
    "type": ["string", "integer"],
    "maxLength": 128,
}
CORRELATION = {"location": "$message.payload#/id"}
OFFSET: dict[str, Any] = {
    "description": "The frame's position in the session history (opaque): the client keeps "
    "the last one it received and offers it when it resumes.",
    "type": "string",
}
CLIENT_ID_PATTERN = "^c_[0-9a-f]{32}$"


def envelope(
    event: Any, data: dict[str, Any], *, data_required: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The schema of a frame: ``event`` (a schema), ``data``, and the optional ``id``."""
    properties: dict[str, Any] = {"event": event, "data": data, "id": FRAME_ID, **(extra or {})}
    return {
        "type": "object",
        "properties": properties,
        "required": ["event", "data"] if data_required else ["event"],
    }


def event_name(event: str) -> dict[str, Any]:
    """The schema of an ``event`` member that must equal ``event``."""
    return {"type": "string", "const": event}


ERROR_DATA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "errors": {
            "description": "A validation failure's errors (at most 10; the input is never echoed).",
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
                "required": ["type", "loc", "msg"],
            },
        },
        "error_count": {
            "description": "How many validation errors there were, when more than listed.",
            "type": "integer",
        },
        "truncated": {
            "description": "The frame was cut to its 4 KiB bound.",
            "type": "boolean",
        },
    },
    "required": ["message"],
    "additionalProperties": True,
}

ERROR_MESSAGE: dict[str, Any] = {
    "name": "error",
    "title": "Error frame",
    "summary": "A frame the server could not handle, or a handler's WsException.",
    "description": "Sent in reply to a frame (with its `id`) or on its own (rate limit, invalid "
    "JSON). A guard denial sends it and closes the connection with 1008.",
    "payload": envelope(event_name("error"), ERROR_DATA, data_required=True),
    "correlationId": CORRELATION,
}

SESSION_DATA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": CLIENT_ID_PATTERN},
        "token": {"description": "The secret that resumes the session.", "type": "string"},
        "epoch": {"description": "Names the history offsets belong to.", "type": "string"},
        "offset": OFFSET,
        "recovered": {"type": "boolean"},
        "reason": {
            "description": "Why a requested resume failed, or why frames were lost.",
            "anyOf": [
                {
                    "type": "string",
                    "enum": ["expired", "trimmed", "epoch", "invalid", "unavailable", "backplane"],
                },
                {"type": "null"},
            ],
        },
    },
    "required": ["id", "token", "epoch", "offset", "recovered", "reason"],
}

SESSION_MESSAGE: dict[str, Any] = {
    "name": "$session",
    "title": "Session",
    "summary": "The session this connection serves (gateways with recovery).",
    "description": "The first frame after the handshake; later, with `recovered: false`, when "
    "frames for an open connection were lost. See docs/recovery.md.",
    "payload": envelope(event_name("$session"), SESSION_DATA, data_required=True),
}

GAP_MESSAGE: dict[str, Any] = {
    "name": "$gap",
    "title": "Gap",
    "summary": "Frames for this client may have been lost between the server's workers.",
    "description": "Sent by a gateway without recovery behind a broker, once a cut broker "
    "subscription that served the client is back: refetch what those frames would have "
    "told. See docs/deployment/workers.md.",
    "payload": envelope(
        event_name("$gap"),
        {
            "type": "object",
            "properties": {"reason": {"type": "string", "enum": ["backplane"]}},
            "required": ["reason"],
        },
        data_required=True,
    ),
}

RESUME_PROTOCOL = (
    "Subprotocols the client offers. A client resuming a session offers `gatewayasgi` and "
    "`gatewayasgi.resume.<id>.<token>.<epoch>.<offset>` (docs/recovery.md)."
)
