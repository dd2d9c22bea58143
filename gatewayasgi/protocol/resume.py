"""The resume credential a client offers in its handshake (see ``docs/recovery.md``).

It travels as a WebSocket subprotocol, so it is never part of a URL (servers' access logs
print query strings): the client offers ``gatewayasgi`` and
``gatewayasgi.resume.<id>.<token>.<epoch>.<offset>``; the server selects ``gatewayasgi``.
``<offset>`` is the client's position: one offset, or one per partition of a partitioned
history (``<p>~<offset>`` joined by ``_``).
Pure: parsing only, every part checked for shape and length before anything uses it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import NamedTuple

from gatewayasgi.protocol.targets import is_client_id

SUBPROTOCOL = "gatewayasgi"
"""Offered by clients that speak this protocol; selected when the gateway has no other."""
RESUME_PREFIX = SUBPROTOCOL + ".resume."
SESSION_EVENT = "$session"
"""The server's frame naming the session a connection serves."""
END_EVENT = "$end"
"""A client's frame saying its next close ends the session (some servers report every
client close as 1006, so the close code alone cannot say it)."""
RESERVED_PREFIX = "$"
"""Event names that start with it belong to the protocol, never to a gateway."""

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_EPOCH = re.compile(r"[0-9a-f]{1,64}\Z")
# A position: one offset, or (a partitioned history) up to 32 ``<p>~<offset>`` joined by
# ``_`` (``stores._redis_partitions``).
_ITEM = r"(?:[0-9]{1,2}~)?[0-9]{1,20}(?:-[0-9]{1,20})?"
_OFFSET = re.compile(rf"{_ITEM}(?:_{_ITEM}){{0,31}}\Z")
_MAX_CREDENTIAL = 2048


class Credential(NamedTuple):
    """What a client asks to resume: its session and the last position it received."""

    client_id: str
    token: str
    epoch: str
    offset: str


class Invalid(NamedTuple):
    """A resume credential was offered but is malformed."""


INVALID = Invalid()


def new_token() -> str:
    """A fresh session token: 32 random bytes, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What a store keeps instead of the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def find_credential(subprotocols: Iterable[str]) -> Credential | Invalid | None:
    """The credential among a handshake's offered subprotocols, ``None`` when none is."""
    for offered in subprotocols:
        if not offered.startswith(RESUME_PREFIX):
            continue
        if len(offered) > _MAX_CREDENTIAL:
            return INVALID
        parts = offered[len(RESUME_PREFIX) :].split(".")
        if len(parts) != 4:
            return INVALID
        client_id, token, epoch, offset = parts
        if not (
            is_client_id(client_id)
            and _TOKEN.match(token)
            and _EPOCH.match(epoch)
            and _OFFSET.match(offset)
        ):
            return INVALID
        return Credential(client_id, token, epoch, offset)
    return None


def format_credential(credential: Credential) -> str:
    """The subprotocol a client offers to resume (the inverse of ``find_credential``)."""
    return RESUME_PREFIX + ".".join(credential)
