"""WebSocket close codes the library sends or reports (RFC 6455, section 7.4.1)."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """Close codes with the meaning the runtime gives them."""

    NORMAL = 1000
    """The app closed the connection, or the client went away cleanly."""
    GOING_AWAY = 1001
    """The client missed heartbeats, or the server is shutting down."""
    NO_STATUS = 1005
    """The peer closed without a code."""
    ABNORMAL = 1006
    """The connection was lost without a close (reported, never sent): a session with
    recovery waits for the client to come back."""
    POLICY_VIOLATION = 1008
    """A guard refused a frame, ``on_connection`` raised ``WsException``, or sustained abuse."""
    MESSAGE_TOO_BIG = 1009
    """An inbound frame above ``max_message_size``."""
    INTERNAL_ERROR = 1011
    """A handler, guard or hook raised an unexpected exception."""
    TRY_AGAIN_LATER = 1013
    """The client was too slow to read what it was sent (outbox or process budget full)."""
    SESSION_TAKEN = 4409
    """Another connection resumed this connection's session (with its credential and the
    same identity): this one ends without ending the session, and does not reconnect."""


TERMINAL_CLOSE_CODES = frozenset({CloseCode.POLICY_VIOLATION})
"""Codes after which a client should not reconnect on its own (so do 4000-4999)."""
