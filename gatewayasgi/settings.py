"""Middleware-wide limits and policies with safe defaults, validated once at startup.

Each field is an explicit keyword parameter of ``GatewayMiddleware``. pydantic checks
every value at construction (strict types: ``"1MB"`` is not an integer, a string is not
a list of origins), and the error names the setting at fault.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from dataclasses import fields
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from gatewayasgi.exceptions import InvalidSettingError, UnknownSettingError


class Overflow(str, enum.Enum):
    """What happens when a frame would exceed a connection's outbox caps."""

    CLOSE = "close"
    """Close the slow client with 1013 (try again later); its rooms are released."""
    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued frames until the new one fits."""
    DROP_NEW = "drop_new"
    """Discard the new frame."""


AtLeastOne = Annotated[int, Field(ge=1)]
Positive = Annotated[float, Field(gt=0)]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, config=ConfigDict(strict=True))
class Settings:
    """Limits and policies shared by every gateway of one ``GatewayMiddleware``.

    ``None`` turns an optional limit off.
    """

    outbox_max_messages: AtLeastOne = 4096
    """Frames that may wait for one slow client before the overflow policy applies."""
    outbox_max_bytes: AtLeastOne = 1 * MiB
    """Bytes (as held in memory) that may wait for one slow client, the frame being
    written included, before the overflow policy applies. Centrifugo's default too."""
    outbox_budget: AtLeastOne | None = 256 * MiB
    """Bytes all outboxes of this middleware may hold together. Past it, the clients
    holding the most are closed with 1013 until the total is back under it, so memory
    under attack has a ceiling whatever the number of connections."""
    waiting_budget: AtLeastOne | None = 128 * MiB
    """Bytes all sessions waiting for their client (gateways with ``recovery=``) may
    hold together, every gateway of this middleware included. Past it, the session
    waiting longest ends early (its ``on_disconnect`` runs)."""
    overflow: Annotated[Overflow, Field(strict=False)] = Overflow.CLOSE
    """``close`` (1013, rooms released), ``drop_oldest`` or ``drop_new``."""
    max_message_size: AtLeastOne = 1 * MiB
    """Largest inbound frame in bytes (checked before decoding); larger closes with 1009."""
    rate_limit: Positive | None = 2000.0
    """Frames per second one connection may send, sustained (token bucket)."""
    rate_burst: AtLeastOne = 4000
    """Frames one connection may send at once above ``rate_limit``."""
    error_rate_limit: Positive = 20.0
    """Frames per second that may be answered with an error frame (bad frames, invalid
    payloads)."""
    error_burst: AtLeastOne = 100
    """Bad frames answered at once above ``error_rate_limit``."""
    abuse_threshold: AtLeastOne = 1000
    """Frames refused in a row by the rate limits before the client is closed (1008)."""
    max_rooms_per_connection: AtLeastOne = 1000
    """Rooms one connection may be in; ``join`` past it raises ``WsException``."""
    max_room_name_length: AtLeastOne = 256
    """Longest room name (characters); ``join`` with a longer one raises ``WsException``."""
    max_connections: AtLeastOne | None = 100_000
    """Open connections per gateway in this process (handshakes in progress included);
    more are refused (HTTP 503)."""
    allowed_origins: Annotated[tuple[str, ...] | None, Field(strict=False)] = None
    """Exact ``scheme://host[:port]`` origins allowed to connect; ``None`` allows any."""
    allow_missing_origin: bool = False
    """With ``allowed_origins`` set: also allow clients that send no ``Origin`` (non-browser
    clients such as servers and mobile apps). Off by default: an origin allow-list then
    admits only the origins it names."""
    heartbeat_interval: Positive | None = None
    """Seconds between server ``{"event": "heartbeat"}`` frames; ``None`` is off."""
    heartbeat_timeout: Positive = 20.0
    """Seconds a client may stay silent after a heartbeat before it is closed (1001)."""
    heartbeat_event: Annotated[str, Field(min_length=1)] = "heartbeat"
    """Event name of server heartbeats; clients answer with a frame of the same event."""
    close_timeout: Positive = 5.0
    """Seconds to wait for a close frame to be written before giving up."""
    hook_timeout: Positive = 30.0
    """Seconds ``on_disconnect`` may run before it is abandoned."""
    max_streams: AtLeastOne = 8
    """Streams (generator handlers) one connection may run at once; one more request is
    answered with an error frame."""
    stream_timeout: Positive | None = 600.0
    """Seconds a stream may run; past it the generator is closed and the stream ends
    with an error frame. A reader that stops for good ends here, not in memory."""
    gc_freeze: bool = True
    """At startup, collect garbage once and move every object alive then (imports, the
    app, providers) out of the collector's reach with ``gc.freeze()``. Full collections
    then scan only what was made since, so they stop stalling fan-out; turn it off if
    something else in the process manages the collector."""

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _not_one_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"must be a list of origins, not one string (use [{value!r}])")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else tuple(normalize_origin(o) for o in value)

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """``Settings(**values)``, every failure a ``ConfigurationError`` naming the setting."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise InvalidSettingError(_describe(exc, values)) from None


SETTING_NAMES = tuple(field.name for field in fields(Settings))


def _describe(exc: ValidationError, values: dict[str, Any]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "settings"
        given = repr(values.get(name))
        if len(given) > 80:
            given = given[:77] + "..."
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{name}={given}: {message}")
    return "invalid GatewayMiddleware setting: " + "; ".join(dict.fromkeys(lines))


def unknown_settings(names: Iterable[str], known: Iterable[str]) -> UnknownSettingError:
    """The error for keyword arguments nobody takes, with "did you mean" suggestions."""
    known = list(known)
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    return UnknownSettingError("GatewayMiddleware got unknown settings: " + ", ".join(parts))


def normalize_origin(origin: str) -> str:
    """``scheme://host:port`` with the default port made explicit, lower-cased."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(f"allowed origin must look like https://host[:port]: {origin!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"allowed origin must be scheme://host[:port] only: {origin!r}")
    default = 443 if parts.scheme in ("https", "wss") else 80
    return f"{parts.scheme}://{parts.hostname}:{parts.port or default}"


def origin_allowed(origin: str | None, settings: Settings) -> bool:
    """Exact match of the ``Origin`` header against ``settings.allowed_origins``."""
    allowed = settings.allowed_origins
    if allowed is None:
        return True
    if origin is None:
        return settings.allow_missing_origin
    try:
        return normalize_origin(origin) in allowed
    except ValueError:
        return False
