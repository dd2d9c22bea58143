"""A partitioned history's pure parts: where a frame goes, offsets and positions on the
wire, the credential that carries them, and the configuration that needs one stream."""

from __future__ import annotations

import pytest

from gatewayasgi import GatewayMiddleware, Recovery, WebSocketGateway
from gatewayasgi.brokers import RedisBroker
from gatewayasgi.client.frames import InboundFrame
from gatewayasgi.client.recovery import SessionRecovery as ClientRecovery
from gatewayasgi.exceptions import ConfigurationError
from gatewayasgi.protocol.resume import Credential, find_credential, format_credential
from gatewayasgi.protocol.targets import NOBODY, Targets
from gatewayasgi.recovery.keeper import SHARED_MARK, mark_key, room_marks, visible
from gatewayasgi.socketio.options import SocketIO
from gatewayasgi.stores._redis_partitions import (
    PartitionedLog,
    composite,
    partition_of_name,
    partition_of_targets,
)
from gatewayasgi.stores.base import Entry
from gatewayasgi.stores.memory import MemoryLog

TOKEN = "t" * 43


def partitioned(count: int = 4) -> PartitionedLog:
    return PartitionedLog([MemoryLog(100, 60.0) for _ in range(count)])


def a_room_in(part: int, count: int = 4) -> str:
    return next(f"r{n}" for n in range(1000) if partition_of_name(f"r{n}", count) == part)


def test_a_frame_to_one_name_goes_to_its_partition_and_the_rest_to_the_shared_one() -> None:
    room = a_room_in(3)
    assert partition_of_targets(Targets((room,), ()), 4) == 3
    client = "c_" + "0" * 32
    assert partition_of_targets(Targets((), (client,)), 4) == partition_of_name(client, 4)
    assert partition_of_targets(NOBODY, 4) == 0  # everyone
    assert partition_of_targets(Targets((room, a_room_in(2)), ()), 4) == 0
    assert partition_of_targets(Targets((room,), (client,)), 4) == 0
    assert partition_of_targets(Targets((room,), ()), 1) == 0
    # Stable across processes (CRC-32, not Python's salted hash).
    assert partition_of_name("lobby", 16) == 7  # zlib.crc32(b"lobby") % 16


def test_offsets_and_positions_round_trip_and_refuse_what_the_log_never_made() -> None:
    log = partitioned()
    offset = composite(1234, 2)
    assert log.partition_of(offset) == 2
    assert log.format_offset(offset) == "2~1234"
    assert log.parse_offset("2~1234") == offset
    for bad in ("1234", "4~1", "-1~1", "2~", "~1", "02x~1", "123~1", "2~1~1"):
        assert log.parse_offset(bad) is None, bad
    position = {0: composite(7, 0), 3: composite(9, 3)}
    assert log.format_position(position) == "0~7_3~9"
    assert log.parse_position("3~9_0~7") == position
    assert log.parse_position("0~7_0~8") is None  # one partition twice
    assert log.parse_position("_".join(["0~1"] * 5)) is None  # more items than partitions
    # One stream: the position is the offset itself.
    single = MemoryLog(100, 60.0)
    assert single.format_position({0: 5}) == "5" and single.parse_position("5") == {0: 5}


def test_the_credential_carries_a_position_of_up_to_32_partitions() -> None:
    position = "_".join(f"{part}~1733000000000-{part}" for part in range(32))
    offered = format_credential(Credential("c_" + "a" * 32, TOKEN, "ab12", position))
    found = find_credential([offered])
    assert isinstance(found, Credential) and found.offset == position
    too_many = position + "_0~1"
    assert not isinstance(
        find_credential([format_credential(Credential("c_" + "a" * 32, TOKEN, "ab", too_many))]),
        Credential,
    )
    for bad in ("0~1__1~2", "0~1_", "0:1", "0~1-2-3"):
        offered = format_credential(Credential("c_" + "a" * 32, TOKEN, "ab", bad))
        assert not isinstance(find_credential([offered]), Credential), bad


