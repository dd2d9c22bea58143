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

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from gatewayasgi.exceptions import WsException
from gatewayasgi.protocol.base import Payload, WireProtocol
from gatewayasgi.protocol.close import CloseCode
from gatewayasgi.protocol.resume import (
    INVALID,
    SESSION_EVENT,
    Credential,
    Invalid,
    new_token,
    token_hash,
)
from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.recovery import Recovery
from gatewayasgi.recovery.waiting import LogLimiter, QuotaBucket, WaitingBudget, session_cost
from gatewayasgi.runtime.outbox import frame_cost
from gatewayasgi.stores.base import (
    SHARED,
    EmissionLog,
    Entry,
    HistoryGap,
    SessionRecord,
    SessionStore,
    WrongIdentity,
)
from gatewayasgi.stores.memory import MemoryLog

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
    identity: str | None = None
    """Hex SHA-256 of who the session belongs to (``Recovery.identity``)."""
    start: dict[int, int] = field(default_factory=dict)
    """Per partition, the history's offset when the session began: nothing before it is
    replayed."""
    marks: dict[str, int] = field(default_factory=dict)
    """Per room the session is in, the history's offset when it joined (``mark_key``)."""
    quota: QuotaBucket | None = None
    """What emits made by this client's handlers may still add to the history."""


@dataclass(slots=True)
class Opening:
    """The outcome of ``open``: a new or resumed session, and where replay starts."""

    recovered: bool
    reason: str | None
    position: dict[int, int]
    """The client's position, per partition it follows: replay starts after it."""
    rooms: tuple[str, ...] = ()


@dataclass(slots=True)
class _Waiting:
    client: Connection
    owner: str
    deadline: float
    rooms: tuple[str, ...] = ()
    cost: int = 0
    address: str = ""


SESSION_TAKEN_REASON = "session resumed elsewhere"


def ticket_of(client: Connection) -> Ticket | None:
    """The session state this capability keeps in the connection's slot for it."""
    ticket = client.ticket
    return ticket if isinstance(ticket, Ticket) else None


SHARED_MARK = "\x00"
"""Prefix of a room's mark in the shared partition of a partitioned history (frames to
several targets go there, ``stores._redis_partitions``)."""


def mark_key(log: EmissionLog, room: str, offset: int) -> str:
    """The key in ``Ticket.marks`` to compare ``offset`` (an entry to ``room``) with: the
    room's own, unless the entry is in the shared partition and the room is not."""
    if log.partitions == 1 or log.room_partition(room) == log.partition_of(offset):
        return room
    return SHARED_MARK + room


def room_marks(
    log: EmissionLog, rooms: tuple[str, ...], marks: dict[str, int], start: dict[int, int]
) -> dict[str, int]:
    """The marks of ``rooms`` (where the session joined each, in every partition that can
    carry its frames), the session's start where one is missing."""
    kept: dict[str, int] = {}
    for room in rooms:
        part = log.room_partition(room)
        kept[room] = marks.get(room, start.get(part, 0))
        if part != SHARED:
            key = SHARED_MARK + room
            kept[key] = marks.get(key, start.get(SHARED, 0))
    return kept


def visible(log: EmissionLog, entry: Entry, client_id: str, marks: dict[str, int]) -> bool:
    """Whether ``entry`` was addressed to this session: to its id, or to a room it is in
    (``marks``: room -> the history's offset at the join), counted only for frames after
    it joined, and excluded neither by id nor by room."""
    targets = entry.targets
    if targets and client_id not in targets.clients:
        offset = entry.offset
        if not any(
            offset > marks.get(mark_key(log, room, offset), offset) for room in targets.rooms
        ):
            return False
    exclude = entry.exclude
    return not (
        exclude and (client_id in exclude.clients or not marks.keys().isdisjoint(exclude.rooms))
    )


def _address(client: Connection) -> str:
    peer = client.scope.get("client")
    return str(peer[0]) if peer else ""


