"""Middleware-wide limits and policies with safe defaults, validated once at startup."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.runtime.outbox import Overflow


@dataclass(frozen=True, slots=True)
class Settings:
    """Limits and policies shared by every gateway of one ``GatewayMiddleware``.

    Every field is a keyword argument of ``GatewayMiddleware``. ``None`` turns an
    optional limit off.
    """

    outbox_max_messages: int = 4096
    """Frames that may wait for one slow client before the overflow policy applies."""
    outbox_max_bytes: int = 16 * 1024 * 1024
    """Bytes that may wait for one slow client before the overflow policy applies."""
    overflow: Overflow = Overflow.CLOSE
    """``close`` (1013, rooms released), ``drop_oldest`` or ``drop_new``."""
    max_message_size: int = 1024 * 1024
    """Largest inbound frame in bytes (checked before decoding); larger closes with 1009."""
    rate_limit: float | None = 2000.0
    """Frames per second one connection may send, sustained (token bucket)."""
    rate_burst: int = 4000
    """Frames one connection may send at once above ``rate_limit``."""
    error_rate_limit: float = 20.0
    """Frames per second that may be answered with an error frame (bad frames)."""
    error_burst: int = 100
    """Bad frames answered at once above ``error_rate_limit``."""
    abuse_threshold: int = 1000
    """Frames refused in a row by the rate limits before the client is closed (1008)."""
    max_rooms_per_connection: int = 1000
    """Rooms one connection may be in; ``join`` past it raises ``WsException``."""
    max_room_name_length: int = 256
    """Longest room name (characters); ``join`` with a longer one raises ``WsException``."""
    max_connections: int | None = 100_000
    """Open connections per gateway in this process; more are refused (HTTP 503)."""
    allowed_origins: tuple[str, ...] | None = None
    """Exact ``scheme://host[:port]`` origins allowed to connect; ``None`` allows any."""
    allow_missing_origin: bool = False
    """With ``allowed_origins`` set: also allow clients that send no ``Origin`` (non-browser
    clients such as servers and mobile apps). Off by default: an origin allow-list then
    admits only the origins it names."""
    heartbeat_interval: float | None = None
    """Seconds between server ``{"event": "heartbeat"}`` frames; ``None`` is off."""
    heartbeat_timeout: float = 20.0
    """Seconds a client may stay silent after a heartbeat before it is closed (1001)."""
    heartbeat_event: str = "heartbeat"
    """Event name of server heartbeats; clients answer with a frame of the same event."""
    close_timeout: float = 5.0
    """Seconds to wait for a close frame to be written before giving up."""
    hook_timeout: float = 30.0
    """Seconds ``on_disconnect`` may run before it is abandoned."""
    gc_freeze: bool = True
    """At startup, collect garbage once and move every object alive then (imports, the
    app, providers) out of the collector's reach with ``gc.freeze()``. Full collections
    then scan only what was made since, so they stop stalling fan-out; turn it off if
    something else in the process manages the collector."""

    def __post_init__(self) -> None:
        for name in (
            "outbox_max_messages",
            "outbox_max_bytes",
            "max_message_size",
            "rate_burst",
            "error_burst",
            "abuse_threshold",
            "max_rooms_per_connection",
            "max_room_name_length",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        try:
            object.__setattr__(self, "overflow", Overflow(self.overflow))
        except ValueError:
            choices = ", ".join(repr(item.value) for item in Overflow)
            raise ConfigurationError(
                f"overflow must be one of {choices}, got {self.overflow!r}"
            ) from None
        if self.allowed_origins is not None:
            object.__setattr__(
                self, "allowed_origins", tuple(normalize_origin(o) for o in self.allowed_origins)
            )


def normalize_origin(origin: str) -> str:
    """``scheme://host:port`` with the default port made explicit, lower-cased."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConfigurationError(f"allowed origin must look like https://host[:port]: {origin!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigurationError(f"allowed origin must be scheme://host[:port] only: {origin!r}")
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
    except (ConfigurationError, ValueError):
        return False
