"""``SessionKeeper``: one gateway's recoverable sessions, from first connect to expiry.

A session outlives its socket (see ``docs/recovery.md``). For each connection of a gateway
with recovery, the keeper:

1. ``open``: resumes the session the client asked for (its credential checked against
   the history's epoch, the history's reach, and the store's token hash, in that order)
   or starts a new one; either way the connection buffers live frames from then on;
2. ``start`` (once the client is registered): sends the ``$session`` frame, replays what
   the session missed (from the history, in order, paced by the client's outbox), then
   the buffered live frames it has not had yet: each frame once, in order;
3. ``detach`` (the socket went away without ending the session): keeps id, rooms and
   state in the store for ``window`` seconds;
4. ``sweep``: ends the sessions whose window passed (``on_disconnect`` runs then, once,
   on the process that owns the session).

Offsets make replay and live delivery meet exactly once: a connection remembers the
position of the last frame it was given, and a frame at or below it is skipped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.resume import (
    INVALID,
    SESSION_EVENT,
    Credential,
    Invalid,
    new_token,
    token_hash,
)
from gatewayasgi.protocol.targets import Targets
from gatewayasgi.recovery import Recovery
from gatewayasgi.recovery.base import EmissionLog, Entry, HistoryGap, SessionRecord, SessionStore
from gatewayasgi.recovery.memory import MemoryLog
from gatewayasgi.runtime.outbox import frame_cost

if TYPE_CHECKING:
    from gatewayasgi.runtime.connection import Connection
    from gatewayasgi.runtime.server import WebSocketServer

logger = logging.getLogger("gatewayasgi")

REPLAY_PAGE = 500
"""Entries read from the history at a time while replaying."""

OnExpired = Callable[["Connection"], Awaitable[None]]
"""Runs the gateway's ``on_disconnect`` for a session that ended while waiting."""


@dataclass(slots=True)
class Ticket:
    """What ties a connection to its session: the token and this connection's ownership."""

    token: str
    token_hash: str
    owner: str
    """A nonce per connection: the store changes the session's record only for it."""


@dataclass(slots=True)
class Opening:
    """The outcome of ``open``: a new or resumed session, and where replay starts."""

    recovered: bool
    reason: str | None
    offset: int
    """The client's position: replay starts after it."""
    rooms: tuple[str, ...] = ()


@dataclass(slots=True)
class _Waiting:
    client: Connection
    owner: str
    deadline: float
    rooms: tuple[str, ...] = ()


def matches(entry: Entry, client_id: str, rooms: frozenset[str] | set[str]) -> bool:
    """Whether ``entry`` was addressed to a client with this id in these rooms."""
    targets, exclude = entry.targets, entry.exclude
    if targets and client_id not in targets.clients and rooms.isdisjoint(targets.rooms):
        return False
    return not (exclude and (client_id in exclude.clients or not rooms.isdisjoint(exclude.rooms)))