def _hashed_identity(value: object) -> str | None:
    if value is None:
        return None
    return hashlib.sha256(repr(value).encode()).hexdigest()


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
        budget: WaitingBudget | None = None,
    ) -> None:
        self.server = server
        self.protocol = protocol
        self.recovery = recovery
        self.log = log
        self.store = store
        self._on_expired = on_expired
        self.budget = budget if budget is not None else WaitingBudget(None)
        """What waiting sessions hold, shared by every keeper of a middleware."""
        self._by_address: dict[str, dict[str, None]] = {}
        """Waiting sessions per client address, oldest first."""
        self._readers: dict[int, Connection] = {}
        """Connections by the task that runs their handlers (``charge``)."""
        self._evictions = LogLimiter(logger)
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
        identity = self._identity(client)
        reason = None
        if credential is INVALID:
            reason = "invalid"
        elif isinstance(credential, Credential):
            try:
                resumed = await self._resume(client, credential, owner, identity)
            except Exception:
                logger.exception("gateway %s: resuming a session failed", self.server.namespace)
                resumed = "unavailable"
            if isinstance(resumed, Opening):
                return resumed
            reason = resumed
        token = new_token()
        log = self.log
        start = log.heads()
        ticket = client.ticket = Ticket(token, token_hash(token), owner, identity, start)
        record = SessionRecord(
            client.id,
            ticket.token_hash,
            log.epoch,
            identity=identity,
            start=start.get(SHARED, 0),
            starts=start if log.partitions > 1 else {},
        )
        try:
            await self.store.save(record, owner, window)
        except Exception:
            # The store is unreachable: the connection works, its session may not resume.
            logger.exception("gateway %s: saving a session failed", self.server.namespace)
        return Opening(False, reason, self._followed(client.id, (), start))

    def _identity(self, client: Connection) -> str | None:
        """Who ``client`` is by its handshake (``Recovery.identity``), hashed."""
        choose = self.recovery.identity
        if choose is None:
            state = client.scope.get("state")
            value = state.get("identity") if isinstance(state, dict) else None
        else:
            value = choose(client)
        return _hashed_identity(value)

    async def _resume(
        self, client: Connection, credential: Credential, owner: str, identity: str | None
    ) -> Opening | str:
        log = self.log
        if credential.epoch != log.epoch:
            return "epoch"
        after = log.parse_position(credential.offset)
        if after is None:
            return "invalid"
        try:
            for offset in after.values():
                await log.replay(offset, 1)  # the history still reaches back that far
        except HistoryGap as gap:
            return gap.reason
        hashed = token_hash(credential.token)
        # The token rotates: the old one stops working once this resume took it.
        token = new_token() if client.protocol.rotates_token else credential.token
        new_hash = token_hash(token)
        record = await self.store.claim(
            credential.client_id,
            hashed,
            owner,
            self.recovery.window,
            identity=identity,
            new_token_hash=new_hash,
        )
        if record is None:
            return "expired"
        if isinstance(record, WrongIdentity):
            logger.info(
                "gateway %s: a resume offered the token of another identity's session",
                self.server.namespace,
            )
            return "invalid"
        waiting = self._unkeep(record.id)
        zombie = self.server.get_client(record.id)
        if zombie is not None:
            # The old socket is still registered here (its end not noticed yet, or a
            # second holder): this connection takes the session over; the old one is
            # closed without ending it.
            zombie.superseded = True
            record.rooms = tuple(self.server.rooms.rooms_of(record.id))
            record.state = zombie.scope.setdefault("state", record.state)
            held = ticket_of(zombie)
            if held is not None:
                record.marks = held.marks
            if zombie.close_code is None:
                zombie.close_code = CloseCode.SESSION_TAKEN
                zombie.close_reason = SESSION_TAKEN_REASON
            zombie.end()
        elif waiting is not None:
            record.state = waiting.client.scope.get("state", record.state)
        elif self.store.shared and not record.detached:
            # Live on another worker (or on one that died): it closes there.
            await self.server.cluster.disconnect(
                Targets((), (record.id,)), NOBODY, CloseCode.SESSION_TAKEN, SESSION_TAKEN_REASON
            )
        client.id = record.id
        client.scope["state"] = record.state
        client.__dict__.pop("state", None)  # the cached State view of the old dict
        start = record.starts or {SHARED: record.start}
        marks = room_marks(log, record.rooms, record.marks, start)
        client.ticket = Ticket(token, new_hash, owner, identity, start, marks)
        client.recovered = True
        # Never a frame from before the session began (an offset the client forged).
        position = {
            part: max(after.get(part, offset), offset)
            for part, offset in self._followed(record.id, record.rooms, start).items()
        }
        return Opening(True, None, position, record.rooms)

    def _followed(
        self, client_id: str, rooms: tuple[str, ...], position: dict[int, int]
    ) -> dict[int, int]:
        """``position`` in the partitions a session follows: the shared one, its own
        client id's, and its rooms' (all of it while the history is one stream)."""
        log = self.log
        if log.partitions == 1:
            return {SHARED: position.get(SHARED, 0)}
        parts = {SHARED, log.room_partition(client_id)}
        parts.update(log.room_partition(room) for room in rooms)
        return {part: position.get(part, 0) for part in sorted(parts)}

    async def start(self, client: Connection, opening: Opening) -> bool:
        """Send ``$session``, the missed frames, then the buffered live ones.

        If the history lost frames meanwhile, the client gets a second ``$session``
        (``recovered: false``) and goes on afresh. False when the client went away.
        """
        server, log = self.server, self.log
        for room in opening.rooms:
            server.rooms.join(client.id, room)
        client.positions = dict(opening.position)
        if client.reader is not None:
            self._readers[client.reader] = client
        await client.send_payload(
            self._session_frame(
                client, log.epoch, opening.position, opening.recovered, opening.reason
            )
        )
        if opening.recovered:
            try:
                await self._replay(client, opening)
            except HistoryGap as gap:
                # Trimmed between the check in ``open`` and now: say so, go on afresh.
                client.positions = self._followed(client.id, opening.rooms, log.heads())
                client.recovered = False
                await client.send_payload(
                    self._session_frame(client, log.epoch, client.positions, False, gap.reason)
                )
        buffered, client.resume_buffer = client.resume_buffer, None
        positions = client.positions
        for offset, message, size in buffered or ():
            part = log.partition_of(offset)
            if offset > positions.get(part, 0):
                positions[part] = offset
                client.outbox.put_nowait(message, size)
        return not client.closed

    async def _replay(self, client: Connection, opening: Opening) -> None:
        log, protocol, outbox = self.log, client.protocol, client.outbox
        ticket = ticket_of(client)
        assert ticket is not None
        marks = ticket.marks
        pace = max(1, outbox.max_messages // 2)
        # One partition after the other: their frames have no order among them.
        for part, after in opening.position.items():
            while True:
                entries = await log.replay(after, REPLAY_PAGE)
                for entry in entries:
                    after = entry.offset
                    if not visible(log, entry, client.id, marks):
                        continue
                    if not entry.frame:  # kept out of the history (too large): lost
                        raise HistoryGap("trimmed")
                    # The history keeps canonical (JSON) frames: other protocols transcode.
                    frame = self.protocol.with_offset(entry.frame, log.format_offset(entry.offset))
                    frame = protocol.transcode(frame)
                    client.positions[part] = entry.offset
                    outbox.put_nowait(protocol.message(frame), frame_cost(frame))
                    if len(outbox) >= pace:
                        await outbox.wait_below(pace // 2 or 1)  # the socket sets the pace
                if client.closed:
                    return
                if len(entries) < REPLAY_PAGE:
                    break

    def reset(self, epoch: str, reason: str) -> None:
        """The history lost frames (a new ``epoch``, or this worker fell behind): tell
        every connected client of this gateway with a ``$session`` frame."""
        for client in list(self.server.clients.values()):
            ticket = ticket_of(client)
            if ticket is None or client.closed:
                continue
            client.positions = {}
            client.recovered = False
            rooms = tuple(self.server.rooms.rooms_of(client.id))
            position = self._followed(client.id, rooms, self.log.heads())
            frame = self._session_frame(client, epoch, position, False, reason)
            client.outbox.put_nowait(client.protocol.message(frame), frame_cost(frame))

    def _session_frame(
        self,
        client: Connection,
        epoch: str,
        position: dict[int, int],
        recovered: bool,
        reason: str | None,
    ) -> Payload:
        """The ``$session`` frame telling ``client`` which session it is in, and where."""
        ticket = ticket_of(client)
        assert ticket is not None
        session = {
            "id": client.id,
            "token": ticket.token,
            "epoch": epoch,
            "offset": self.log.format_position(position),
            "recovered": recovered,
            "reason": reason,
        }
        return client.protocol.encode_emit(SESSION_EVENT, session)

    def _record(self, client: Connection, ticket: Ticket, *, detached: bool) -> SessionRecord:
        """What the store keeps of ``client``'s session: its rooms, and its state once it
        waits (``detached``)."""
        rooms = tuple(self.server.rooms.rooms_of(client.id))
        log = self.log
        return SessionRecord(
            client.id,
            ticket.token_hash,
            log.epoch,
            rooms,
            client.scope.setdefault("state", {}) if detached else {},
            detached=detached,
            identity=ticket.identity,
            start=ticket.start.get(SHARED, 0),
            marks=room_marks(log, rooms, ticket.marks, ticket.start),
            starts=ticket.start if log.partitions > 1 else {},
        )

    async def rooms_changed(self, client: Connection, room: str, joined: bool) -> None:
        """Note the history's offset at each join (a room's earlier frames are never
        replayed to this session), and write a connected session's rooms through to a
        shared store (a worker that dies cannot save them at the end)."""
        ticket = ticket_of(client)
        if ticket is None or client.superseded:
            return
        log = self.log
        if joined:
            if log.partitions == 1:
                ticket.marks.setdefault(room, log.head)
            else:
                heads = log.heads()
                part = log.room_partition(room)
                ticket.marks.setdefault(room, heads[part])
                if part != SHARED:
                    ticket.marks.setdefault(SHARED_MARK + room, heads[SHARED])
        else:
            ticket.marks.pop(room, None)
            ticket.marks.pop(SHARED_MARK + room, None)
        if not self.store.shared:
            return
        record = self._record(client, ticket, detached=False)
        try:
            await self.store.save(record, ticket.owner, self.recovery.window)
        except Exception:
            logger.exception("gateway %s: saving rooms failed", self.server.namespace)

    # -- disconnecting --------------------------------------------------------------

    async def detach(self, client: Connection) -> None:
        """Keep the session of a socket that went away, for ``window`` seconds (within
        the bounds: ``recovery.waiting``)."""
        ticket = ticket_of(client)
        assert ticket is not None
        self.release(client)
        recovery = self.recovery
        window = recovery.window
        record = self._record(client, ticket, detached=True)
        cost = session_cost(record.rooms, record.state, client.scope.get("headers", ()))
        if cost > recovery.max_session_bytes:
            self._evicted("a session over max_session_bytes (%d bytes)", cost)
            await self._expire(_Waiting(client, ticket.owner, 0.0, record.rooms))
            return
        try:
            if not await self.store.save(record, ticket.owner, window):
                return  # resumed elsewhere already
        except Exception:
            logger.exception("gateway %s: keeping a session failed", self.server.namespace)
        # What the session no longer needs while it waits: nothing of the socket's
        # transport or task stays reachable from it (hundreds of KB under hypercorn).
        client.resume_buffer = None
        client.outbox.release()
        client.cancel_scope = None
        client.reader = None
        waiting = _Waiting(
            client, ticket.owner, monotonic() + window, record.rooms, cost, _address(client)
        )
        self._keep(waiting)
        same_address = self._by_address[waiting.address]
        while len(same_address) > recovery.max_sessions_per_address:
            self._evicted("max_sessions_per_address (%d) reached", len(same_address))
            await self._evict(next(iter(same_address)))
        while len(self._waiting) > recovery.max_sessions:
            self._evicted("max_sessions (%d) reached", len(self._waiting))
            await self._evict(next(iter(self._waiting)))
        budget = self.budget
        while budget.over():
            keeper, oldest = budget.oldest()
            self._evicted("waiting_budget (%d bytes) reached", budget.limit)
            await keeper._evict(oldest)

    def _keep(self, waiting: _Waiting) -> None:
        client_id = waiting.client.id
        self._waiting[client_id] = waiting
        self._by_address.setdefault(waiting.address, {})[client_id] = None
        self.budget.add(self, client_id, waiting.cost)

    def _unkeep(self, client_id: str) -> _Waiting | None:
        """Stop counting a waiting session (resumed, expired or evicted)."""
        waiting = self._waiting.pop(client_id, None)
        if waiting is None:
            return None
        same_address = self._by_address.get(waiting.address)
        if same_address is not None:
            same_address.pop(client_id, None)
            if not same_address:
                del self._by_address[waiting.address]
        self.budget.remove(self, client_id)
        return waiting

    async def _evict(self, client_id: str) -> None:
        """End a waiting session before its window passed (a bound was reached)."""
        waiting = self._unkeep(client_id)
        if waiting is not None:
            await self._expire(waiting)
        else:  # not ours any more: never loop on it
            self.budget.remove(self, client_id)

    def _evicted(self, why: str, *args: object) -> None:
        self._evictions.log(
            logging.INFO,
            "gateway %s: a waiting session ended early: " + why,
            self.server.namespace,
            *args,
        )

    def release(self, client: Connection) -> None:
        """The connection's socket is gone: its handlers no longer run (``charge``)."""
        if client.reader is not None and self._readers.get(client.reader) is client:
            del self._readers[client.reader]

    def charge(self, size: int) -> None:
        """An emit of ``size`` bytes is about to enter the history: when it is made by a
        client's handler, that client's share (``Recovery.client_share``) pays for it.

        Raises ``WsException`` past the share: the handler fails with an error frame.
        """
        readers = self._readers
        if not readers:
            return
        client = readers.get(anyio.get_current_task().id)
        ticket = None if client is None else ticket_of(client)
        if ticket is None:
            return
        now = monotonic()
        quota = ticket.quota
        if quota is None:
            recovery = self.recovery
            share = recovery.client_share
            quota = ticket.quota = QuotaBucket(
                max(1.0, recovery.max_frames * share),
                recovery.max_bytes * share,
                recovery.window,
                now,
            )
        if not quota.take(size, now):
            raise WsException("History quota exceeded: emits made for this client are limited")

    async def end(self, client: Connection) -> None:
        """The session of ``client`` ends now (a clean close, or the app closed it)."""
        self.release(client)
        ticket = ticket_of(client)
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
            self._unkeep(first.client.id)
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
                waiting = self._unkeep(next(iter(self._waiting)))
                if waiting is not None:
                    await self._expire(waiting)
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

    def remote_gap(self, _targets: Targets) -> None:
        """Frames other processes emitted may not have arrived (a backplane gap): this
        process's history has a hole. It is marked (no resume replays across it: such a
        resume is ``trimmed``), and every connected client is told (``$session`` with
        reason ``"backplane"``). The hole is in every client's history, whatever
        ``_targets`` says: a history in memory holds the whole gateway's frames."""
        log = self.log
        assert isinstance(log, MemoryLog)
        log.lost()
        self.reset(log.epoch, "backplane")

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