def test_a_rooms_mark_is_compared_in_the_partition_of_the_entry() -> None:
    log = partitioned()
    room = a_room_in(2)
    marks = room_marks(log, (room,), {room: composite(10, 2)}, {0: composite(5, 0)})
    assert marks == {room: composite(10, 2), SHARED_MARK + room: composite(5, 0)}
    alone = composite(11, 2)
    shared = composite(6, 0)
    assert mark_key(log, room, alone) == room
    assert mark_key(log, room, shared) == SHARED_MARK + room
    me = "c_" + "b" * 32

    def entry(offset: int, *rooms: str) -> Entry:
        return Entry(offset, "{}", Targets(rooms, ()), NOBODY)

    assert visible(log, entry(alone, room), me, marks)
    assert not visible(log, entry(composite(9, 2), room), me, marks)  # before the join
    assert visible(log, entry(shared, room, "other"), me, marks)
    assert not visible(log, entry(composite(4, 0), room, "other"), me, marks)


def test_the_python_client_keeps_the_last_offset_of_each_partition() -> None:
    recovery = ClientRecovery(True)
    session = {"id": "c_" + "a" * 32, "token": TOKEN, "epoch": "ab", "offset": "0~5_3~7"}
    recovery.session_frame({**session, "recovered": False})
    for offset in ("3~9", "1~2", "0~6"):
        recovery.observe(InboundFrame("e", None, offset=offset))
    assert recovery.offset == "0~6_1~2_3~9"
    credential = recovery.credential()
    assert credential is not None and credential.endswith(".0~6_1~2_3~9")
    recovery.session_frame({**session, "offset": "2~1", "recovered": True})
    assert recovery.offset == "2~1"
    plain = ClientRecovery(True)
    plain.session_frame({**session, "offset": "5", "recovered": False})
    plain.observe(InboundFrame("e", None, offset="6"))
    assert plain.offset == "6"


def test_recovery_partitions_are_checked_and_socketio_needs_one() -> None:
    for bad in (0, 33, 1.5, "4"):
        with pytest.raises(ConfigurationError):
            Recovery(partitions=bad)  # type: ignore[arg-type]

    @WebSocketGateway("/split", recovery=Recovery(partitions=4))
    class Split:
        pass

    broker = RedisBroker("redis://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="partitions=1"):
        GatewayMiddleware(gateways=[Split], broker=broker, socketio=SocketIO())
    app = GatewayMiddleware(gateways=[Split], broker=broker)
    assert app.keepers[0].log.partitions == 4
    assert app.servers["/split"].partition_mask == 63


class _Part(MemoryLog):
    """A partition whose appends are delivered only when the test says so."""

    def __init__(self) -> None:
        super().__init__(100, 60.0)
        self.appended = 0
        self.delivered = 0
        self.awaited: list[int] = []

    async def append(self, frame: str, targets: Targets, exclude: Targets) -> int | None:
        self.appended += 1
        return None

    def mark(self) -> int:
        return self.appended

    def passed(self, mark: int) -> bool:
        return mark <= self.delivered

    async def reached(self, mark: int) -> None:
        self.awaited.append(mark)


@pytest.mark.anyio
async def test_each_fence_waits_for_its_own_appends_in_every_partition() -> None:
    parts = [_Part() for _ in range(4)]
    log = PartitionedLog(list(parts))
    room = a_room_in(1)
    await log.append("{}", Targets((room,), ()), NOBODY)  # one connection's emit
    first = log.mark()
    await log.append("{}", Targets((room,), ()), NOBODY)  # another's, later
    await log.append("{}", NOBODY, NOBODY)  # and a broadcast
    second = log.mark()
    await log.reached(second)
    assert parts[1].awaited == [2] and parts[0].awaited == [1]
    # The earlier fence still waits for its own append (not taken by the later one).
    await log.reached(first)
    assert parts[1].awaited == [2, 1] and parts[0].awaited == [1]
    # Once delivered, nothing is waited for, and the books are emptied.
    parts[1].delivered = 2
    parts[0].delivered = 1
    await log.reached(second)
    assert parts[1].awaited == [2, 1] and parts[0].awaited == [1]
    assert not any(log._marks)