class SessionKeeper:
    """Recoverable sessions of one gateway; see the module docstring."""

    def __init__(
        self,
        server: WebSocketServer,
        protocol: WireProtocol,
        recovery: Recovery,
        log: EmissionLog,
        store: SessionStore,
        on_expired: OnExpired,
    ) -> None:
        self.server = server
        self.protocol = protocol
        self.recovery = recovery
        self.log = log
        self.store = store
        self._on_expired = on_expired
        self._epoch: str | None = None
        """The epoch this process's clients were told, to tell a lost history from a gap."""
        self._warned_unlogged = False
        self._waiting: dict[str, _Waiting] = {}
        """Sessions this process detached, oldest first (the window is the same for all,
        so insertion order is deadline order)."""

    @property
    def waiting(self) -> int:
        """Sessions of this process waiting for their client."""
        return len(self._waiting)

    # -- connecting -----------------------------------------------------------------

    async def open(self, client: Connection, credential: Credential | Invalid | None) -> Opening:
        """Resume the session ``credential`` names, or start a new one, for ``client``.

        On resume ``client.id`` and ``client.state`` become the session's. From here on the
        client buffers live frames until ``start`` has sent what came before them.
        """
        await self.sweep()
        client.resume_buffer = []
        window = self.recovery.window
        owner = uuid.uuid4().hex
        reason = None
        if credential is INVALID:
            reason = "invalid"
        elif isinstance(credential, Credential):
            try:
                resumed = await self._resume(client, credential, owner)
            except Exception:
                logger.exception("gateway %s: resuming a session failed", self.server.namespace)
                resumed = "unavailable"
            if isinstance(resumed, Opening):
                return resumed
            reason = resumed
        token = new_token()
        client.ticket = Ticket(token, token_hash(token), owner)
        record = SessionRecord(client.id, client.ticket.token_hash, self.log.epoch)
        try:
            await self.store.save(record, owner, window)
        except Exception:
            # The store is unreachable: the connection works, its session may not resume.
            logger.exception("gateway %s: saving a session failed", self.server.namespace)
        return Opening(False, reason, self.log.head)

    async def _resume(
        self, client: Connection, credential: Credential, owner: str
    ) -> Opening | str:
        log = self.log
        if credential.epoch != log.epoch:
            return "epoch"
        after = log.parse_offset(credential.offset)
        if after is None:
            return "invalid"
        try:
            await log.replay(after, 1)  # the history still reaches back that far
        except HistoryGap as gap:
            return gap.reason
        hashed = token_hash(credential.token)
        record = await self.store.claim(credential.client_id, hashed, owner, self.recovery.window)
        if record is None:
            return "expired"
        waiting = self._waiting.pop(record.id, None)
        zombie = self.server.get_client(record.id)
        if zombie is not None:
            # The old socket is still registered here (its end not noticed yet): this
            # connection takes the session over; the old one ends without ending it.
            zombie.superseded = True
            record.rooms = tuple(self.server.rooms.rooms_of(record.id))
            record.state = zombie.scope.setdefault("state", record.state)
            zombie.end()
        elif waiting is not None:
            record.state = waiting.client.scope.get("state", record.state)
        client.id = record.id
        client.scope["state"] = record.state
        client.__dict__.pop("state", None)  # the cached State view of the old dict
        client.ticket = Ticket(credential.token, hashed, owner)
        client.recovered = True
        return Opening(True, None, after, record.rooms)

    async def start(self, client: Connection, opening: Opening) -> bool:
        """Send ``$session``, the missed frames, then the buffered live ones.

        If the history lost frames meanwhile, the client gets a second ``$session``
        (``recovered: false``) and goes on afresh. False when the client went away.
        """
        server, log = self.server, self.log
        for room in opening.rooms:
            server.rooms.join(client.id, room)
        client.position = opening.offset
        await client.send_payload(
            self._session_frame(
                client, log.epoch, opening.offset, opening.recovered, opening.reason
            )
        )
        if opening.recovered:
            try:
                await self._replay(client, opening)
            except HistoryGap as gap:
                # Trimmed between the check in ``open`` and now: say so, go on afresh.
                client.position = log.head
                client.recovered = False
                await client.send_payload(
                    self._session_frame(client, log.epoch, client.position, False, gap.reason)
                )
        buffered, client.resume_buffer = client.resume_buffer, None
        for offset, message, size in buffered or ():
            if offset > client.position:
                client.position = offset
                client.outbox.put_nowait(message, size)
        return not client.closed

    async def _replay(self, client: Connection, opening: Opening) -> None:
        log, protocol, outbox = self.log, client.protocol, client.outbox
        rooms = set(opening.rooms)
        after = opening.offset
        pace = max(1, outbox.max_messages // 2)
        while True:
            entries = await log.replay(after, REPLAY_PAGE)
            for entry in entries:
                after = entry.offset
                if not matches(entry, client.id, rooms):
                    continue
                # The history keeps canonical (JSON) frames: other protocols transcode.
                frame = self.protocol.with_offset(entry.frame, log.format_offset(entry.offset))
                frame = protocol.transcode(frame)
                client.position = entry.offset
                outbox.put_nowait(protocol.message(frame), frame_cost(frame))
                if len(outbox) >= pace:
                    await outbox.wait_below(pace // 2 or 1)  # the socket sets the pace
            if client.closed or len(entries) < REPLAY_PAGE:
                return

    def reset(self, epoch: str, reason: str) -> None:
        """The history lost frames (a new ``epoch``, or this worker fell behind): tell
        every connected client of this gateway with a ``$session`` frame."""
        for client in list(self.server.clients.values()):
            ticket = client.ticket
            if ticket is None or client.closed:
                continue
            client.position = 0
            client.recovered = False
            frame = self._session_frame(client, epoch, self.log.head, False, reason)
            client.outbox.put_nowait(client.protocol.message(frame), frame_cost(frame))

    def _session_frame(
        self, client: Connection, epoch: str, offset: int, recovered: bool, reason: str | None
    ) -> Payload:
        """The ``$session`` frame telling ``client`` which session it is in, and where."""
        ticket = client.ticket
        assert ticket is not None
        session = {
            "id": client.id,
            "token": ticket.token,
            "epoch": epoch,
            "offset": self.log.format_offset(offset),
            "recovered": recovered,
            "reason": reason,
        }
        return client.protocol.encode_emit(SESSION_EVENT, session)

    def _record(self, client: Connection, ticket: Ticket, *, detached: bool) -> SessionRecord:
        """What the store keeps of ``client``'s session: its rooms, and its state once it
        waits (``detached``)."""
        return SessionRecord(
            client.id,
            ticket.token_hash,
            self.log.epoch,
            tuple(self.server.rooms.rooms_of(client.id)),
            client.scope.setdefault("state", {}) if detached else {},
            detached=detached,
        )

    async def rooms_changed(self, client: Connection) -> None:
        """Write a connected session's rooms through to a shared store (a worker that
        dies cannot save them at the end)."""
        ticket = client.ticket
        if ticket is None or not self.store.shared or client.superseded:
            return
        record = self._record(client, ticket, detached=False)
        try:
            await self.store.save(record, ticket.owner, self.recovery.window)
        except Exception:
            logger.exception("gateway %s: saving rooms failed", self.server.namespace)

    # -- disconnecting --------------------------------------------------------------

    async def detach(self, client: Connection) -> None:
        """Keep the session of a socket that went away, for ``window`` seconds."""
        ticket = client.ticket
        assert ticket is not None
        window = self.recovery.window
        record = self._record(client, ticket, detached=True)
        try:
            if not await self.store.save(record, ticket.owner, window):
                return  # resumed elsewhere already
        except Exception:
            logger.exception("gateway %s: keeping a session failed", self.server.namespace)
        self._waiting[client.id] = _Waiting(
            client, ticket.owner, monotonic() + window, record.rooms
        )
        while len(self._waiting) > self.recovery.max_sessions:
            oldest = next(iter(self._waiting))
            logger.info("gateway %s: too many waiting sessions, ending the oldest", client)
            await self._expire(self._waiting.pop(oldest))

    async def end(self, client: Connection) -> None:
        """The session of ``client`` ends now (a clean close, or the app closed it)."""
        ticket = client.ticket
        if ticket is not None:
            try:
                await self.store.drop(client.id, ticket.owner)
            except Exception:
                logger.exception("gateway %s: ending a session failed", self.server.namespace)

    async def sweep(self) -> None:
        """End the sessions whose window passed."""
        waiting = self._waiting
        if not waiting:
            return
        now = monotonic()
        while waiting:
            first = next(iter(waiting.values()))
            if first.deadline > now:
                return
            del waiting[first.client.id]
            await self._expire(first)

    async def _expire(self, waiting: _Waiting) -> None:
        try:
            ended = await self.store.drop(waiting.client.id, waiting.owner)
        except Exception:
            logger.exception("gateway session store failed to drop %s", waiting.client.id)
            ended = True
        if not ended:
            return
        # ``on_disconnect`` sees the session's rooms, as it does for a connection that
        # ends at once (``server.rooms_of(client)``, ``to(room).except_(client)``).
        client, rooms = waiting.client, self.server.rooms
        for room in waiting.rooms:
            rooms.join(client.id, room)
        try:
            await self._on_expired(client)
        finally:
            if client.id not in self.server.clients:
                rooms.leave_all(client.id)

    async def run(self, task_group: TaskGroup) -> None:
        """Start the history's reader (logs that carry) and the expiry sweeper."""
        if self.log.carries:
            await self.log.follow(self._deliver, self._reset_epoch, task_group)
        self._epoch = self.log.epoch
        task_group.start_soon(self._sweeper)

    async def close(self) -> None:
        """At shutdown: sessions kept in this process end (``on_disconnect`` runs)."""
        if not self.store.shared:
            while self._waiting:
                await self._expire(self._waiting.pop(next(iter(self._waiting))))
        await self.log.close()

    async def _sweeper(self) -> None:
        interval = min(1.0, self.recovery.window / 4)
        while True:
            await anyio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                logger.exception("gateway %s: session sweep failed", self.server.namespace)

    def deliver_remote(self, frame: Payload, targets: Targets, exclude: Targets) -> int:
        """A frame another process emitted (backplane): kept in this process's history,
        with this process's offset, then delivered."""
        log = self.log
        assert isinstance(log, MemoryLog)
        text = frame if isinstance(frame, str) else frame.decode()
        offset = log.stamp(text, targets, exclude)
        stamped = self.protocol.with_offset(text, log.format_offset(offset))
        return self.server.deliver_local(stamped, targets, exclude, offset)

    def deliver_unlogged(self, frame: Payload, targets: Targets, exclude: Targets) -> int:
        """A frame that came over pub/sub to a gateway whose history carries its frames:
        an ``Emitter`` without ``recovery``. Delivered as it is (no offset, not replayed)."""
        if not self._warned_unlogged:
            self._warned_unlogged = True
            logger.warning(
                "gateway %s keeps its history in Redis, but an Emitter published to it "
                "without recovery=: its frames are delivered without offsets and cannot "
                "be recovered (pass the gateway's Recovery to the Emitter)",
                self.server.namespace,
            )
        return self.server.deliver_local(frame, targets, exclude)

    def _deliver(self, entry: Entry) -> None:
        log = self.log
        frame = self.protocol.with_offset(entry.frame, log.format_offset(entry.offset))
        self.server.deliver_local(frame, entry.targets, entry.exclude, entry.offset)

    def _reset_epoch(self, epoch: str) -> None:
        reason = "trimmed" if epoch == self._epoch else "epoch"
        self._epoch = epoch
        self.reset(epoch, reason)
