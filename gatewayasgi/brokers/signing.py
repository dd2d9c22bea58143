"""Shared-secret signatures on backplane messages (``RedisBroker(..., secret=...)``).

Anyone who can PUBLISH on the Redis server can otherwise address any client of any
gateway. With a secret, every message carries an HMAC-SHA256 tag and a receiver drops
what does not verify, so only holders of the secret can deliver.

A signed message is ``MAGIC + tag + payload``. The tag covers the channel and the
payload (``len(channel)`` as 4 bytes, the channel, then the payload), so a message
signed for one channel (one namespace) does not verify on another. Pure: no I/O.

What it does not do: hide payloads (anyone who can SUBSCRIBE reads them) or stop a
replay of a message captured from the same channel. Use Redis ACLs and TLS for that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

MIN_SECRET_BYTES = 16
MAGIC = b"\x00gwsig1"
"""Version marker: a JSON envelope never starts with a zero byte."""
TAG_BYTES = hashlib.sha256().digest_size
OVERHEAD = len(MAGIC) + TAG_BYTES
"""Bytes a signature adds to every message."""

Secret = str | bytes
"""A shared secret: ``bytes``, or ``str`` (UTF-8 encoded). At least 16 bytes."""


class Signer:
    """Signs with the first secret, verifies with any of them (rotation).

    To rotate: deploy ``[new, old]`` everywhere (everything still verifies), then
    ``[new]`` once no process signs with the old secret any more.
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Secret | Sequence[Secret]) -> None:
        candidates = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
        if not candidates:
            raise ValueError("secret: give at least one secret")
        keys = [_key(secret, index) for index, secret in enumerate(candidates)]
        # Keyed once here; every message copies the keyed state instead of rekeying.
        self._keys = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)

    def sign(self, channel: str, payload: bytes) -> bytes:
        """The message to publish on ``channel``: ``payload`` with its signature in front."""
        return MAGIC + self._tag(self._keys[0], channel, payload) + payload

    def verify(self, channel: str, message: bytes) -> bytes | None:
        """The payload of a message received on ``channel``; ``None`` if it is not signed
        by one of the secrets (unsigned, truncated, altered, or for another channel)."""
        if len(message) < OVERHEAD or not message.startswith(MAGIC):
            return None
        view = memoryview(message)
        tag, payload = view[len(MAGIC) : OVERHEAD], view[OVERHEAD:]
        for key in self._keys:
            if hmac.compare_digest(self._tag(key, channel, payload), tag):
                return bytes(payload)
        return None

    @staticmethod
    def _tag(key: hmac.HMAC, channel: str, payload: bytes | memoryview) -> bytes:
        mac = key.copy()
        name = channel.encode()
        mac.update(len(name).to_bytes(4, "big"))
        mac.update(name)
        mac.update(payload)
        return mac.digest()


def looks_signed(message: bytes) -> bool:
    """Whether ``message`` carries a signature at all (to tell "unsigned" from "forged")."""
    return message.startswith(MAGIC)


def _key(secret: object, index: int) -> bytes:
    if isinstance(secret, str):
        key = secret.encode()
    elif isinstance(secret, bytes):
        key = secret
    else:
        raise TypeError(f"secret #{index}: expected str or bytes, got {type(secret).__name__}")
    if len(key) < MIN_SECRET_BYTES:
        # The secret itself is never echoed: this message may end up in a log.
        raise ValueError(
            f"secret #{index} is {len(key)} bytes; use at least {MIN_SECRET_BYTES} "
            "(e.g. secrets.token_urlsafe(32))"
        )
    return key
