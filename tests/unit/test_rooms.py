"""Room membership bookkeeping."""

from __future__ import annotations

from gatewayasgi.runtime.rooms import Rooms


def test_join_and_leave_update_both_directions() -> None:
    rooms = Rooms()
    rooms.join("a", "r1")
    rooms.join("a", "r2")
    rooms.join("b", "r1")
    assert set(rooms.members("r1")) == {"a", "b"}
    assert set(rooms.rooms_of("a")) == {"r1", "r2"}
    rooms.leave("a", "r1")
    assert set(rooms.members("r1")) == {"b"}
    assert set(rooms.rooms_of("a")) == {"r2"}


def test_empty_rooms_disappear() -> None:
    rooms = Rooms()
    rooms.join("a", "r")
    rooms.leave("a", "r")
    assert "r" not in rooms
    assert rooms.room_count() == 0
    assert set(rooms.rooms_of("a")) == set()


def test_leave_all_releases_every_room() -> None:
    rooms = Rooms()
    for room in ("x", "y", "z"):
        rooms.join("a", room)
    rooms.join("b", "x")
    assert rooms.leave_all("a") == {"x", "y", "z"}
    assert rooms.room_count() == 1
    assert set(rooms.members("x")) == {"b"}
    assert rooms.leave_all("a") == set()


def test_leaving_unknown_things_is_a_no_op() -> None:
    rooms = Rooms()
    rooms.leave("ghost", "nowhere")
    assert rooms.room_count() == 0
