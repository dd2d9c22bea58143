"""Middleware-wide settings with their defaults, validated once at startup."""

from __future__ import annotations

from dataclasses import dataclass

from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.runtime.outbox import Overflow


@dataclass(frozen=True, slots=True)
class Settings:
    """Limits and policies shared by every gateway of one ``GatewayMiddleware``."""

    outbox_max_messages: int = 4096
    """Frames that may wait for one slow client before the overflow policy applies."""
    outbox_max_bytes: int = 16 * 1024 * 1024
    """Bytes that may wait for one slow client before the overflow policy applies."""
    overflow: Overflow = Overflow.CLOSE
    """``close`` (1013), ``drop_oldest`` or ``drop_new``."""
    close_timeout: float = 5.0
    """Seconds to wait for a close frame to be written before giving up."""
    hook_timeout: float = 30.0
    """Seconds ``on_disconnect`` may run before it is abandoned."""

    def __post_init__(self) -> None:
        for name in ("outbox_max_messages", "outbox_max_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        try:
            object.__setattr__(self, "overflow", Overflow(self.overflow))
        except ValueError:
            choices = ", ".join(repr(item.value) for item in Overflow)
            raise ConfigurationError(
                f"overflow must be one of {choices}, got {self.overflow!r}"
            ) from None
