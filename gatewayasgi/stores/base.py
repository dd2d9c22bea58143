"""The two contracts of session recovery: a log of emissions and a store of sessions.

An ``EmissionLog`` is one gateway's history: every frame emitted through the gateway's
``Delivery`` gets an offset (a position, increasing) and is kept for a while, so that a
session that lost its socket can be replayed what it missed. Two ways to carry frames:

* ``carries = False`` (memory): ``append`` stamps and keeps the frame and returns its
  offset; the caller then delivers it to local clients itself.
* ``carries = True`` (Redis Streams): ``append`` adds the frame to a shared, ordered log
  and returns ``None``; ``follow`` reads the log in order, in the background, and hands
  every entry (this process's own included) to ``deliver``. Every worker sees every frame
  once, in the log's order, even across a lost link (it resumes from its last entry).

A ``SessionStore`` keeps sessions whose socket went away, for their recovery window: id,
rooms, state, and the SHA-256 of the token that resumes them. Every record has an
*owner* (a per-connection nonce): a store changes a record only for its owner, so a
worker that finds out late that its socket is gone cannot overwrite a session another
worker already resumed, and ``on_disconnect`` runs once, on the owner, at expiry.

Offsets are ``int`` inside the process (comparable, cheap) and opaque strings on the
wire (``format_offset`` / ``parse_offset``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyio.abc import TaskGroup

from gatewayasgi.protocol.targets import Targets

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Bytes of frames a history keeps by default (``Recovery.max_bytes``)."""
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
"""The largest frame a history keeps by default (``Recovery.max_frame_bytes``)."""


PARTITION_BITS = 6
PARTITION_MASK = (1 << PARTITION_BITS) - 1
"""In a partitioned history, an offset's low bits name its partition."""
SHARED = 0
"""The partition every session follows: a history's only one, or in a partitioned history
the one of broadcasts and of frames to several targets."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One emitted frame in a log."""

    offset: int
    frame: str
    """The encoded emit frame, without its offset (``WireProtocol.with_offset`` adds it)."""
    targets: Targets
    exclude: Targets


class HistoryGap(Exception):
    """The log no longer holds every entry after the requested offset."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """``"trimmed"`` (entries dropped by size or age) or ``"invalid"`` (an offset the
        log never gave out)."""


Deliver = Callable[[Entry], None]
"""Hands one entry to the local clients (never blocks, never raises)."""

Reset = Callable[[str], None]
"""Called with the new epoch when the log was lost (entries may be missing)."""


class EmissionLog(ABC):
    """One gateway namespace's ordered history of emitted frames."""

    carries: bool = False
    """True when ``follow`` delivers every entry (the log is the transport)."""

    partitions: int = 1
    """How many ordered streams the history is split into. Offsets of one partition
    compare; offsets of different ones do not (``stores._redis_partitions``)."""

    epoch: str
    """Names this history; a different epoch means the history was lost."""

    @abstractmethod
    def format_offset(self, offset: int) -> str:
        """The wire form of ``offset``."""

    @abstractmethod
    def parse_offset(self, text: str) -> int | None:
        """``format_offset``'s inverse; ``None`` for anything it could not have made."""

    @property
    @abstractmethod
    def head(self) -> int:
        """The offset of the last entry delivered to this process's clients (0: none)."""

    def heads(self) -> dict[int, int]:
        """``head`` of every partition, by partition."""
        return {0: self.head}

    def partition_of(self, offset: int) -> int:
        """The partition ``offset`` belongs to."""
        return 0

    def room_partition(self, room: str) -> int:
        """The partition of the frames addressed to ``room`` (or to a client id) alone."""
        return 0

    def format_position(self, position: dict[int, int]) -> str:
        """The wire form of a position (an offset per partition)."""
        return self.format_offset(position.get(0, 0))

    def parse_position(self, text: str) -> dict[int, int] | None:
        """``format_position``'s inverse; ``None`` for anything it could not have made."""
        offset = self.parse_offset(text)
        return None if offset is None else {0: offset}

    @abstractmethod
    async def append(self, frame: str, targets: Targets, exclude: Targets) -> int | None:
        """Keep ``frame``; its offset when the caller delivers, ``None`` when ``follow`` will."""

    @abstractmethod
    async def replay(self, after: int, limit: int) -> list[Entry]:
        """Entries with an offset above ``after``, oldest first, at most ``limit`` (of
        ``after``'s partition only, when there are several).

        Raises ``HistoryGap`` when an entry above ``after`` is no longer held.
        """

    async def follow(self, deliver: Deliver, reset: Reset, task_group: TaskGroup) -> None:  # noqa: B027
        """Start delivering entries in order in ``task_group`` (logs that carry only)."""

    def mark(self) -> int:
        """A log that carries: the number of this process's last ``append`` (0: none).

        ``reached(mark)`` waits until ``follow`` has delivered it locally, so that what
        a handler sends its client directly (a reply) never overtakes what it emitted
        before (``runtime.delivery.Fence``).
        """
        return 0

    def passed(self, mark: int) -> bool:
        """Whether ``reached(mark)`` would return at once (delivered here already)."""
        return True

    async def reached(self, mark: int) -> None:  # noqa: B027
        """Wait until this process's append number ``mark`` was delivered here, or the
        log cannot tell (Redis away, entries lost), within a bounded time."""

    async def close(self) -> None:  # noqa: B027
        """Stop following and release connections."""


@dataclass(slots=True)
class SessionRecord:
    """A session waiting for its client to come back."""

    id: str
    token_hash: str
    """Hex SHA-256 of the session's token."""
    epoch: str
    rooms: tuple[str, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)
    """``client.state``'s values (stores that leave the process keep the JSON-able ones)."""
    detached: bool = False
    """False while a socket serves the session (the record only tracks its rooms)."""
    identity: str | None = None
    """Hex SHA-256 of who the session belongs to (``Recovery.identity``), if anyone."""
    start: int = 0
    """The history's offset when the session began: nothing before it is replayed."""
    marks: dict[str, int] = field(default_factory=dict)
    """Per room, the history's offset when the session joined it: a room's frames up
    to it are never replayed to this session."""
    starts: dict[int, int] = field(default_factory=dict)
    """A partitioned history: ``start`` per partition (empty otherwise)."""


class WrongIdentity:
    """``SessionStore.claim``'s answer when the token matched but the identity did not."""

    __slots__ = ()


WRONG_IDENTITY = WrongIdentity()


class SessionStore(ABC):
    """Sessions by client id, each changed only by its owner; see the module docstring."""

    shared: bool = False
    """True when other processes see the same sessions (a client may resume on any)."""

    @abstractmethod
    async def save(self, record: SessionRecord, owner: str, ttl: float) -> bool:
        """Write ``record`` for ``ttl`` seconds if it is new or ``owner`` owns it.

        False (and nothing written) when another owner holds it.
        """

    @abstractmethod
    async def claim(
        self,
        client_id: str,
        token_hash: str,
        owner: str,
        ttl: float,
        *,
        identity: str | None = None,
        new_token_hash: str | None = None,
    ) -> SessionRecord | WrongIdentity | None:
        """Take the session over for ``owner`` when ``token_hash`` matches; else ``None``.

        ``WRONG_IDENTITY`` (and nothing changed) when the token matches but the record
        belongs to another ``identity``. The record's token becomes ``new_token_hash``
        (when given): the old token stops working. Atomic: of two claims with the right
        token, one gets the record.
        """

    @abstractmethod
    async def drop(self, client_id: str, owner: str) -> bool:
        """Delete the record if ``owner`` owns it; True when it did (the session ended)."""
