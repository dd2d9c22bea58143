"""Session recovery bookkeeping, client side (pure: no I/O). See ``docs/recovery.md``.

The client reads every ``$session`` frame (the session a connection serves: id, token,
epoch, offset, recovered, reason) and the ``offset`` of every frame, and offers
``gatewayasgi`` plus ``gatewayasgi.resume.<id>.<token>.<epoch>.<offset>`` as subprotocols
in the next handshake, so the credential never appears in a URL.

A history split into partitions (``Recovery(partitions=N)``) gives offsets as
``<p>~<offset>`` and positions as those joined by ``_``: the client keeps the last offset
of each ``<p>~`` prefix and offers them all (an offset without ``~`` is the only one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gatewayasgi.client.frames import InboundFrame

SUBPROTOCOL = "gatewayasgi"
RESUME_PREFIX = SUBPROTOCOL + ".resume."
# Parts are opaque, but a subprotocol must be an HTTP token; anything else is not offered
# (the server would answer "invalid" anyway) rather than breaking the handshake.
_PART = re.compile(r"[A-Za-z0-9_~\-]+\Z")
_MAX_POSITIONS = 32


def _partition(offset: str) -> str:
    return offset.partition("~")[0] if "~" in offset else ""


@dataclass(frozen=True)
class Session:
    """A ``$session`` frame: the session a connection serves."""

    id: str
    token: str
    epoch: str
    offset: str
    recovered: bool
    reason: str | None
    """Why a requested resume failed (``"expired"``, ``"trimmed"``, ``"epoch"``,
    ``"invalid"``), or why frames may have been lost on an open connection; else ``None``."""

    @classmethod
    def parse(cls, data: Any) -> Session | None:
        """The session in a ``$session`` frame's data, ``None`` when it is malformed."""
        if not isinstance(data, dict):
            return None
        fields = [data.get(name) for name in ("id", "token", "epoch", "offset")]
        reason = data.get("reason")
        if not all(isinstance(value, str) for value in fields) or not (
            reason is None or isinstance(reason, str)
        ):
            return None
        client_id, token, epoch, offset = (str(value) for value in fields)
        return cls(client_id, token, epoch, offset, data.get("recovered") is True, reason)


class SessionRecovery:
    """What a client remembers to resume its session on the next connection.

    ``session_frame`` takes each ``$session`` frame, ``observe`` every other frame (its
    ``offset``); ``subprotocols`` builds each handshake's
    offer; ``forget`` drops the credential when the client closes for good (a clean close
    with 1000 ends the session on the server too).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        """Offer the credential on reconnect (``recover=True``); ``$session`` frames are
        read either way."""
        self.session: Session | None = None
        """The latest ``$session`` (its ``offset`` is the one it carried)."""
        self.positions: dict[str, str] = {}
        """Per partition of the history, the offset of the last frame received."""
        self.recovered = False
        """Whether the current connection resumed the session the client asked for."""

    @property
    def offset(self) -> str | None:
        """The position a resume asks to continue from: the last offset received, per
        partition (``None`` before the first ``$session``)."""
        positions = self.positions
        if not positions:
            return None
        return "_".join(positions[key] for key in sorted(positions))

    def _take_position(self, position: str) -> None:
        """A ``$session`` frame's position replaces what was kept."""
        items = position.split("_")[:_MAX_POSITIONS]
        self.positions = {_partition(item): item for item in items}

    @property
    def client_id(self) -> str | None:
        return None if self.session is None else self.session.id

    def subprotocols(self, user: Sequence[str] = ()) -> list[str]:
        """The offer for the next handshake: the protocol and the resume credential first
        (when recovery is on), then the user's own subprotocols."""
        if not self.enabled:
            return list(user)
        offer = [SUBPROTOCOL]
        credential = self.credential()
        if credential is not None:
            offer.append(credential)
        return offer + [name for name in user if name not in offer]

    def credential(self) -> str | None:
        """``gatewayasgi.resume.<id>.<token>.<epoch>.<offset>``, ``None`` with no session."""
        session = self.session
        if session is None or self.offset is None:
            return None
        parts = (session.id, session.token, session.epoch, self.offset)
        if not all(_PART.match(part) for part in parts):
            return None
        return RESUME_PREFIX + ".".join(parts)

    def connection_opened(self) -> None:
        """A new connection: not recovered until its ``$session`` says so."""
        self.recovered = False

    def observe(self, frame: InboundFrame) -> None:
        """Record the position of ``frame`` (any frame but a ``$session``)."""
        offset = frame.offset
        if offset is not None:
            positions = self.positions
            key = _partition(offset)
            if key in positions or len(positions) < _MAX_POSITIONS:
                positions[key] = offset

    def session_frame(self, data: Any) -> Session | None:
        """Take a ``$session`` frame's data: the new id, token, epoch and position; ``None``
        (and nothing changed) when it is malformed."""
        session = Session.parse(data)
        if session is not None:
            self.session = session
            self._take_position(session.offset)
            self.recovered = session.recovered
        return session

    def forget(self) -> None:
        """Drop the credential: the next connection starts a new session."""
        self.session = None
        self.positions = {}
        self.recovered = False
